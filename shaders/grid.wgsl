// grid.wgsl: the one rule for a 1-D problem dispatched as a 2-D grid of 64-wide workgroups (a grid
// dimension holds at most 65,535 workgroups; `grid_1d` in src/gpu/plan.rs makes the grid).
// Prepended to the shaders that index that way: dropout, embedding, loss, optimizer, reduce,
// transpose.
//
//   index = gid.y · groups.x · 64 + gid.x       (invocations past the problem's end return early)

fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 64u + gid.x;
}

