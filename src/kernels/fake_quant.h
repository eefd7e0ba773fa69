#pragma once
// Fused CPU kernels (float32, contiguous) for the straight-through
// quantizers' training steps: one pass and one output buffer where the
// tensor expressions need several temporaries. Each computes exactly the
// same float operations as the tensor expressions it replaces (no FMA
// contraction), so results are bit-identical to them; sums are taken per
// fixed chunk and added in chunk order, so they do not depend on the
// number of threads. Internal to the library.
#include <cstdint>

namespace diffq {
namespace kernels {

/// Uniform fake quantization over [mn, mx] with `denom` = 2^bits - 1:
/// out[i] = round((w[i] - mn) / (mx - mn) · denom) / denom · (mx - mn) + mn
/// (round half to even). Requires mx > mn.
void uniform_fake_quant(const float* w, float* out, int64_t n, float mn, float mx, float denom);

/// Quant-Noise's scalar noise over the affine range [mn, mx] (mx > mn),
/// `denom` = 2^bits - 1: out[i] = clamp(round((w[i] - mn) / (mx - mn) ·
/// denom), 0, denom) / denom · (mx - mn) + mn where selected[i], else w[i];
/// pass[i] = !(selected[i] && !(mn <= w[i] <= mx)) (the straight-through
/// estimator's mask: selected weights outside the range get no gradient).
void noise_fake_quant(const float* w, const bool* selected, float* out, bool* pass, int64_t n, float mn, float mx,
                      float denom);

/// Quant-Noise's proxy drop: out[i] = 0 where drop[i / block], else
/// w[i] / keep (inverted dropout, keep = 1 - p).
void proxy_drop(const float* w, const bool* drop, float* out, int64_t n, int64_t block, float keep);

/// out[i] = grad[i] · (pass[i] ? 1 : 0) (`out` may be `grad`).
void masked_gradient(const float* grad, const bool* pass, float* out, int64_t n);

/// LSQ forward: out[i] = clamp(round(w[i] / step), -qn, qp) · step + 0 (the
/// + 0 turns a level of -0 into +0: what restoring the integer level gives). Returns
/// whether every w[i] is finite (the step's check of the weights, in the
/// same pass).
bool lsq_forward(const float* w, float* out, int64_t n, float step, float qn, float qp);

/// LSQ backward. With v = w / step: grad_out[i] = grad[i] where -qn < v < qp,
/// else grad[i] · 0; returns Σ grad[i] · d(w_q)/d(step) (round(v) - v inside,
/// -qn below, qp above), accumulated in double.
double lsq_backward(const float* w, const float* grad, float* grad_out, int64_t n, float step, float qn,
                    float qp);

}  // namespace kernels
}  // namespace diffq
