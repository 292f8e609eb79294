// optimizer.wgsl: gradient clipping by global norm and the parameter update, flat over the
// contiguous parameter vector (the model's table: every layer's U, W, b_ih, b_hh, then V, c, back
// to back; grads and moments share the layout).
//
// grad_norm_partial (`groups` workgroups of 256), then grad_norm (one workgroup):
//   sums[w]  = Σ g_i² over the elements of workgroup w   (i = 256 w + lane, strided by 256 · groups)
//   stats[1] = ‖g‖ = sqrt(Σ_w sums[w])
//   state.t += 1;  state.bias1 += (1 − state.bias1)(1 − β1);  state.bias2 likewise
// The bias corrections 1 − β^t are kept by that recurrence rather than computed with pow: a
// GPU's pow is an approximation, and 1 − β^t (about 1e-3 at t = 1 for β2 = 0.999) magnifies
// its error; with pow, Adam on the GPU drifted 1e-5 (relative) from the CPU in five steps.
// Every sum runs in a fixed order (strided, then a tree over the lanes), so the norm has the same
// bits on every run; the first stage spreads a large model's parameters over many workgroups.
// update (one invocation per element), with t = state.t, lr_t = lr · decay^floor((t−1) / decay_every),
// and s = min(1, clip / ‖g‖) when clip > 0, else 1;  g = s · grads[i]:
//   SGD:      m = μ m + g;                       p −= lr_t m
//   Adagrad:  v = v + g²;                        p −= lr_t g / (sqrt(v) + ε)
//   Adam:     m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²
//             p −= lr_t (m / bias1) / (sqrt(v / bias2) + ε)        (bias = 1 − β^t)
// The step counter lives on the GPU, so a training step uploads nothing but its batch.
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:      OptimParams, uniform
//   @binding(1) grads:  array<f32>, read        (P)
//   @binding(2) params: array<f32>, read_write  (P)   update only
//   @binding(3) m:      array<f32>, read_write  (P)   update only
//   @binding(4) v:      array<f32>, read_write  (P)   update only
//   @binding(5) stats:  array<f32>, read_write  [loss, ‖g‖]
//   @binding(6) state:  OptimState, read_write  t, 1 − β1^t, 1 − β2^t
//   @binding(7) sums:   array<f32>, read_write  (groups)   the first stage's partial sums

struct OptimParams {
    n: u32,
    kind: u32,
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    clip: f32,
    decay: f32,
    decay_every: u32,
    groups: u32,
    _pad: u32,
}

struct OptimState {
    t: u32,
    bias1: f32,
    bias2: f32,
    _pad: u32,
}

const SGD: u32 = 0u;
const ADAGRAD: u32 = 1u;
const ADAM: u32 = 2u;

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: OptimState;
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

var<workgroup> partial: array<f32, 256>;

// Sums the 256 lanes' values of `partial` into partial[0], pairwise.
fn tree_sum(lid: u32) {
    workgroupBarrier();
    for (var width = 128u; width > 0u; width >>= 1u) {
        if (lid < width) {
            partial[lid] += partial[lid + width];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn grad_norm_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < p.n; i += 256u * p.groups) {
        acc += grads[i] * grads[i];
    }
    partial[lid] = acc;
    tree_sum(lid);
    if (lid == 0u) {
        sums[wid.x] = partial[0];
    }
}

@compute @workgroup_size(256)
fn grad_norm(@builtin(local_invocation_index) lid: u32) {
    partial[lid] = select(0.0, sums[lid], lid < p.groups);
    tree_sum(lid);
    if (lid == 0u) {
        stats[1] = sqrt(partial[0]);
        state.t += 1u;
        state.bias1 += (1.0 - state.bias1) * (1.0 - p.beta1);
        state.bias2 += (1.0 - state.bias2) * (1.0 - p.beta2);
    }
}

@compute @workgroup_size(64)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i >= p.n) {
        return;
    }
    let t = state.t;
    var scale = 1.0;
    if (p.clip > 0.0) {
        scale = min(1.0, p.clip / stats[1]);
    }
    let g = grads[i] * scale;
    let lr = p.lr * pow(p.decay, f32((t - 1u) / p.decay_every));
    switch p.kind {
        case SGD: {
            m[i] = p.momentum * m[i] + g;
            params[i] -= lr * m[i];
        }
        case ADAGRAD: {
            v[i] += g * g;
            params[i] -= lr * g / (sqrt(v[i]) + p.eps);
        }
        default: {
            m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * g;
            v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
            let m_hat = m[i] / state.bias1;
            let v_hat = v[i] / state.bias2;
            params[i] -= lr * m_hat / (sqrt(v_hat) + p.eps);
        }
    }
}
