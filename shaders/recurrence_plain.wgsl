// recurrence_plain.wgsl: how the recurrence's invocations get the states they read, without
// subgroup operations (appended after recurrence.wgsl): each invocation loads what it uses,
// four columns at a time.

const SUBGROUPS: bool = false;

// The quad invocation `lid` computes, and whether it keeps what it computes: its own, always,
// since only invocations with a quad of their own run the loops. (A constant here matters: with
// `live` computed per invocation, SwiftShader, Chromium's software adapter, never finished a
// step.)
fn quad_of(lid: u32, quads: u32) -> u32 {
    return lid;
}

fn is_live(lid: u32, quads: u32) -> bool {
    return true;
}

// Σ_i h[row m, i] W_hh^T[i, ·] over i in order, H a multiple of 4.
fn forward_sums4(c: Cursor, rows: vec4<u32>) -> Sums {
    var acc: Sums;
    for (var i = 0u; i < p.hidden; i += 4u) {
        acc = accumulate4(acc, states4(rows, i), c, i);
    }
    return acc;
}

// Σ_n dr[row m, n] W_hh[n, ·] over n in order, G·H a multiple of 4.
fn backward_sums4(c: Cursor, rows: vec4<u32>) -> mat4x4<f32> {
    var g: mat4x4<f32>;
    for (var e = 0u; e < GATES * p.hidden; e += 4u) {
        g = gather4(g, gradients4(rows, e), c, e);
    }
    return g;
}
