// activation.wgsl: tanh to within a few ulps of the correctly rounded f32 everywhere, prepended to
// every shader that applies it (matmul.wgsl, rnn_sequence.wgsl, cell.wgsl's cells).
//
//   tanh_f32(x) = x − x³/3 + 2x⁵/15 − … (its Taylor series to x¹⁷)   |x| < 0.5
//               = sign(x) · (1 − 2 / (exp(2|x|) + 1))                  |x| ≥ 0.5
//
// The builtin tanh of software adapters is not that accurate: lavapipe's was up to 510 ulps off
// below |x| = 0.6, and rounded 56 % of the inputs in [5, 10] away from the nearest f32, returning
// 1.0 where tanh(x) is 1 − 6·10⁻⁸. The backward pass multiplies by 1 − h², which such an h makes
// wrong by up to 100 % where a unit saturates; the CPU reference's tanh is correctly rounded.
// Below 0.5 the series' first dropped term is under an ulp; above it, the error of exp lands on
// the small term 2 / (exp(2|x|) + 1), and exp's overflow to inf gives 1 exactly.
fn tanh_f32(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.5) {
        let x2 = x * x;
        var s = 0.000590027440945586;
        s = s * x2 - 0.0014558343870513183;
        s = s * x2 + 0.003592128036572481;
        s = s * x2 - 0.008863235529902197;
        s = s * x2 + 0.021869488536155203;
        s = s * x2 - 0.05396825396825397;
        s = s * x2 + 0.13333333333333333;
        s = s * x2 - 0.3333333333333333;
        return x + x * (x2 * s);
    }
    let t = 1.0 - 2.0 / (exp(2.0 * ax) + 1.0);
    return select(-t, t, x >= 0.0);
}
