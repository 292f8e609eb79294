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

fn lanes() -> u32 {
    return subgroupAdd(1u);
}

fn lane() -> u32 {
    return subgroupExclusiveAdd(1u);
}

// The lanes whose loads a round uses, of n with `left` loads of four still to go.
fn lanes_of(n: u32, left: u32) -> u32 {
    return min(n, left);
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
