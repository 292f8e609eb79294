// recurrence_plain.wgsl: how the recurrence's invocations get the states they read, without
// subgroup operations (appended after recurrence.wgsl): each invocation loads what it uses, one
// lane of its own.

const SUBGROUPS: bool = false;

// The lanes that share their loads, and this invocation's lane among them.
fn lanes() -> u32 {
    return 1u;
}

fn lane() -> u32 {
    return 0u;
}

// The lanes whose loads a round uses, of n with `left` loads of four still to go (at least 1):
// one, so that the round's loop runs once, straight.
fn lanes_of(n: u32, left: u32) -> u32 {
    return 1u;
}

// What lane l loaded: this invocation's own load.
fn from_lane(own: mat4x4<f32>, l: u32) -> mat4x4<f32> {
    return own;
}
