// matmul.wgsl: C = A · B with a bias; one kernel for every product of the training step outside
// the recurrences (recurrence.wgsl computes those).
//
// Math, with A (M, K), B (K, N), C (M, N):
//   S[i, j]  = Σ_p A[i, p] B[p, j]     (p in order 0..K, or slice by slice: see Split K; a fixed order)
//   C[i, j]  = S + addend[j]           if ADD_BIAS (a bias vector), else S
// A and B are read through strides, so a transposed operand needs no copy:
//   A[i, p] = a[a_offset + i * a_row_stride + p * a_col_stride]
//   B[p, j] = b[b_offset + p * b_row_stride + j * b_col_stride]
//   C[i, j] = c[c_offset + i * c_row_stride + j]
// Pipeline-constant variants:
//   ONE_HOT_B: B[p, j] = (tokens[p] == j), the one-hot inputs of a token model (dU = dA^T x).
//
// Three entry points with the same bindings:
//   matmul:  any strides; scalar loads.
//   matmul_tiled: any strides; a workgroup of 16×16 invocations computes a 64×64 tile of C (each
//            invocation a 4×4 block, as in matmul), K in steps of 16: the workgroup first copies
//            the step's 64×16 of A and 16×64 of B into workgroup memory (each element loaded once
//            per workgroup instead of once per invocation that uses it), then every invocation
//            reads its four rows and four columns from there as vec4s. Each sum still runs over
//            p in order, as in matmul. For hardware GPUs, where memory traffic bounds the
//            products; on a software adapter matmul4 is faster.
//   matmul4: the same product with every load a vec4: A's rows along p (A_COLS off: row-major A,
//            K a multiple of 4) or A's four rows i0..i0+3 at one p (A_COLS on: column-major A),
//            and B's columns j0..j0+3. The host picks it when A and B are aligned to vec4s
//            (offsets and strides multiples of 4). On a software adapter every load an invocation
//            makes is a separate memory access, so one vec4 instead of four scalars is what makes
//            the kernel fast there. Its bindings are declared as vec4 arrays (a4, b4, c4); C is
//            still written element by element, so C needs no alignment.
//
// Split K: workgroup z sums p over [z · k_split, (z+1) · k_split) only and writes its partial
// product at c_offset + z · c_split_stride; reduce.wgsl then adds the partials in order of z. A
// product over T·B rows with a small C (dW, dV, dU) so becomes many workgroups instead of a few
// with long loops. Without a split, k_split = K and the grid has one z. No bias with a split.
//
// K in chunks: one dispatch sums only p in [z · k_split + k_begin, … + k_len) of its split. The
// host runs the chunks of a long sum as consecutive dispatches; every chunk after the first has
// ACCUMULATE set and starts its accumulators from the C that the chunk before it wrote, so the
// sum runs in the same order as in one dispatch, and only the last chunk applies the bias. This
// bounds the loop iterations of one invocation (see LOOP_BUDGET in src/gpu/plan.rs: Mesa's
// software adapters end a shader's loops after 65,535 iterations).
//
// Uses in one step (B batch, T steps, I input, H hidden, O output, G gates; hs (T+1, B, H)):
//   input (dense)      a = x U^T + b_ih         output  y  = hs V^T + c      (ADD_BIAS)
//   gradients          dh = dy V,  dV = dy^T hs,  dW = dr^T hs,  dU = da^T x,  layer l−1's dh = da U
//
// Each invocation computes a 4×4 block of C with its accumulators in registers; a workgroup of
// 8×8 invocations covers a 32×32 tile. Neighbouring invocations (x) own neighbouring column
// blocks, so their loads of a row-major B (W^T, V^T, hs) and their stores touch neighbouring
// addresses, while A's elements are shared along x. Out-of-range rows and columns are clamped on
// load and skipped on store.
//
// Bindings:
//   @binding(0) p:      MatmulParams, uniform (dynamic offset)
//   @binding(1) a:      array<f32>, read        (a4: array<vec4<f32>> in matmul4)
//   @binding(2) b:      array<f32>, read        (b4: array<vec4<f32>> in matmul4)
//   @binding(3) tokens: array<u32>, read        (ONE_HOT_B only)
//   @binding(4) addend: array<f32>, read        (ADD_BIAS only)
//   @binding(5) c:      array<f32>, read_write  (c4: array<vec4<f32>> in matmul4)

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_offset: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    b_offset: u32,
    b_row_stride: u32,
    b_col_stride: u32,
    c_offset: u32,
    c_row_stride: u32,
    addend_offset: u32,
    k_split: u32,
    c_split_stride: u32,
    k_begin: u32,
    k_len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const ADD_BIAS: u32 = 1u;
const ACCUMULATE: u32 = 16u;

override ONE_HOT_B: bool = false;
override A_COLS: bool = false;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read> addend: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> c4: array<vec4<f32>>;

// Row k of B at the four columns j0..j0+3 (clamped into range by the caller's b_col).
fn load_b(k: u32, b_col: vec4<u32>, j: vec4<u32>) -> vec4<f32> {
    if (ONE_HOT_B) {
        return select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(tokens[k]) == j);
    }
    let bk = k * p.b_row_stride;
    return vec4<f32>(b[b_col.x + bk], b[b_col.y + bk], b[b_col.z + bk], b[b_col.w + bk]);
}

// The p this invocation sums over: its split's range, from k_begin on, at most k_len of it.
fn k_range(z: u32) -> vec2<u32> {
    let z0 = z * p.k_split;
    let start = z0 + p.k_begin;
    return vec2<u32>(start, min(min(p.k, z0 + p.k_split), start + p.k_len));
}

// The sums so far of the block at (i0, j0) of split z: C as the previous chunk left it with
// ACCUMULATE, zeros otherwise. Rows past M are clamped (and never stored).
fn initial(i0: u32, jc: vec4<u32>, z: u32) -> array<vec4<f32>, 4> {
    var acc: array<vec4<f32>, 4>;
    if ((p.flags & ACCUMULATE) != 0u) {
        let c_base = p.c_offset + z * p.c_split_stride;
        for (var r = 0u; r < 4u; r++) {
            let row = c_base + min(i0 + r, p.m - 1u) * p.c_row_stride;
            acc[r] = vec4<f32>(c[row + jc.x], c[row + jc.y], c[row + jc.z], c[row + jc.w]);
        }
    }
    return acc;
}

// As initial, through the vec4 view of C.
fn initial4(i0: u32, jc: vec4<u32>, z: u32) -> array<vec4<f32>, 4> {
    var acc: array<vec4<f32>, 4>;
    if ((p.flags & ACCUMULATE) != 0u) {
        let c_base = p.c_offset + z * p.c_split_stride;
        for (var r = 0u; r < 4u; r++) {
            let row = c_base + min(i0 + r, p.m - 1u) * p.c_row_stride;
            for (var q = 0u; q < 4u; q++) {
                let e = row + jc[q];
                acc[r][q] = c4[e / 4u][e % 4u];
            }
        }
    }
    return acc;
}

@compute @workgroup_size(8, 8)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let j = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);
    let jc = min(j, vec4<u32>(p.n - 1u));
    let b_col = vec4<u32>(p.b_offset) + jc * p.b_col_stride;
    var a_row: vec4<u32>;
    for (var r = 0u; r < 4u; r++) {
        a_row[r] = p.a_offset + min(i0 + r, p.m - 1u) * p.a_row_stride;
    }
    var acc = initial(i0, jc, gid.z);
    let range = k_range(gid.z);
    for (var k = range.x; k < range.y; k++) {
        let ak = k * p.a_col_stride;
        let bv = load_b(k, b_col, j);
        acc[0] += a[a_row.x + ak] * bv;
        acc[1] += a[a_row.y + ak] * bv;
        acc[2] += a[a_row.z + ak] * bv;
        acc[3] += a[a_row.w + ak] * bv;
    }
    store(i0, j, jc, acc, gid.z);
}

fn with_bias(acc: array<vec4<f32>, 4>, jc: vec4<u32>) -> array<vec4<f32>, 4> {
    var out = acc;
    if ((p.flags & ADD_BIAS) != 0u) {
        let o = p.addend_offset;
        let bias = vec4<f32>(addend[o + jc.x], addend[o + jc.y], addend[o + jc.z], addend[o + jc.w]);
        for (var r = 0u; r < 4u; r++) {
            out[r] += bias;
        }
    }
    return out;
}

// Adds the bias and writes the 4×4 block that starts at (i0, j0) of split z;
// `jc` holds the columns clamped into range.
fn store(i0: u32, j: vec4<u32>, jc: vec4<u32>, acc: array<vec4<f32>, 4>, z: u32) {
    let s = with_bias(acc, jc);
    let c_base = p.c_offset + z * p.c_split_stride;
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if (i < p.m) {
            for (var q = 0u; q < 4u; q++) {
                if (j[q] < p.n) {
                    c[c_base + i * p.c_row_stride + j[q]] = s[r][q];
                }
            }
        }
    }
}

// As store, through the vec4 view of C.
fn store4(i0: u32, j: vec4<u32>, jc: vec4<u32>, acc: array<vec4<f32>, 4>, z: u32) {
    let s = with_bias(acc, jc);
    let c_base = p.c_offset + z * p.c_split_stride;
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if (i < p.m) {
            for (var q = 0u; q < 4u; q++) {
                if (j[q] < p.n) {
                    let e = c_base + i * p.c_row_stride + j[q];
                    c4[e / 4u][e % 4u] = s[r][q];
                }
            }
        }
    }
}

@compute @workgroup_size(8, 8)
fn matmul4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let j = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);
    let jc = min(j, vec4<u32>(p.n - 1u));
    // B's row k at columns j0..j0+3 is b4[(b_base + k * b_row_stride) / 4]; j0 < n, so in range.
    let b_base = p.b_offset + j0;
    var acc = initial4(i0, jc, gid.z);
    let range = k_range(gid.z);
    if (A_COLS) {
        // A[i0..i0+3, k] is a4[(a_base + k * a_col_stride) / 4]. Rows past M read rows that exist
        // (the buffer holds a multiple of 4 of them) and are never stored.
        let a_base = p.a_offset + i0;
        for (var k = range.x; k < range.y; k++) {
            let av = a4[(a_base + k * p.a_col_stride) / 4u];
            var bv: vec4<f32>;
            if (ONE_HOT_B) {
                bv = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(tokens[k]) == j);
            } else {
                bv = b4[(b_base + k * p.b_row_stride) / 4u];
            }
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
    } else {
        // A[i, k..k+3] is a4[(a_row[i] + k) / 4]; K is a multiple of 4.
        var a_row: vec4<u32>;
        for (var r = 0u; r < 4u; r++) {
            a_row[r] = p.a_offset + min(i0 + r, p.m - 1u) * p.a_row_stride;
        }
        for (var k = range.x; k < range.y; k += 4u) {
            var av: array<vec4<f32>, 4>;
            for (var r = 0u; r < 4u; r++) {
                av[r] = a4[(a_row[r] + k) / 4u];
            }
            for (var q = 0u; q < 4u; q++) {
                let bv = b4[(b_base + (k + q) * p.b_row_stride) / 4u];
                acc[0] += av[0][q] * bv;
                acc[1] += av[1][q] * bv;
                acc[2] += av[2][q] * bv;
                acc[3] += av[3][q] * bv;
            }
        }
    }
    store4(i0, j, jc, acc, gid.z);
}

// matmul_tiled's workgroup memory, as vec4s: tile_a[kk · 16 + r] holds A's rows 4r … 4r+3 of
// the tile at p = kt + kk, tile_b[kk · 16 + q] B's columns 4q … 4q+3 at that p.
const TILE_K: u32 = 16u;
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 256>;

// A[i, k] with i clamped into range by the caller; 0 past the end of the sum.
fn a_at(i: u32, k: u32, end: u32) -> f32 {
    if (k >= end) {
        return 0.0;
    }
    return a[p.a_offset + i * p.a_row_stride + k * p.a_col_stride];
}

// B[k, j] with j clamped into range by the caller; 0 past the end of the sum.
fn b_at(k: u32, j: u32, end: u32) -> f32 {
    if (k >= end) {
        return 0.0;
    }
    if (ONE_HOT_B) {
        return select(0.0, 1.0, tokens[k] == j);
    }
    return b[p.b_offset + k * p.b_row_stride + j * p.b_col_stride];
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // Every invocation takes part in the copies and barriers; those past M or N clamp their
    // loads and store nothing.
    let ti = wid.y * 64u;
    let tj = wid.x * 64u;
    let i0 = ti + lid.y * 4u;
    let j0 = tj + lid.x * 4u;
    let j = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);
    let jc = min(j, vec4<u32>(p.n - 1u));
    var acc = initial(i0, jc, wid.z);
    let range = k_range(wid.z);
    for (var kt = range.x; kt < range.y; kt += TILE_K) {
        // 1,024 elements of each tile, four per invocation: A with p fastest (its rows are
        // contiguous in a row-major A), B with j fastest.
        for (var e = li; e < 64u * TILE_K; e += 256u) {
            let kk = e % TILE_K;
            let row = e / TILE_K;
            tile_a[kk * 16u + row / 4u][row % 4u] = a_at(min(ti + row, p.m - 1u), kt + kk, range.y);
            let col = e % 64u;
            let kb = e / 64u;
            tile_b[kb * 16u + col / 4u][col % 4u] = b_at(kt + kb, min(tj + col, p.n - 1u), range.y);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let av = tile_a[kk * 16u + lid.y];
            let bv = tile_b[kk * 16u + lid.x];
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    store(i0, j, jc, acc, wid.z);
}
