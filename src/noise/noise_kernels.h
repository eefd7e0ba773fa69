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

/// add_noise(), and in the same pass *low, *high = range(next, next_n) (next_n
/// > 0): the next tensor's reads overlap this one's draw.
template <typename T>
void add_noise_and_range(const T* w, T* out, int64_t n, int64_t group_size, const T* scale, uint64_t key, Kind kind,
                         const float* next, int64_t next_n, float* low, float* high);

/// The backward pass of the noisy weights, one pass over the data:
/// sums[g] = Σ_{i in group g} grad[i] · (noisy[i] - w[i]) (accumulated in
/// double; the noise is recovered from the installed weights, not drawn
/// again), grad_out[i] = grad[i], and the ascending indices where w equals
/// `low` and `high`. The result does not depend on the thread count.
template <typename T>
void noise_backward(const T* grad, const T* noisy, const T* w, int64_t n, int64_t group_size, T low,
                    T high, double* sums, T* grad_out, std::vector<int64_t>& at_low,
                    std::vector<int64_t>& at_high);
/// float: one kernel per CPU (AVX-512, AVX2 or portable), chosen at run time.
template <>
void noise_backward<float>(const float* grad, const float* noisy, const float* w, int64_t n, int64_t group_size,
                           float low, float high, double* sums, float* grad_out, std::vector<int64_t>& at_low,
                           std::vector<int64_t>& at_high);

/// The smallest and the largest of w[0..n) (n > 0), both NaN when any
/// element is NaN; on the intra-op threads, the same result for any count.
void range(const float* w, int64_t n, float* low, float* high);

/// DiffQ's per-group quantities in the bits parametrisation, from float
/// logits l (b = min_bits + σ(l)·span, s = 1/(2^b − 1)): one vectorised pass
/// each, over fixed stretches of groups on the intra-op threads (the same
/// result for any thread count).
///
/// scale[g] = s_g · range and log_slope[g] = d ln s_g / d l_g, with
/// a = span·ln 2 and c = min_bits·ln 2; in the same pass *sum and *max as
/// bits_sum() gives them (the same bits).
void group_factors(const float* logits, int64_t n, float a, float c, float range, float* scale, float* log_slope,
                   float min_bits, float span, double* sum, float* max);
/// *sum = Σ_g b_g (in double; b_g rounded to float, element g added to lane
/// g mod 8 of each fixed stretch) and *max = max_g b_g.
void bits_sum(const float* logits, int64_t n, float min_bits, float span, double* sum, float* max);
/// grad[g] = coefficient · σ(l_g)(1 − σ(l_g)): d (coefficient/span · Σ b) / d l_g.
void bits_sum_grad(const float* logits, int64_t n, float coefficient, float* grad);

/// The logits' gradient from the backward's group sums, one pass:
/// grad[g] = (float) sums[g] · log_slope[g], or grad[g] + that product when
/// `accumulate`. Returns Σ_g sums[g] (in double, in a fixed order: the same
/// for any thread count).
double logit_gradient(const double* sums, const float* log_slope, int64_t n, float* grad, bool accumulate);

/// Bernoulli draws from the uniform stream: out[i] = 1 when
/// ε(key, i) + 1/2 < p (kUniform), else 0; probability ceil(p·2^24)/2^24.
/// A pure function of (key, i): the same for any thread count.
void bernoulli(uint64_t key, int64_t n, double p, bool* out);

/// Fills eps[0..n) with ε(key, i) (tests and diagnostics).
void fill_noise(float* eps, int64_t n, uint64_t key, Kind kind);

/// A 64-bit mix of several values (per-step, per-tensor keys).
uint64_t mix_key(uint64_t a, uint64_t b, uint64_t c);

namespace detail {
/// The block kernel: 16 values of ε for block `block` (one per implementation).
using BlockFn = void (*)(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);
void noise_blocks_generic(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);
void noise_blocks_avx2(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);
void noise_blocks_avx512(uint64_t key, uint64_t first_block, int64_t blocks, float* out, Kind kind);

/// One chunk of the float backward (one per implementation, the same bits):
/// the chunk's `count` elements fall in groups of `group` (the last one may
/// be shorter); sums[k] = Σ grad·(noisy − w) over group k, each product
/// rounded to float, accumulated in double over four lanes (element t of the
/// group goes to lane t mod 4, in order), then (lane 0 + lane 1) + (lane 2 +
/// lane 3); out[i] = grad[i], written after noisy[i] is read (`out` may be
/// `noisy`). Returns how many w[i] equal `low` or `high`.
using BackwardChunkFn = int64_t (*)(const float* grad, const float* noisy, const float* w, float* out,
                                    int64_t count, int64_t group, float low, float high, double* sums);
int64_t backward_chunk_generic(const float* grad, const float* noisy, const float* w, float* out, int64_t count,
                               int64_t group, float low, float high, double* sums);
int64_t backward_chunk_avx2(const float* grad, const float* noisy, const float* w, float* out, int64_t count,
                            int64_t group, float low, float high, double* sums);
int64_t backward_chunk_avx512(const float* grad, const float* noisy, const float* w, float* out, int64_t count,
                              int64_t group, float low, float high, double* sums);

/// The range of one stretch of weights (one per implementation): see range().
void range_generic(const float* w, int64_t n, float* low, float* high);
void range_avx2(const float* w, int64_t n, float* low, float* high);
void range_avx512(const float* w, int64_t n, float* low, float* high);

/// The group kernels over one stretch (one set per implementation): see
/// group_factors(), bits_sum(), bits_sum_grad().
void group_factors_generic(const float*, int64_t, float, float, float, float*, float*, float, float, double*, float*);
void group_factors_avx2(const float*, int64_t, float, float, float, float*, float*, float, float, double*, float*);
void group_factors_avx512(const float*, int64_t, float, float, float, float*, float*, float, float, double*, float*);
void bits_sum_generic(const float*, int64_t, float, float, double*, float*);
void bits_sum_avx2(const float*, int64_t, float, float, double*, float*);
void bits_sum_avx512(const float*, int64_t, float, float, double*, float*);
void bits_sum_grad_generic(const float*, int64_t, float, float*);
void bits_sum_grad_avx2(const float*, int64_t, float, float*);
void bits_sum_grad_avx512(const float*, int64_t, float, float*);
}  // namespace detail

}  // namespace noise
}  // namespace diffq
