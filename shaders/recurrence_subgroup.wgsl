// recurrence_subgroup.wgsl: how the recurrence's invocations get the states they read, with
// subgroup operations (Features::SUBGROUP; appended after recurrence.wgsl). The lanes of a
// subgroup load neighbouring columns of the same rows, lane l the four from i0 + 4·l, and pass
// them round by shuffles, so a state is loaded once per subgroup instead of once per invocation.
// Nothing assumes a subgroup size (8 on lavapipe, 32 on NVIDIA, 32 or 64 on AMD): lanes() counts
// them. Every invocation of the workgroup calls these in the same control flow (SUBGROUPS makes
// every one run the loops), so every lane is active; lane() is a lane's rank among them, which
// is its subgroup invocation id where, as in a compute dispatch, a subgroup's lanes are numbered
// from 0 without gaps.

const SUBGROUPS: bool = true;

// The quad invocation `lid` computes: its own, or the tile's last of `quads` for an invocation
// past them, which takes part in the shuffles and keeps nothing.
fn quad_of(lid: u32, quads: u32) -> u32 {
    return min(lid, quads - 1u);
}

fn is_live(lid: u32, quads: u32) -> bool {
    return lid < quads;
}

fn lanes() -> u32 {
    return subgroupAdd(1u);
}

fn lane() -> u32 {
    return subgroupExclusiveAdd(1u);
}

// What lane l loaded.
fn from_lane(own: mat4x4<f32>, l: u32) -> mat4x4<f32> {
    var x: mat4x4<f32>;
    x[0] = subgroupShuffle(own[0], l);
    if (ROWS > 1u) {
        x[1] = subgroupShuffle(own[1], l);
    }
    if (ROWS > 2u) {
        x[2] = subgroupShuffle(own[2], l);
    }
    if (ROWS > 3u) {
        x[3] = subgroupShuffle(own[3], l);
    }
    return x;
}

// Σ_i h[row m, i] W_hh^T[i, ·] over i in order, H a multiple of 4: rounds of 4 · lanes()
// columns, each lane loading four, then every lane's four in lane order.
fn forward_sums4(c: Cursor, rows: vec4<u32>) -> Sums {
    let nh = p.hidden;
    let n = lanes();
    let me = lane();
    var acc: Sums;
    for (var i0 = 0u; i0 < nh; i0 += 4u * n) {
        var own: mat4x4<f32>;
        if (i0 + 4u * me < nh) {
            own = states4(rows, i0 + 4u * me);
        }
        for (var l = 0u; l < min(n, (nh - i0) / 4u); l++) {
            acc = accumulate4(acc, from_lane(own, l), c, i0 + 4u * l);
        }
    }
    return acc;
}

// Σ_n dr[row m, n] W_hh[n, ·] over n in order, G·H a multiple of 4: as forward_sums4, over the
// columns of dr.
fn backward_sums4(c: Cursor, rows: vec4<u32>) -> mat4x4<f32> {
    let gh = GATES * p.hidden;
    let n = lanes();
    let me = lane();
    var g: mat4x4<f32>;
    for (var e0 = 0u; e0 < gh; e0 += 4u * n) {
        var own: mat4x4<f32>;
        if (e0 + 4u * me < gh) {
            own = gradients4(rows, e0 + 4u * me);
        }
        for (var l = 0u; l < min(n, (gh - e0) / 4u); l++) {
            g = gather4(g, from_lane(own, l), c, e0 + 4u * l);
        }
    }
    return g;
}
