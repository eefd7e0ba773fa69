#pragma once
// Fused CPU kernels for DiffQ's pseudo quantization noise.
//
// The noise ε_i is a pure function of (key, i): a counter-based generator
// (two rounds of a 32-bit integer finaliser per uniform) feeding a
// vectorised Box-Muller transform (Gaussian) or used directly (uniform).
// The backward pass reads the noise back from the noisy weights (which
// the forward's graph keeps alive anyway): no noise is stored or drawn twice.
//
// Layout: elements come in blocks of 16; pair j of block b gives elements
// 16b + j (r·cos θ) and 16b + 8 + j (r·sin θ). Gaussian draws are exact
// Box-Muller on 24-bit uniforms, so |N| <= 5.77 (tails beyond have
// probability 8e-9). Values: ε = N(0,1)/2 (Gaussian) or U[-1/2, 1/2).
#include <cstdint>
#include <vector>

namespace diffq {
namespace noise {

/// Kind of noise.
enum class Kind { kGaussian, kUniform };

/// out[i] = w[i] + scale[group(i)] · ε(key, i), group(i) = i / group_size
/// (group_size 0: one group). `out` may alias `w`.
template <typename T>
void add_noise(const T* w, T* out, int64_t n, int64_t group_size, const T* scale, uint64_t key,
               Kind kind);

/// The backward pass of the noisy weights, one pass over the data:
/// sums[g] = Σ_{i in group g} grad[i] · (noisy[i] - w[i]) (accumulated in
/// double; the noise is recovered from the installed weights, not drawn
/// again), grad_out[i] = grad[i], and the ascending indices where w equals
/// `low` and `high`. The result does not depend on the thread count.
template <typename T>
void noise_backward(const T* grad, const T* noisy, const T* w, int64_t n, int64_t group_size, T low,
                    T high, double* sums, T* grad_out, std::vector<int64_t>& at_low,
                    std::vector<int64_t>& at_high);

/// Fills eps[0..n) with ε(key, i) (tests and diagnostics).
void fill_noise(float* eps, int64_t n, uint64_t key, Kind kind);

/// A 64-bit mix of several values (per-step, per-tensor keys).
uint64_t mix_key(uint64_t a, uint64_t b, uint64_t c);

namespace detail {
/// The block kernel: 16 values of ε for block `block` (one per implementation).
using BlockFn = void (*)(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);
void noise_blocks_generic(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);
void noise_blocks_avx2(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);
}  // namespace detail

}  // namespace noise
}  // namespace diffq
