// Fused noise kernels on top of the block generator.
#include "noise_kernels.h"

#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>

namespace diffq {
namespace noise {

namespace {

// The kernels of one build (AVX-512, AVX2 or portable), chosen once for
// this CPU: the vector translation units are compiled with FMA, so they
// need it too. The AVX-512 build gives the AVX2 build's bits, twice as wide.
struct Kernels {
  detail::BlockFn blocks;
  detail::BackwardChunkFn backward_chunk;
  void (*range)(const float*, int64_t, float*, float*);
  void (*factors)(const float*, int64_t, float, float, float, float*, float*, float, float, double*, float*);
  void (*bits_sum)(const float*, int64_t, float, float, double*, float*);
  void (*bits_sum_grad)(const float*, int64_t, float, float*);
};

const Kernels& kernels() {
  static const Kernels chosen = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma")) {
      return Kernels{&detail::noise_blocks_avx512, &detail::backward_chunk_avx512, &detail::range_avx512,
                     &detail::group_factors_avx512, &detail::bits_sum_avx512, &detail::bits_sum_grad_avx512};
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return Kernels{&detail::noise_blocks_avx2, &detail::backward_chunk_avx2, &detail::range_avx2,
                     &detail::group_factors_avx2, &detail::bits_sum_avx2, &detail::bits_sum_grad_avx2};
    }
#endif
    return Kernels{&detail::noise_blocks_generic, &detail::backward_chunk_generic, &detail::range_generic,
                   &detail::group_factors_generic, &detail::bits_sum_generic, &detail::bits_sum_grad_generic};
  }();
  return chosen;
}

constexpr int64_t kGroupStretch = 1 << 14;  // groups per task

}  // namespace

namespace {

// Runs fn(start, count, &sum, &max) over fixed stretches of [0, n) on the
// intra-op threads and combines the stretches in order: the same total and
// maximum for any thread count.
template <typename F>
void over_stretches(int64_t n, double* sum, float* max, F&& fn) {
  const int64_t stretches = std::max<int64_t>(1, (n + kGroupStretch - 1) / kGroupStretch);
  std::vector<double> sums(static_cast<size_t>(stretches), 0.0);
  std::vector<float> maxes(static_cast<size_t>(stretches), -1.0f);
  at::parallel_for(0, stretches, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t start = s * kGroupStretch;
      fn(start, std::min(kGroupStretch, n - start), &sums[static_cast<size_t>(s)], &maxes[static_cast<size_t>(s)]);
    }
  });
  double total = 0;
  float top = maxes[0];
  for (size_t s = 0; s < sums.size(); ++s) {
    total += sums[s];
    top = std::max(top, maxes[s]);
  }
  *sum = total;
  *max = top;
}

}  // namespace

void group_factors(const float* logits, int64_t n, float a, float c, float range, float* scale, float* log_slope,
                   float min_bits, float span, double* sum, float* max) {
  const auto fn = kernels().factors;
  over_stretches(n, sum, max, [&](int64_t start, int64_t count, double* s, float* m) {
    fn(logits + start, count, a, c, range, scale + start, log_slope + start, min_bits, span, s, m);
  });
}

void bits_sum(const float* logits, int64_t n, float min_bits, float span, double* sum, float* max) {
  const auto fn = kernels().bits_sum;
  over_stretches(n, sum, max, [&](int64_t start, int64_t count, double* s, float* m) {
    fn(logits + start, count, min_bits, span, s, m);
  });
}

void bits_sum_grad(const float* logits, int64_t n, float coefficient, float* grad) {
  const auto fn = kernels().bits_sum_grad;
  at::parallel_for(0, n, kGroupStretch, [&](int64_t g0, int64_t g1) { fn(logits + g0, g1 - g0, coefficient, grad + g0); });
}

namespace {

constexpr int64_t kChunkBlocks = 256;  // 4096 values per chunk, on the stack

constexpr int64_t kChunk = kChunkBlocks * 16;
constexpr int64_t kPieceBlocks = 16;  // generated between two rounds of prefetches

// Calls fn(start, count, eps) for consecutive chunks of [0, n). When every
// chunk holds whole groups (group_size a divisor of the chunk), chunks are
// independent and run on the intra-op threads; each writes what it alone
// owns, so the result does not depend on the number of threads.
template <typename F, typename P>
void for_each_chunk(int64_t n, int64_t group_size, uint64_t key, Kind kind, F&& fn, P&& prefetch) {
  const auto blocks_fn = kernels().blocks;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  auto run = [&](int64_t c0, int64_t c1) {
    alignas(64) float eps[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t start = c * kChunk, count = std::min<int64_t>(kChunk, n - start);
      const int64_t blocks = (count + 15) / 16;
      for (int64_t b = 0; b < blocks; b += kPieceBlocks) {
        const int64_t piece = std::min(kPieceBlocks, blocks - b);
        blocks_fn(key, static_cast<uint64_t>(start / 16 + b), piece, eps + 16 * b, kind);
        prefetch(start + 16 * b, std::min(16 * piece, count - 16 * b));
      }
      fn(start, count, eps);
    }
  };
  const bool independent = group_size > 0 && kChunk % group_size == 0;
  if (independent && chunks > 1) at::parallel_for(0, chunks, 1, run);
  else run(0, chunks);
}

template <typename F>
void for_each_chunk(int64_t n, int64_t group_size, uint64_t key, Kind kind, F&& fn) {
  for_each_chunk(n, group_size, key, kind, fn, [](int64_t, int64_t) {});
}

// Σ x[0..n) in double, in a fixed order: four lanes, then pairwise.
template <typename T>
inline __attribute__((always_inline)) double sum_in_lanes(const T* x, int64_t n) {
  double lane[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) lane[j] += static_cast<double>(x[i + j]);
  }
  for (; i < n; ++i) lane[i & 3] += static_cast<double>(x[i]);
  return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}

}  // namespace

double logit_gradient(const double* sums, const float* log_slope, int64_t n, float* grad, bool accumulate) {
  const int64_t stretches = std::max<int64_t>(1, (n + kGroupStretch - 1) / kGroupStretch);
  std::vector<double> totals(static_cast<size_t>(stretches), 0.0);
  at::parallel_for(0, stretches, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t g0 = s * kGroupStretch, g1 = std::min(n, g0 + kGroupStretch);
      if (accumulate) {
        for (int64_t g = g0; g < g1; ++g) grad[g] = grad[g] + static_cast<float>(sums[g]) * log_slope[g];
      } else {
        for (int64_t g = g0; g < g1; ++g) grad[g] = static_cast<float>(sums[g]) * log_slope[g];
      }
      totals[static_cast<size_t>(s)] = sum_in_lanes(sums + g0, g1 - g0);
    }
  });
  double total = 0;
  for (double t : totals) total += t;  // in order: the same total for any thread count
  return total;
}

uint64_t mix_key(uint64_t a, uint64_t b, uint64_t c) {
  auto splitmix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return splitmix(splitmix(splitmix(a) ^ b) ^ c);
}

void fill_noise(float* out, int64_t n, uint64_t key, Kind kind) {
  for_each_chunk(n, 1, key, kind, [&](int64_t start, int64_t count, const float* eps) {
    std::copy(eps, eps + count, out + start);
  });
}

void bernoulli(uint64_t key, int64_t n, double p, bool* out) {
  for_each_chunk(n, 1, key, Kind::kUniform, [&](int64_t start, int64_t count, const float* eps) {
    bool* o = out + start;
    for (int64_t i = 0; i < count; ++i) o[i] = static_cast<double>(eps[i] + 0.5f) < p;  // u exact: k·2^-24
  });
}

namespace {

// The range of several stretches (count >= 1) from theirs, in order: NaN
// wins (it compares false).
void combine_ranges(const float* lows, const float* highs, size_t count, float* low, float* high) {
  float lo = lows[0], hi = highs[0];
  for (size_t s = 1; s < count; ++s) {
    lo = std::isnan(lo) || std::isnan(lows[s]) ? NAN : std::min(lo, lows[s]);
    hi = std::isnan(hi) || std::isnan(highs[s]) ? NAN : std::max(hi, highs[s]);
  }
  *low = lo;
  *high = hi;
}

}  // namespace

void range(const float* w, int64_t n, float* low, float* high) {
  const auto fn = kernels().range;
  constexpr int64_t kStretch = 1 << 16;
  const int64_t stretches = (n + kStretch - 1) / kStretch;
  std::vector<float> lows(static_cast<size_t>(stretches)), highs(static_cast<size_t>(stretches));
  at::parallel_for(0, stretches, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t start = s * kStretch;
      fn(w + start, std::min(kStretch, n - start), &lows[static_cast<size_t>(s)], &highs[static_cast<size_t>(s)]);
    }
  });
  combine_ranges(lows.data(), highs.data(), lows.size(), low, high);
}

namespace {

// Prefetches [p, p + bytes) into the caches, for reading or for writing.
// Inline assembly on x86: GCC deems a function that only calls
// __builtin_prefetch free of side effects and drops the calls to it.
template <int kWrite>
inline void prefetch_lines(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t b = 0; b < bytes; b += 64) {
#if defined(__x86_64__)
    if (kWrite) asm volatile("prefetchw %0" : : "m"(c[b]));  // a NOP on CPUs without PRFCHW
    else asm volatile("prefetcht0 %0" : : "m"(c[b]));
#else
    __builtin_prefetch(c + b, kWrite, 3);
#endif
  }
}

}  // namespace

namespace {

// The range of the next tensor to be noised, gathered during a noise pass:
// chunk c of the pass owns the c-th share of `next`, prefetches it piece by
// piece while its noise is drawn and takes its range once the chunk is
// written, from the caches.
struct RangeAlong {
  const float* next = nullptr;
  int64_t n = 0, share = 0;
  std::vector<float> lows, highs;

  // next_n > 0, chunks > 0.
  RangeAlong(const float* next_values, int64_t next_n, int64_t chunks)
      : next(next_values), n(next_n), share((next_n + chunks - 1) / chunks) {
    lows.resize(static_cast<size_t>(chunks));
    highs.resize(static_cast<size_t>(chunks));
  }
  // [begin, end) of chunk c's share.
  int64_t begin(int64_t c) const { return std::min(n, c * share); }
  int64_t end(int64_t c) const { return std::min(n, (c + 1) * share); }
  // While piece [start, start + count) of chunk c (of `chunk_count` values) is
  // drawn: the proportional part of the chunk's share.
  void prefetch(int64_t c, int64_t offset, int64_t count, int64_t chunk_count) const {
    const int64_t b = begin(c), len = end(c) - b;
    if (len <= 0 || chunk_count <= 0) return;
    const int64_t from = b + len * offset / chunk_count, to = b + len * (offset + count) / chunk_count;
    if (to > from) prefetch_lines<0>(next + from, (to - from) * static_cast<int64_t>(sizeof(float)));
  }
  void take(int64_t c) {
    const int64_t b = begin(c), e = end(c);
    if (e <= b) return;
    kernels().range(next + b, e - b, &lows[static_cast<size_t>(c)], &highs[static_cast<size_t>(c)]);
  }
  // The shares that hold values are the first ceil(n / share) ones.
  void result(float* low, float* high) const {
    combine_ranges(lows.data(), highs.data(), static_cast<size_t>((n + share - 1) / share), low, high);
  }
};

// The noise pass, with the next tensor's range along the way when `along`
// is given. The generator is compute-bound: while it runs, the weights each
// chunk reads and the noisy weights it writes are prefetched, so that the
// chunk's memory traffic overlaps arithmetic.
template <typename T>
void noise_pass(const T* w, T* out, int64_t n, int64_t group_size, const T* scale, uint64_t key, Kind kind,
                RangeAlong* along) {
  for_each_chunk(n, group_size, key, kind, [&](int64_t start, int64_t count, const float* eps) {
    const T* wc = w + start;
    T* oc = out + start;
    if (group_size == 0) {
      const T s = scale[0];
      for (int64_t i = 0; i < count; ++i) oc[i] = wc[i] + s * static_cast<T>(eps[i]);
    } else if (group_size % 16 == 0) {  // chunks start on multiples of 16
      for (int64_t b = 0; b < count; b += 16) {
        const T s = scale[(start + b) / group_size];
        const int64_t end = std::min<int64_t>(16, count - b);
        for (int64_t i = 0; i < end; ++i) oc[b + i] = wc[b + i] + s * static_cast<T>(eps[b + i]);
      }
    } else {
      int64_t g = start / group_size;
      int64_t left = group_size - start % group_size;
      for (int64_t i = 0; i < count; ++i) {
        oc[i] = wc[i] + scale[g] * static_cast<T>(eps[i]);
        if (--left == 0) {
          ++g;
          left = group_size;
        }
      }
    }
    if (along != nullptr) along->take(start / kChunk);
  }, [&](int64_t start, int64_t count) {  // a piece of a chunk, just generated
    prefetch_lines<0>(w + start, count * static_cast<int64_t>(sizeof(T)));
    prefetch_lines<1>(out + start, count * static_cast<int64_t>(sizeof(T)));
    if (along != nullptr) {
      const int64_t c = start / kChunk;
      along->prefetch(c, start - c * kChunk, count, std::min(kChunk, n - c * kChunk));
    }
  });
}

}  // namespace

template <typename T>
void add_noise(const T* w, T* out, int64_t n, int64_t group_size, const T* scale, uint64_t key,
               Kind kind) {
  noise_pass(w, out, n, group_size, scale, key, kind, nullptr);
}

template <typename T>
void add_noise_and_range(const T* w, T* out, int64_t n, int64_t group_size, const T* scale, uint64_t key, Kind kind,
                         const float* next, int64_t next_n, float* low, float* high) {
  if (n <= 0) {  // no pass to ride on
    range(next, next_n, low, high);
    add_noise(w, out, n, group_size, scale, key, kind);
    return;
  }
  RangeAlong along(next, next_n, (n + kChunk - 1) / kChunk);
  noise_pass(w, out, n, group_size, scale, key, kind, &along);
  along.result(low, high);
}

namespace {

// The backward's driver: chunk(start, count, sums_out) handles the elements
// [start, start + count) (whole groups; one group: fixed chunks whose
// partial sums are added in order, so that the sums do not depend on how
// chunks meet threads) and returns how many of its weights equal low or
// high; their indices are then gathered in ascending order.
template <typename T, typename Chunk>
void backward_by_chunks(const T* w, int64_t n, int64_t group_size, T low, T high, double* sums,
                        std::vector<int64_t>& at_low, std::vector<int64_t>& at_high, const Chunk& chunk) {
  const int64_t per_chunk =
      group_size == 0 ? kChunk : std::max<int64_t>(1, kChunk / group_size) * group_size;
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  std::vector<double> partial(group_size == 0 ? static_cast<size_t>(chunks) : 0);
  std::vector<std::vector<int64_t>> lows(static_cast<size_t>(chunks)), highs(static_cast<size_t>(chunks));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t start = c * per_chunk, count = std::min(n - start, per_chunk);
      double* out_sums = group_size == 0 ? &partial[static_cast<size_t>(c)] : sums + start / group_size;
      if (chunk(start, count, out_sums) > 0) {  // rare: the chunk holds the minimum or the maximum
        const T* wc = w + start;
        for (int64_t i = 0; i < count; ++i) {
          if (wc[i] == low) lows[static_cast<size_t>(c)].push_back(start + i);
          if (wc[i] == high) highs[static_cast<size_t>(c)].push_back(start + i);
        }
      }
    }
  });
  if (group_size == 0) {
    double total = 0;
    for (double p : partial) total += p;
    sums[0] = total;
  }
  at_low.clear();
  at_high.clear();
  for (const auto& v : lows) at_low.insert(at_low.end(), v.begin(), v.end());
  for (const auto& v : highs) at_high.insert(at_high.end(), v.begin(), v.end());
}

}  // namespace

template <typename T>
void noise_backward(const T* grad, const T* noisy, const T* w, int64_t n, int64_t group_size, T low,
                    T high, double* sums, T* grad_out, std::vector<int64_t>& at_low,
                    std::vector<int64_t>& at_high) {
  backward_by_chunks(w, n, group_size, low, high, sums, at_low, at_high,
                     [&](int64_t start, int64_t count, double* out_sums) {
    thread_local std::vector<T> product;
    product.resize(static_cast<size_t>(count));
    T* p = product.data();
    const T *gc = grad + start, *nc = noisy + start, *wc = w + start;
    for (int64_t i = 0; i < count; ++i) p[i] = gc[i] * (nc[i] - wc[i]);
    std::copy(gc, gc + count, grad_out + start);  // after the reads: grad_out may be noisy
    int64_t extremes = 0;
    for (int64_t i = 0; i < count; ++i) extremes += static_cast<int64_t>(wc[i] == low || wc[i] == high);
    const int64_t group = group_size == 0 ? count : group_size;
    for (int64_t g0 = 0; g0 < count; g0 += group) out_sums[g0 / group] = sum_in_lanes(p + g0, std::min(group, count - g0));
    return extremes;
  });
}

// float: the chunk kernel of this CPU (AVX-512, AVX2 or portable; the same bits).
template <>
void noise_backward<float>(const float* grad, const float* noisy, const float* w, int64_t n, int64_t group_size,
                           float low, float high, double* sums, float* grad_out, std::vector<int64_t>& at_low,
                           std::vector<int64_t>& at_high) {
  const auto chunk_fn = kernels().backward_chunk;
  backward_by_chunks(w, n, group_size, low, high, sums, at_low, at_high,
                     [&](int64_t start, int64_t count, double* out_sums) {
    return chunk_fn(grad + start, noisy + start, w + start, grad_out + start, count,
                    group_size == 0 ? count : group_size, low, high, out_sums);
  });
}

template void add_noise<float>(const float*, float*, int64_t, int64_t, const float*, uint64_t, Kind);
template void add_noise<double>(const double*, double*, int64_t, int64_t, const double*, uint64_t, Kind);
template void add_noise_and_range<float>(const float*, float*, int64_t, int64_t, const float*, uint64_t, Kind,
                                         const float*, int64_t, float*, float*);
template void add_noise_and_range<double>(const double*, double*, int64_t, int64_t, const double*, uint64_t, Kind,
                                          const float*, int64_t, float*, float*);
template void noise_backward<double>(const double*, const double*, const double*, int64_t, int64_t, double,
                                     double, double*, double*, std::vector<int64_t>&, std::vector<int64_t>&);

}  // namespace noise
}  // namespace diffq
