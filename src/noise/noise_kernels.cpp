// Fused noise kernels on top of the block generator.
#include "noise_kernels.h"

#include <algorithm>

#include <ATen/Parallel.h>

namespace diffq {
namespace noise {

namespace {

detail::BlockFn block_function() {
  static const detail::BlockFn fn = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return &detail::noise_blocks_avx2;
    }
#endif
    return &detail::noise_blocks_generic;
  }();
  return fn;
}

constexpr int64_t kChunkBlocks = 256;  // 4096 values per chunk, on the stack

constexpr int64_t kChunk = kChunkBlocks * 16;

// Calls fn(start, count, eps) for consecutive chunks of [0, n). When every
// chunk holds whole groups (group_size a divisor of the chunk), chunks are
// independent and run on the intra-op threads; each writes what it alone
// owns, so the result does not depend on the number of threads.
template <typename F>
void for_each_chunk(int64_t n, int64_t group_size, uint64_t key, Kind kind, F&& fn) {
  const auto blocks_fn = block_function();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  auto run = [&](int64_t c0, int64_t c1) {
    alignas(64) float eps[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t start = c * kChunk, count = std::min<int64_t>(kChunk, n - start);
      blocks_fn(key, static_cast<uint64_t>(start / 16), (count + 15) / 16, eps, kind);
      fn(start, count, eps);
    }
  };
  const bool independent = group_size > 0 && kChunk % group_size == 0;
  if (independent && chunks > 1) at::parallel_for(0, chunks, 1, run);
  else run(0, chunks);
}

}  // namespace

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

template <typename T>
void add_noise(const T* w, T* out, int64_t n, int64_t group_size, const T* scale, uint64_t key,
               Kind kind) {
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
  });
}

template <typename T>
void correlate_noise(const T* grad, int64_t n, int64_t group_size, uint64_t key, Kind kind,
                     double* sums) {
  const int64_t groups = group_size == 0 ? 1 : n / group_size;
  std::fill(sums, sums + groups, 0.0);
  for_each_chunk(n, group_size, key, kind, [&](int64_t start, int64_t count, const float* eps) {
    const T* gc = grad + start;
    if (group_size == 0) {
      T acc = 0;
      for (int64_t i = 0; i < count; ++i) acc += gc[i] * static_cast<T>(eps[i]);
      sums[0] += static_cast<double>(acc);
    } else if (group_size % 16 == 0) {
      for (int64_t b = 0; b < count; b += 16) {
        const int64_t end = std::min<int64_t>(16, count - b);
        T acc = 0;
        for (int64_t i = 0; i < end; ++i) acc += gc[b + i] * static_cast<T>(eps[b + i]);
        sums[(start + b) / group_size] += static_cast<double>(acc);
      }
    } else {
      int64_t g = start / group_size;
      int64_t left = group_size - start % group_size;
      T acc = 0;
      for (int64_t i = 0; i < count; ++i) {
        acc += gc[i] * static_cast<T>(eps[i]);
        if (--left == 0) {
          sums[g] += static_cast<double>(acc);
          acc = 0;
          ++g;
          left = group_size;
        }
      }
      if (left != group_size) sums[g] += static_cast<double>(acc);
    }
  });
}

template void add_noise<float>(const float*, float*, int64_t, int64_t, const float*, uint64_t, Kind);
template void add_noise<double>(const double*, double*, int64_t, int64_t, const double*, uint64_t, Kind);
template void correlate_noise<float>(const float*, int64_t, int64_t, uint64_t, Kind, double*);
template void correlate_noise<double>(const double*, int64_t, int64_t, uint64_t, Kind, double*);

}  // namespace noise
}  // namespace diffq
