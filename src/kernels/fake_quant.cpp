// Fused straight-through quantization kernels (see fake_quant.h).
#include "fake_quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>

namespace diffq {
namespace kernels {

namespace {

constexpr int64_t kChunk = 1 << 14;

// Runs fn(begin, end) over fixed chunks of [0, n) on the intra-op threads.
template <typename F>
void for_chunks(int64_t n, F&& fn) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c, c * kChunk, std::min(n, (c + 1) * kChunk));
  });
}

// The loops, compiled for AVX2 and for the baseline (chosen at load time):
// rounding is one instruction with SSE4.1/AVX.
#define DIFFQ_CLONES __attribute__((target_clones("avx2", "default")))

DIFFQ_CLONES void uniform_range(const float* w, float* out, int64_t b, int64_t e, float mn, float range,
                                float denom) {
  for (int64_t i = b; i < e; ++i) {
    const float level = std::nearbyint((w[i] - mn) / range * denom);
    out[i] = level / denom * range + mn;
  }
}

// Branch-free (selected as bytes, the value computed for every weight) so
// that the loop vectorises.
DIFFQ_CLONES void noise_range(const float* w, const bool* selected, float* out, bool* pass, int64_t b, int64_t e,
                              float mn, float mx, float range, float denom) {
  const auto* sel = reinterpret_cast<const uint8_t*>(selected);
  auto* through = reinterpret_cast<uint8_t*>(pass);
  for (int64_t i = b; i < e; ++i) {
    const float wi = w[i];
    const float level = std::min(std::max(std::nearbyint((wi - mn) / range * denom), 0.0f), denom);
    const float q = level / denom * range + mn;
    const uint8_t s = sel[i];
    out[i] = s != 0 ? q : wi;
    const uint8_t inside = static_cast<uint8_t>(static_cast<uint8_t>(wi >= mn) & static_cast<uint8_t>(wi <= mx));
    through[i] = static_cast<uint8_t>(1 - (s & (1 - inside)));
  }
}

DIFFQ_CLONES void drop_range(const float* w, const bool* drop, float* out, int64_t b, int64_t e, int64_t block,
                             float keep) {
  const auto* dropped = reinterpret_cast<const uint8_t*>(drop);
  for (int64_t i = b; i < e;) {  // block by block: one division per block, not per weight
    const int64_t k = i / block, end = std::min(e, (k + 1) * block);
    if (dropped[k] != 0) {
      for (; i < end; ++i) out[i] = 0.0f;
    } else {
      for (; i < end; ++i) out[i] = w[i] / keep;
    }
  }
}

DIFFQ_CLONES void masked_range(const float* grad, const bool* pass, float* out, int64_t b, int64_t e) {
  const auto* through = reinterpret_cast<const uint8_t*>(pass);
  for (int64_t i = b; i < e; ++i) out[i] = grad[i] * (through[i] != 0 ? 1.0f : 0.0f);
}

// Returns whether every w[i] is finite (|w| <= FLT_MAX fails for NaN and ±inf).
DIFFQ_CLONES bool lsq_forward_range(const float* w, float* out, int64_t b, int64_t e, float step, float qn,
                                    float qp) {
  int32_t bad = 0;
  for (int64_t i = b; i < e; ++i) {
    const float level = std::min(std::max(std::nearbyint(w[i] / step), -qn), qp);
    out[i] = level * step + 0.0f;  // + 0: level -0 (small negative weights) gives +0, as a stored level does
    bad |= static_cast<int32_t>(!(std::fabs(w[i]) <= std::numeric_limits<float>::max()));
  }
  return bad == 0;
}

DIFFQ_CLONES double lsq_backward_range(const float* w, const float* grad, float* grad_out, int64_t b, int64_t e,
                                       float step, float qn, float qp) {
  double acc = 0;
  for (int64_t i = b; i < e; ++i) {
    const float v = w[i] / step;
    const bool below = v <= -qn, above = v >= qp;
    const float d = below ? -qn : above ? qp : std::nearbyint(v) - v;
    acc += static_cast<double>(grad[i] * d);
    grad_out[i] = grad[i] * ((below || above) ? 0.0f : 1.0f);
  }
  return acc;
}

}  // namespace

void uniform_fake_quant(const float* w, float* out, int64_t n, float mn, float mx, float denom) {
  const float range = mx - mn;
  for_chunks(n, [&](int64_t, int64_t b, int64_t e) { uniform_range(w, out, b, e, mn, range, denom); });
}

void noise_fake_quant(const float* w, const bool* selected, float* out, bool* pass, int64_t n, float mn, float mx,
                      float denom) {
  const float range = mx - mn;
  for_chunks(n, [&](int64_t, int64_t b, int64_t e) { noise_range(w, selected, out, pass, b, e, mn, mx, range, denom); });
}

void proxy_drop(const float* w, const bool* drop, float* out, int64_t n, int64_t block, float keep) {
  for_chunks(n, [&](int64_t, int64_t b, int64_t e) { drop_range(w, drop, out, b, e, block, keep); });
}

void masked_gradient(const float* grad, const bool* pass, float* out, int64_t n) {
  for_chunks(n, [&](int64_t, int64_t b, int64_t e) { masked_range(grad, pass, out, b, e); });
}

bool lsq_forward(const float* w, float* out, int64_t n, float step, float qn, float qp) {
  std::atomic<bool> finite{true};
  for_chunks(n, [&](int64_t, int64_t b, int64_t e) {
    if (!lsq_forward_range(w, out, b, e, step, qn, qp)) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

double lsq_backward(const float* w, const float* grad, float* grad_out, int64_t n, float step, float qn,
                    float qp) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  for_chunks(n, [&](int64_t c, int64_t b, int64_t e) {
    partial[static_cast<size_t>(c)] = lsq_backward_range(w, grad, grad_out, b, e, step, qn, qp);
  });
  double sum = 0;
  for (double p : partial) sum += p;
  return sum;
}

}  // namespace kernels
}  // namespace diffq
