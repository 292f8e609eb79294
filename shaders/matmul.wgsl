// matmul.wgsl: C = A · B (+ bias), one kernel for every product the training step needs.
//
// Math, with A (M, K), B (K, N), C (M, N):
//   C[i, j] = Σ_p A[i, p] B[p, j]  (+ bias[j] when ADD_BIAS is set in `flags`)
// A and B are read through strides, so a transposed operand costs nothing extra:
//   A[i, p] = a[a_offset + i * a_row_stride + p * a_col_stride]
//   B[p, j] = b[b_offset + p * b_row_stride + j * b_col_stride]
//   C[i, j] = c[c_offset + i * c_row_stride + j]
// Uses in one step (B batch, T steps, I input, H hidden, O output; hs is (T+1, B, H)):
//   input projection (dense)  pre = x U^T + b        (T·B, I) · (I, H)
//   output projection         y   = hs[1..] V^T + c  (T·B, H) · (H, O)
//   output gradient           dh  = dy V             (T·B, O) · (O, H)
//   weight gradients          dV  = dy^T hs[1..],  dW = dA^T hs[..T],  dU = dA^T x
//   initial-state gradient    dh0 = dA_1 W           (B, H) · (H, H)
//
// Each invocation computes a 4×4 block of C with its accumulators in registers; a workgroup of
// 8×8 invocations covers a 32×32 tile. Neighbouring invocations (x) own neighbouring column
// blocks, so their loads of B (and stores of C) touch neighbouring addresses when B is row-major.
// Out-of-range rows and columns are clamped on load and skipped on store.
//
// Bindings:
//   @binding(0) p:    MatmulParams, uniform
//   @binding(1) a:    array<f32>, read
//   @binding(2) b:    array<f32>, read
//   @binding(3) bias: array<f32>, read      (read only when ADD_BIAS is set)
//   @binding(4) c:    array<f32>, read_write

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
    bias_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const ADD_BIAS: u32 = 1u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    // Clamped row and column indices: loads stay in bounds, stores are guarded below.
    var a_row: vec4<u32>;
    var b_col: vec4<u32>;
    for (var r = 0u; r < 4u; r++) {
        a_row[r] = p.a_offset + min(i0 + r, p.m - 1u) * p.a_row_stride;
        b_col[r] = p.b_offset + min(j0 + r, p.n - 1u) * p.b_col_stride;
    }
    var acc: array<vec4<f32>, 4>;
    for (var k = 0u; k < p.k; k++) {
        let ak = k * p.a_col_stride;
        let bk = k * p.b_row_stride;
        let bv = vec4<f32>(b[b_col.x + bk], b[b_col.y + bk], b[b_col.z + bk], b[b_col.w + bk]);
        acc[0] += a[a_row.x + ak] * bv;
        acc[1] += a[a_row.y + ak] * bv;
        acc[2] += a[a_row.z + ak] * bv;
        acc[3] += a[a_row.w + ak] * bv;
    }
    var bias_v = vec4<f32>(0.0);
    if ((p.flags & ADD_BIAS) != 0u) {
        for (var r = 0u; r < 4u; r++) {
            bias_v[r] = bias[p.bias_offset + min(j0 + r, p.n - 1u)];
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if (i < p.m) {
            let row = acc[r] + bias_v;
            for (var s = 0u; s < 4u; s++) {
                let j = j0 + s;
                if (j < p.n) {
                    c[p.c_offset + i * p.c_row_stride + j] = row[s];
                }
            }
        }
    }
}
