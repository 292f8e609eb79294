// resident.wgsl: how many workgroups run at once. Each workgroup of a dispatch of N arrives at a
// counter and polls it, at most SPIN times, until all N have arrived; one that gives up counts a
// failure. N workgroups are resident together when no workgroup fails (src/gpu/resident.rs
// tries N = 1, 2, 4, …). The grid barrier of recurrence.wgsl waits the same way.
//
// Bindings:
//   @binding(0) counter: array<atomic<u32>>, read_write   [arrivals, failures, chain]

override SPIN: u32 = 4096u;

@group(0) @binding(0) var<storage, read_write> counter: array<atomic<u32>>;

@compute @workgroup_size(64)
fn resident(
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    if (lid != 0u) {
        return;
    }
    let n = groups.x;
    atomicAdd(&counter[0], 1u);
    for (var i = 0u; i < SPIN; i++) {
        if (atomicLoad(&counter[0]) >= n) {
            break;
        }
    }
    if (atomicLoad(&counter[0]) < n) {
        atomicAdd(&counter[1], 1u);
    }
}

// The costs that the ordering of a recurrence's stages pays, for `unroll bench --sync`:
//   chain:    one workgroup adds 1 to counter[2]; dispatched many times in one pass, each
//             dispatch waits for the one before it (they write the same buffer): the gap
//             between dependent dispatches.
//   barriers: every workgroup of a dispatch of N passes ROUNDS grid barriers (arrive at
//             counter[0], poll until round · N have arrived, at most SPIN polls each); one that
//             gives up counts a failure in counter[1] and leaves.

override ROUNDS: u32 = 1u;

@compute @workgroup_size(64)
fn chain(@builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        atomicAdd(&counter[2], 1u);
    }
}

@compute @workgroup_size(64)
fn barriers(
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    if (lid != 0u) {
        return;
    }
    let n = groups.x;
    for (var round = 1u; round <= ROUNDS; round++) {
        atomicAdd(&counter[0], 1u);
        for (var i = 0u; i < SPIN; i++) {
            if (atomicLoad(&counter[0]) >= round * n || atomicLoad(&counter[1]) != 0u) {
                break;
            }
        }
        if (atomicLoad(&counter[0]) < round * n || atomicLoad(&counter[1]) != 0u) {
            atomicAdd(&counter[1], 1u);
            return;
        }
    }
}
