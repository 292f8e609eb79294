// recurrence.wgsl: the recurrence of every cell, split by units. Appended after cell.wgsl and a
// cell's file, whose cell_forward and cell_backward it calls; the host prepends
// `const CACHED: bool` (whether a tile's weights are copied into workgroup memory) and
// `const CACHE4: u32` (the vec4s of workgroup memory that hold them), and after it comes one of
// two files that say how a workgroup's invocations share the states they read:
// recurrence_plain.wgsl (each loads what it uses) or recurrence_subgroup.wgsl (the lanes of a
// subgroup load neighbouring columns and pass them round by shuffles: Features::SUBGROUP). Each
// gives `const SUBGROUPS: bool`, quad_of, is_live and the aligned sums forward_sums4 and
// backward_sums4; both sum in the same order, so the two give the same bits.
//
// A tile is a slice of p.units hidden units J (all G gates of each) and a block of p.row_block
// batch rows. Workgroup g of p.groups = p.directions · p.slices · blocks runs direction
// g / (slices · blocks) (see `dir` in cell.wgsl) and owns tile g' = g mod (slices · blocks),
// (g' mod slices, g' / slices).
// For its tile it computes its columns of the recurrent product and then the cell, in registers,
// so r never goes to global memory:
//
//   forward stage t = t_begin … t_end−1 (h_{t+1} from h_t; at t ≥ n_b, padding, h_{t+1} = h_t):
//       r[b, k·H + j] = Σ_i h_t[b, i] · W_hh[k·H + j, i]  (i in order)  + b_hh[k·H + j]
//       cell_forward((b, j), t, r[b, ·])                  for j ∈ J, b in the block
//   backward stage k = t_end−1 … t_begin (T+1 stages over a layer, k = T … 0):
//       g[b, j] = Σ_n dr_k[b, n] · W_hh[n, j]  (n over G·H in order; g = 0 at k = T)
//       k ≥ 1: cell_backward((b, j), t = k−1, g)          (writes da, dr of step k−1; zeros
//                                                         at padding, k−1 ≥ n_b)
//       k = 0: ∂L/∂h_0[b, j] = g (+ d_direct where it reaches h: a GRU's z ⊙ dh)
//
// A stage reads what every workgroup wrote in the stage before (h_t, dr_k), so stages are ordered
// one of two ways, with the same arithmetic in the same order (results are bitwise the same):
//   ordered (p.spin = 0): one stage per dispatch, the dispatch boundary between stages;
//   grid    (p.spin > 0): several stages per dispatch, a grid barrier between them. WebGPU does
//       not promise that workgroups run concurrently, so the wait is bounded: a workgroup that
//       spins p.spin times sets the failure flag and every workgroup leaves; the host sees the
//       flag and runs the step again ordered (src/gpu/recurrence.rs).
//
// Invocation q of a workgroup computes four neighbouring units (quad q of the tile's p.units / 4 ≤
// WG) for ROWS rows at a time, every invocation the same rows (vec4 loads of the weights, whose
// copies are padded to multiples of 4 units; uniform loads of the states). Where
// CACHED, the tile's weights are copied into workgroup memory at the start of the dispatch. With
// SUBGROUPS every invocation runs the loops (those without units of their own repeat the last
// quad's and keep nothing), so that every lane of a subgroup takes part in its shuffles.
//
// Bindings, after cell.wgsl's 0 … 6:
//   @binding(7) wt:     array<vec4<f32>>, read   W_hh^T per gate (H, G, H4) at vec4 dir.wt:
//                                                W_hh[k·H + j, i] at float (i·G + k)·H4 + j
//   @binding(8) params: array<vec4<f32>>, read   W_hh (G·H, H) at float dir.w, b_hh at dir.bias
//   @binding(9) sync:   array<atomic<u32>>       [0] the failure flag, [1 + slot] the arrivals
//                                                at the grid barrier of dispatch `slot`,
//                                                [p.lengths + b] row b's length n_b

override WG: u32 = 64u;
override ROWS: u32 = 4u;

@group(0) @binding(7) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> params: array<vec4<f32>>;

// Element i of params (bound as vec4s, so that W_hh's rows load four units at once).
fn param_at(i: u32) -> f32 {
    return params[i / 4u][i % 4u];
}
@group(0) @binding(9) var<storage, read_write> sync: array<atomic<u32>>;

var<workgroup> cache: array<vec4<f32>, CACHE4>;
var<workgroup> passed: u32;

// The failure flag's value: 1.0's bits, so that it reads as nonzero as a float too.
const FAILED: u32 = 0x3f800000u;

struct Tile {
    // The first unit and the first batch row of the tile, and its rows.
    j0: u32,
    b0: u32,
    rows: u32,
}

// Workgroup g's tile, after setting `dir` to its direction.
fn tile_at(g: u32) -> Tile {
    let tiles = p.groups / p.directions;
    dir = direction_of(g / tiles);
    let t = g % tiles;
    let b0 = (t / p.slices) * p.row_block;
    return Tile((t % p.slices) * p.units, b0, min(p.row_block, p.batch - b0));
}

// An invocation's share of a tile at once: four units from j (quad q of the tile: invocation q),
// ROWS rows from b (the same for the whole workgroup, so that their loads are uniform). An
// invocation past the tile's quads, or past H, is not `live`: it writes nothing (and runs at all
// only with SUBGROUPS, reading the quad quad_of gives it).
struct Item {
    q: u32,
    j: u32,
    b: u32,
    rows: u32,
    live: bool,
}

// The tile's quads that hold units (fewer than p.units / 4 in the last slice of H).
fn live_quads(tile: Tile) -> u32 {
    return min(p.units / 4u, (p.hidden - tile.j0 + 3u) / 4u);
}

fn item_at(tile: Tile, lid: u32, group: u32) -> Item {
    let b = tile.b0 + group * ROWS;
    let quads = live_quads(tile);
    let q = quad_of(lid, quads);
    return Item(q, tile.j0 + 4u * q, b, min(ROWS, tile.b0 + tile.rows - b), is_live(lid, quads));
}

// The row groups invocation `lid` runs: all of the tile's where it is live or takes part in
// subgroup shuffles, else none.
fn groups_of(tile: Tile, lid: u32) -> u32 {
    return select(0u, row_groups(tile), SUBGROUPS || lid < live_quads(tile));
}

// Groups of ROWS rows in the tile.
fn row_groups(tile: Tile) -> u32 {
    return (tile.rows + ROWS - 1u) / ROWS;
}

// Vec4s per padded row of units.
fn h4() -> u32 {
    return (p.hidden + 3u) / 4u;
}

// Copies the tile's weights into workgroup memory: forward [(i·G + k)·quads + q], backward
// [n·quads + q].
fn load_cache(lid: u32, tile: Tile, backward: bool) {
    if (!CACHED) {
        return;
    }
    let quads = p.units / 4u;
    let rows = p.gates * p.hidden;
    let first = tile.j0 / 4u;
    for (var e = lid; e < rows * quads; e += WG) {
        let n = e / quads;
        let q = e % quads;
        var v = vec4<f32>(0.0);
        if (first + q < h4()) {
            if (backward) {
                v = w_row(dir.w + n * p.hidden, 4u * (first + q));
            } else {
                v = wt[dir.wt + n * h4() + first + q];
            }
        }
        cache[e] = v;
    }
    workgroupBarrier();
}

// W_hh[n, j … j+3] from its row at `row` in params, zeros past H.
fn w_row(row: u32, j: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (j + c < p.hidden) {
            v[c] = param_at(row + j + c);
        }
    }
    return v;
}

// Where an item's weights are read: gate row n (forward: n = i·G + k of W_hh^T in wt; backward:
// n = k·H + j' of W_hh in params) at `at + n · step`, or in workgroup memory where CACHED.
struct Cursor {
    at: u32,
    step: u32,
    backward: bool,
}

fn cursor(backward: bool, it: Item) -> Cursor {
    if (CACHED) {
        return Cursor(it.q, p.units / 4u, backward);
    }
    if (backward) {
        return Cursor(dir.w + it.j, p.hidden, true);
    }
    return Cursor(dir.wt + it.j / 4u, h4(), false);
}

fn weights(c: Cursor, n: u32) -> vec4<f32> {
    if (CACHED) {
        return cache[c.at + n * c.step];
    }
    if (c.backward) {
        // The item's units past H read the next row (or clamp at the end); they are not kept.
        let e = c.at + n * c.step;
        if (e % 4u == 0u && c.step % 4u == 0u) {
            return params[e / 4u];
        }
        return vec4<f32>(param_at(e), param_at(e + 1u), param_at(e + 2u), param_at(e + 3u));
    }
    return wt[c.at + n * c.step];
}

// Waits until every workgroup has arrived at barrier `n` (1, 2, … in a dispatch), at most
// p.spin polls; false (and the failure flag set) if they did not.
fn grid_barrier(lid: u32, n: u32) -> bool {
    storageBarrier();
    if (lid == 0u) {
        atomicAdd(&sync[1u + p.slot], 1u);
        let goal = n * p.groups;
        var ok = 0u;
        for (var i = 0u; i < p.spin; i++) {
            if (atomicLoad(&sync[1u + p.slot]) >= goal) {
                ok = 1u;
                break;
            }
            if (atomicLoad(&sync[0]) != 0u) {
                break;
            }
        }
        // Decided on the count itself, not on how the loop ended (Mesa may end loops early).
        if (atomicLoad(&sync[1u + p.slot]) < goal || atomicLoad(&sync[0]) != 0u) {
            ok = 0u;
            atomicStore(&sync[0], FAILED);
        }
        passed = ok;
    }
    let ok = workgroupUniformLoad(&passed);
    storageBarrier();
    return ok == 1u;
}

// The G gates of four units (gate k's four values in k0 … k3), or of one row's product.
struct Gates {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
}

// acc + x · w over the cell's gates (the others stay zero).
fn add_scaled(acc: Gates, x: f32, w: Gates) -> Gates {
    var o = acc;
    o.k0 += x * w.k0;
    if (GATES > 1u) {
        o.k1 += x * w.k1;
    }
    if (GATES > 2u) {
        o.k2 += x * w.k2;
    }
    if (GATES > 3u) {
        o.k3 += x * w.k3;
    }
    return o;
}

// W_hh^T's row i for the item's four units, gate by gate.
fn forward_weights(c: Cursor, i: u32) -> Gates {
    var w: Gates;
    w.k0 = weights(c, i * GATES);
    if (GATES > 1u) {
        w.k1 = weights(c, i * GATES + 1u);
    }
    if (GATES > 2u) {
        w.k2 = weights(c, i * GATES + 2u);
    }
    if (GATES > 3u) {
        w.k3 = weights(c, i * GATES + 3u);
    }
    return w;
}

// The offsets of an item's rows m = 0 … 3 in a (rows, width) block, past its last row repeating
// that row (whose results are not kept), so that every load stays in bounds without a branch.
fn row_offsets(it: Item, width: u32) -> vec4<u32> {
    let last = it.rows - 1u;
    return vec4<u32>(0u, min(1u, last), min(2u, last), min(3u, last)) * width;
}

// Row b's length n_b (written by the host after the grid barriers' counters).
fn length_of(b: u32) -> u32 {
    return atomicLoad(&sync[p.lengths + b]);
}

// Step s as row b reads it (s < n_b): the rows in a of its time, n_b − 1 − s in the reverse
// direction.
fn row_step(s: Step, t: u32, b: u32) -> Step {
    var v = s;
    if (dir.reverse) {
        v.a = dir.ar + (length_of(b) - 1u - t) * p.batch * p.gates * p.hidden;
    }
    return v;
}

// The cell's forward for row m of the item at step t: its four units, r = acc + b_hh; at a
// padded step (t ≥ n_b) the state passes through unchanged.
fn forward_row(it: Item, m: u32, t: u32, acc: Gates) {
    if (m >= it.rows || !it.live) {
        return;
    }
    let nh = p.hidden;
    let b = it.b + m;
    let s = step_at(t);
    let valid = t < length_of(b);
    for (var c = 0u; c < 4u; c++) {
        let j = it.j + c;
        if (j >= nh) {
            break;
        }
        let i = b * nh + j;
        if (!valid) {
            set_h(s.next + i, h_at(s.prev + i));
            if (CELL_STATE) {
                cs[s.next + i] = cs[s.prev + i];
            }
            continue;
        }
        var rg = vec4<f32>(acc.k0[c], acc.k1[c], acc.k2[c], acc.k3[c]);
        for (var k = 0u; k < GATES; k++) {
            rg[k] += param_at(dir.bias + k * nh + j);
        }
        cell_forward(unit_at(i), row_step(s, t, b), rg);
    }
}

// The sums of an item's rows (one Gates each).
struct Sums {
    r0: Gates,
    r1: Gates,
    r2: Gates,
    r3: Gates,
}

// acc + x[m] · w for each row m the invocation computes.
fn accumulate(acc: Sums, x: vec4<f32>, w: Gates) -> Sums {
    var o = acc;
    o.r0 = add_scaled(o.r0, x.x, w);
    if (ROWS > 1u) {
        o.r1 = add_scaled(o.r1, x.y, w);
    }
    if (ROWS > 2u) {
        o.r2 = add_scaled(o.r2, x.z, w);
    }
    if (ROWS > 3u) {
        o.r3 = add_scaled(o.r3, x.w, w);
    }
    return o;
}

// Four columns from `i` of the item's rows m (at `rows` in hs), as column m of the result.
fn states4(rows: vec4<u32>, i: u32) -> mat4x4<f32> {
    var x: mat4x4<f32>;
    x[0] = hs[(rows.x + i) / 4u];
    if (ROWS > 1u) {
        x[1] = hs[(rows.y + i) / 4u];
    }
    if (ROWS > 2u) {
        x[2] = hs[(rows.z + i) / 4u];
    }
    if (ROWS > 3u) {
        x[3] = hs[(rows.w + i) / 4u];
    }
    return x;
}

// acc + Σ_{i' < 4} x[m][i'] · W_hh^T[i + i', ·] for each row m: four columns of the states (as
// states4 gives them) in order.
fn accumulate4(acc: Sums, x: mat4x4<f32>, c: Cursor, i: u32) -> Sums {
    var o = acc;
    o = accumulate(o, vec4<f32>(x[0].x, x[1].x, x[2].x, x[3].x), forward_weights(c, i));
    o = accumulate(o, vec4<f32>(x[0].y, x[1].y, x[2].y, x[3].y), forward_weights(c, i + 1u));
    o = accumulate(o, vec4<f32>(x[0].z, x[1].z, x[2].z, x[3].z), forward_weights(c, i + 2u));
    o = accumulate(o, vec4<f32>(x[0].w, x[1].w, x[2].w, x[3].w), forward_weights(c, i + 3u));
    return o;
}

// Σ_i h[row m, i] W_hh^T[i, ·] over i in order, for the item's rows at `rows` in hs: four i at
// a time through vec4 loads where the rows are aligned (H a multiple of 4: the variant's
// forward_sums4), else one at a time.
fn forward_sums(it: Item, rows: vec4<u32>) -> Sums {
    let nh = p.hidden;
    let c = cursor(false, it);
    if (nh % 4u == 0u) {
        return forward_sums4(c, rows);
    }
    var acc: Sums;
    for (var i = 0u; i < nh; i++) {
        let x = vec4<f32>(h_at(rows.x + i), h_at(rows.y + i), h_at(rows.z + i), h_at(rows.w + i));
        acc = accumulate(acc, x, forward_weights(c, i));
    }
    return acc;
}

fn forward_stage(lid: u32, tile: Tile, t: u32) {
    let s = step_at(t);
    let nh = p.hidden;
    let groups = groups_of(tile, lid);
    for (var group = 0u; group < groups; group++) {
        let it = item_at(tile, lid, group);
        let rows = row_offsets(it, nh) + vec4<u32>(s.prev + it.b * nh);
        let acc = forward_sums(it, rows);
        forward_row(it, 0u, t, acc.r0);
        forward_row(it, 1u, t, acc.r1);
        forward_row(it, 2u, t, acc.r2);
        forward_row(it, 3u, t, acc.r3);
    }
}

// Stage k's end for unit c of row m of the item: the cell's backward at step k − 1 with g coming
// through W, or (k = 0) ∂L/∂h_0. A padded step (k − 1 ≥ n_b) passes nothing on: its da (at time
// k − 1, a padded time in either direction), dr and d_direct are zero.
fn backward_unit(it: Item, m: u32, c: u32, k: u32, g: f32) {
    let nh = p.hidden;
    let j = it.j + c;
    if (m >= it.rows || j >= nh || !it.live) {
        return;
    }
    let b = it.b + m;
    let u = unit_at(b * nh + j);
    if (k > 0u) {
        let s = step_at(k - 1u);
        if (k - 1u < length_of(b)) {
            cell_backward(u, row_step(s, k - 1u, b), g);
            return;
        }
        for (var n = 0u; n < GATES; n++) {
            a[s.a + gate(u, GATES, n)] = 0.0;
            set_r(s.row + gate(u, GATES, n), 0.0);
        }
        set_direct(u, 0.0);
    } else if (p.direct_to_h != 0u) {
        d0[p.dh0 + dir.block * p.batch * nh + u.i] = g + d0[dir.direct + u.i];
    } else {
        d0[p.dh0 + dir.block * p.batch * nh + u.i] = g;
    }
}

fn backward_row(it: Item, m: u32, k: u32, g: vec4<f32>) {
    backward_unit(it, m, 0u, k, g.x);
    backward_unit(it, m, 1u, k, g.y);
    backward_unit(it, m, 2u, k, g.z);
    backward_unit(it, m, 3u, k, g.w);
}

// g[m] + d[m] · w for each row m the invocation computes (g[m]: four units' sums).
fn gather(g: mat4x4<f32>, d: vec4<f32>, w: vec4<f32>) -> mat4x4<f32> {
    var o = g;
    o[0] += d.x * w;
    if (ROWS > 1u) {
        o[1] += d.y * w;
    }
    if (ROWS > 2u) {
        o[2] += d.z * w;
    }
    if (ROWS > 3u) {
        o[3] += d.w * w;
    }
    return o;
}

// Four columns from `n` of the item's rows m of dr (at `rows` in r), as column m of the result.
fn gradients4(rows: vec4<u32>, n: u32) -> mat4x4<f32> {
    var d: mat4x4<f32>;
    d[0] = r[(rows.x + n) / 4u];
    if (ROWS > 1u) {
        d[1] = r[(rows.y + n) / 4u];
    }
    if (ROWS > 2u) {
        d[2] = r[(rows.z + n) / 4u];
    }
    if (ROWS > 3u) {
        d[3] = r[(rows.w + n) / 4u];
    }
    return d;
}

// g[m] + Σ_{n' < 4} d[m][n'] · W_hh[e + n', ·] for each row m: four columns of dr (as
// gradients4 gives them) in order.
fn gather4(g: mat4x4<f32>, d: mat4x4<f32>, c: Cursor, e: u32) -> mat4x4<f32> {
    var o = g;
    o = gather(o, vec4<f32>(d[0].x, d[1].x, d[2].x, d[3].x), weights(c, e));
    o = gather(o, vec4<f32>(d[0].y, d[1].y, d[2].y, d[3].y), weights(c, e + 1u));
    o = gather(o, vec4<f32>(d[0].z, d[1].z, d[2].z, d[3].z), weights(c, e + 2u));
    o = gather(o, vec4<f32>(d[0].w, d[1].w, d[2].w, d[3].w), weights(c, e + 3u));
    return o;
}

// Σ_n dr[row m, n] W_hh[n, ·] over n in order (G·H of them), for the item's rows at `rows` in r:
// four n at a time through vec4 loads where the rows are aligned (the variant's backward_sums4),
// else one at a time.
fn backward_sums(it: Item, rows: vec4<u32>) -> mat4x4<f32> {
    let gh = GATES * p.hidden;
    let c = cursor(true, it);
    if (gh % 4u == 0u) {
        return backward_sums4(c, rows);
    }
    var g: mat4x4<f32>;
    for (var e = 0u; e < gh; e++) {
        let d = vec4<f32>(r_at(rows.x + e), r_at(rows.y + e), r_at(rows.z + e), r_at(rows.w + e));
        g = gather(g, d, weights(c, e));
    }
    return g;
}

fn backward_stage(lid: u32, tile: Tile, k: u32) {
    let gh = GATES * p.hidden;
    let groups = groups_of(tile, lid);
    for (var group = 0u; group < groups; group++) {
        let it = item_at(tile, lid, group);
        var g: mat4x4<f32>;
        if (k < p.steps) {
            let rows = row_offsets(it, gh) + vec4<u32>(dir.ar + k * p.batch * gh + it.b * gh);
            g = backward_sums(it, rows);
        }
        backward_row(it, 0u, k, g[0]);
        backward_row(it, 1u, k, g[1]);
        backward_row(it, 2u, k, g[2]);
        backward_row(it, 3u, k, g[3]);
    }
}

// Whether this workgroup runs: it owns a tile (a 2-D grid may hold more workgroups than tiles),
// and no grid barrier of the step has failed (the step then runs again, ordered).
fn runs(lid: u32, g: u32) -> bool {
    if (lid == 0u) {
        passed = u32(g < p.groups && (p.spin == 0u || atomicLoad(&sync[0]) == 0u));
    }
    return workgroupUniformLoad(&passed) == 1u;
}

@compute @workgroup_size(WG)
fn forward_units(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let g = wid.y * groups.x + wid.x;
    if (!runs(lid, g)) {
        return;
    }
    let tile = tile_at(g);
    load_cache(lid, tile, false);
    for (var t = p.t_begin; t < p.t_end; t++) {
        if (t > p.t_begin && !grid_barrier(lid, t - p.t_begin)) {
            return;
        }
        forward_stage(lid, tile, t);
    }
}

// Backward stages k = t_end − 1 down to t_begin.
@compute @workgroup_size(WG)
fn backward_units(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let g = wid.y * groups.x + wid.x;
    if (!runs(lid, g)) {
        return;
    }
    let tile = tile_at(g);
    load_cache(lid, tile, true);
    for (var k = p.t_end; k > p.t_begin; k--) {
        if (k < p.t_end && !grid_barrier(lid, p.t_end - k)) {
            return;
        }
        backward_stage(lid, tile, k - 1u);
    }
}

// One stage, no barrier: the ordered dispatches (a kernel without barriers compiles to straight
// code on a software adapter).
@compute @workgroup_size(WG)
fn forward_step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let g = wid.y * groups.x + wid.x;
    if (g < p.groups) {
        forward_stage(lid, tile_at(g), p.t_begin);
    }
}

@compute @workgroup_size(WG)
fn backward_step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let g = wid.y * groups.x + wid.x;
    if (g < p.groups) {
        backward_stage(lid, tile_at(g), p.t_begin);
    }
}

// Zeroes the arrival counters of the step's grid dispatches (sync[1 …= p.slot]); the failure flag
// stays until the host has seen it.
@compute @workgroup_size(64)
fn clear_sync(@builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < p.slot; i += 64u) {
        atomicStore(&sync[1u + i], 0u);
    }
}
