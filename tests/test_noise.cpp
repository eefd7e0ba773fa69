// The fused noise generator: distribution, determinism, both builds agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "../src/noise/noise_kernels.h"

using namespace diffq::noise;

namespace {
struct Moments {
  double mean = 0, var = 0, kurtosis = 0, within_half = 0, min = 1e9, max = -1e9;
};
Moments moments(const std::vector<float>& x) {
  Moments m;
  for (float v : x) m.mean += v;
  m.mean /= x.size();
  double m4 = 0;
  for (float v : x) {
    const double d = v - m.mean;
    m.var += d * d;
    m4 += d * d * d * d;
    m.within_half += std::abs(v) <= 0.5;
    m.min = std::min<double>(m.min, v);
    m.max = std::max<double>(m.max, v);
  }
  m.var /= x.size();
  m.kurtosis = m4 / x.size() / (m.var * m.var);
  m.within_half /= x.size();
  return m;
}
// The CPU features the library's AVX-512 build needs (as it checks them).
bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma");
}

}  // namespace

TEST(Noise, GaussianHasHalfUnitStandardDeviation) {
  const int64_t n = 1 << 21;
  std::vector<float> x(n);
  fill_noise(x.data(), n, 42, Kind::kGaussian);
  const auto m = moments(x);
  EXPECT_NEAR(m.mean, 0.0, 5 * 0.5 / std::sqrt(double(n)));
  EXPECT_NEAR(std::sqrt(m.var), 0.5, 0.002);
  EXPECT_NEAR(m.kurtosis, 3.0, 0.03);
  EXPECT_NEAR(m.within_half, 0.682689, 0.0015);  // P(|N| <= 1)
  EXPECT_LT(m.max, 0.5 * 5.8);
  EXPECT_GT(m.max, 0.5 * 4.0);
}

TEST(Noise, UniformSpansHalfOpenInterval) {
  const int64_t n = 1 << 20;
  std::vector<float> x(n);
  fill_noise(x.data(), n, 7, Kind::kUniform);
  const auto m = moments(x);
  EXPECT_NEAR(m.mean, 0.0, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(m.var, 1.0 / 12, 0.001);
  EXPECT_GE(m.min, -0.5);
  EXPECT_LT(m.max, 0.5);
  EXPECT_LT(m.min, -0.499);
  EXPECT_GT(m.max, 0.499);
}

TEST(Noise, NeighboursAndStreamsAreUncorrelated) {
  const int64_t n = 1 << 20;
  std::vector<float> a(n), b(n);
  fill_noise(a.data(), n, 1, Kind::kGaussian);
  fill_noise(b.data(), n, 2, Kind::kGaussian);
  double lag1 = 0, lag8 = 0, cross = 0;
  for (int64_t i = 0; i + 8 < n; ++i) {
    lag1 += a[i] * a[i + 1];
    lag8 += a[i] * a[i + 8];  // cos and sin of the same pair
    cross += a[i] * b[i];
  }
  const double bound = 5 * 0.25 / std::sqrt(double(n));
  EXPECT_LT(std::abs(lag1 / n), bound);
  EXPECT_LT(std::abs(lag8 / n), bound);
  EXPECT_LT(std::abs(cross / n), bound);
}

TEST(Noise, DeterministicAndBuildsAgree) {
  const int64_t blocks = 1000;
  std::vector<float> g(blocks * 16), v(blocks * 16), again(blocks * 16);
  diffq::noise::detail::noise_blocks_generic(99, 5, blocks, g.data(), Kind::kGaussian);
  diffq::noise::detail::noise_blocks_generic(99, 5, blocks, again.data(), Kind::kGaussian);
  EXPECT_EQ(g, again);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    diffq::noise::detail::noise_blocks_avx2(99, 5, blocks, v.data(), Kind::kGaussian);
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], v[i], 1e-5) << i;
  }
}

TEST(Noise, BackwardRecoversTheAddedNoisePerGroup) {
  const int64_t n = 1000;  // not a multiple of 16
  for (int64_t group_size : {0, 1, 5, 8, 16, 40, 5000}) {
    const int64_t groups = group_size == 0 ? 1 : (n + group_size - 1) / group_size;  // the last group is partial
    std::vector<double> w(n), scale(groups), out(n), sums(groups, -1.0), grad(n), grad_out(n);
    for (int64_t i = 0; i < n; ++i) w[i] = std::cos(0.37 * i);
    w[17] = w[400] = -2.0;  // the minimum, twice
    w[3] = 3.0;             // the maximum
    for (int64_t g = 0; g < groups; ++g) scale[g] = 1.0 + g;
    add_noise<double>(w.data(), out.data(), n, group_size, scale.data(), 3, Kind::kGaussian);
    std::vector<float> eps(n);
    fill_noise(eps.data(), n, 3, Kind::kGaussian);
    for (int64_t i = 0; i < n; ++i) grad[i] = std::sin(0.1 * i);
    std::vector<int64_t> at_low, at_high;
    noise_backward<double>(grad.data(), out.data(), w.data(), n, group_size, -2.0, 3.0, sums.data(),
                           grad_out.data(), at_low, at_high);
    // Against the draw itself: Σ grad_i s_g ε_i.
    std::vector<double> expected(groups, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = group_size == 0 ? 0 : i / group_size;
      expected[g] += grad[i] * scale[g] * static_cast<double>(eps[i]);
    }
    for (int64_t g = 0; g < groups; ++g) {
      EXPECT_NEAR(sums[g], expected[g], 1e-9 * (1 + std::abs(expected[g])))
          << "group size " << group_size << " group " << g;
    }
    EXPECT_EQ(grad_out, grad);
    EXPECT_EQ(at_low, (std::vector<int64_t>{17, 400}));
    EXPECT_EQ(at_high, (std::vector<int64_t>{3}));
  }
}

// The float backward's chunk kernel: its definition (Σ over each group of
// the float products grad·(noisy − w), four double lanes, lanes added
// pairwise), the copy of the gradient written over the noisy weights, the
// count of extremes; the AVX2 and AVX-512 builds give the portable one's bits.
TEST(Noise, FloatBackwardChunkFollowsItsDefinitionInBothBuilds) {
  const int64_t count = 1003;  // not a multiple of 4: a partial last group
  std::vector<float> grad(count), noisy(count), w(count);
  for (int64_t i = 0; i < count; ++i) {
    w[i] = static_cast<float>(std::cos(0.37 * i));
    noisy[i] = w[i] + 0.01f * static_cast<float>(std::sin(1.3 * i + 0.2));
    grad[i] = static_cast<float>(std::sin(0.1 * i) * (1 + i % 7));
  }
  w[10] = w[500] = -2.0f;  // the minimum, twice
  w[3] = 3.0f;             // the maximum
  using Fn = int64_t (*)(const float*, const float*, const float*, float*, int64_t, int64_t, float, float, double*);
  std::vector<Fn> builds{&diffq::noise::detail::backward_chunk_generic};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) builds.push_back(&diffq::noise::detail::backward_chunk_avx2);
  if (has_avx512()) builds.push_back(&diffq::noise::detail::backward_chunk_avx512);
  for (int64_t group : std::vector<int64_t>{1, 3, 4, 8, 16, 32, 40, count}) {
    const int64_t groups = (count + group - 1) / group;
    std::vector<double> expected(groups);
    for (int64_t k = 0; k < groups; ++k) {
      double lane[4] = {0, 0, 0, 0};
      for (int64_t t = 0; t < group && k * group + t < count; ++t) {
        const int64_t i = k * group + t;
        lane[t % 4] += static_cast<double>(grad[i] * (noisy[i] - w[i]));
      }
      expected[k] = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    }
    for (Fn fn : builds) {
      std::vector<double> sums(groups, -1.0);
      std::vector<float> out(noisy);  // written over the noisy weights, as in training
      const int64_t extremes = fn(grad.data(), out.data(), w.data(), out.data(), count, group, -2.0f, 3.0f, sums.data());
      EXPECT_EQ(extremes, 3) << "group " << group;
      EXPECT_EQ(out, grad) << "group " << group;
      for (int64_t k = 0; k < groups; ++k) EXPECT_EQ(sums[k], expected[k]) << "group " << group << " sum " << k;
    }
  }
}

// The range kernel: the extremes wherever they sit (vector body, tail,
// several stretches), and NaN reported from either part.
TEST(Noise, RangeFindsTheExtremesAndReportsNaN) {
  const int64_t n = (1 << 17) + 13;  // two stretches and a tail
  std::vector<float> w(n);
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(std::sin(0.001 * i));
  for (int64_t at : {int64_t(0), int64_t(40), int64_t(70000), n - 1}) {
    auto v = w;
    v[at] = -7.0f;
    v[(at + 1000) % n] = 9.0f;
    float low = 0, high = 0;
    range(v.data(), n, &low, &high);
    EXPECT_EQ(low, -7.0f) << at;
    EXPECT_EQ(high, 9.0f) << at;
    v[at] = std::nanf("");
    range(v.data(), n, &low, &high);
    EXPECT_TRUE(std::isnan(low) && std::isnan(high)) << at;
  }
  float low = 0, high = 0;
  auto v = w;
  v[5000] = -INFINITY;
  range(v.data(), n, &low, &high);
  EXPECT_EQ(low, -INFINITY);
}

// The next tensor's range taken along a noise pass: the noisy weights are
// add_noise()'s, bit for bit, and the range is range()'s, for next tensors
// shorter and longer than the pass, with the extremes anywhere, with NaN,
// for group sizes that make chunks independent and ones that do not.
TEST(Noise, RangeAlongTheNoisePassEqualsTheRange) {
  for (int64_t n : {int64_t(17), int64_t(4096 * 5 + 33)}) {
    std::vector<float> w(n), scale(n), alone(n), along(n);
    for (int64_t i = 0; i < n; ++i) {
      w[i] = static_cast<float>(std::cos(0.01 * i));
      scale[i] = 1e-3f * static_cast<float>(1 + i % 7);
    }
    for (int64_t next_n : {int64_t(1), int64_t(3), int64_t(4096 * 9 + 5)}) {
      std::vector<float> next(next_n);
      for (int64_t i = 0; i < next_n; ++i) next[i] = static_cast<float>(std::sin(0.003 * i));
      for (int64_t at : {int64_t(0), next_n / 2, next_n - 1}) {
        auto v = next;
        v[at] = -5.0f;
        v[(at + 7) % next_n] = next_n > 1 ? 6.0f : -5.0f;
        for (int64_t group : {int64_t(0), int64_t(16), int64_t(5)}) {
          add_noise<float>(w.data(), alone.data(), n, group, scale.data(), 99, Kind::kGaussian);
          float low = 0, high = 0, expected_low = 0, expected_high = 0;
          add_noise_and_range<float>(w.data(), along.data(), n, group, scale.data(), 99, Kind::kGaussian, v.data(),
                                     next_n, &low, &high);
          range(v.data(), next_n, &expected_low, &expected_high);
          EXPECT_EQ(0, std::memcmp(alone.data(), along.data(), sizeof(float) * n)) << n << " " << group;
          EXPECT_EQ(low, expected_low) << n << " " << next_n << " " << at << " " << group;
          EXPECT_EQ(high, expected_high) << n << " " << next_n << " " << at << " " << group;
          EXPECT_EQ(low, -5.0f);
          auto with_nan = v;
          with_nan[at] = std::nanf("");
          add_noise_and_range<float>(w.data(), along.data(), n, group, scale.data(), 99, Kind::kGaussian,
                                     with_nan.data(), next_n, &low, &high);
          EXPECT_TRUE(std::isnan(low) && std::isnan(high)) << n << " " << next_n << " " << at << " " << group;
        }
      }
    }
  }
}

// The AVX-512 build is the AVX2 build's source on wider vectors: every
// kernel must give the same bits (training results do not depend on which
// of the two a CPU runs), the generator for odd block counts too.
TEST(Noise, Avx512BuildGivesTheAvx2BuildsBits) {
  namespace d = diffq::noise::detail;
  if (!has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512";
  for (Kind kind : {Kind::kGaussian, Kind::kUniform}) {
    for (int64_t blocks : {int64_t(1), int64_t(7), int64_t(1000)}) {
      std::vector<float> a(blocks * 16, -1.0f), b(blocks * 16, -2.0f);
      d::noise_blocks_avx2(0x1234567890abcdefull, 3, blocks, a.data(), kind);
      d::noise_blocks_avx512(0x1234567890abcdefull, 3, blocks, b.data(), kind);
      EXPECT_EQ(a, b) << "blocks " << blocks;
    }
  }
  const int64_t n = 1003;  // a partial vector at the end
  std::vector<float> logits(n), w(n), grad(n), noisy(n);
  for (int64_t i = 0; i < n; ++i) {
    logits[i] = static_cast<float>(-9.0 + 18.0 * i / (n - 1));
    w[i] = static_cast<float>(std::cos(0.37 * i));
    noisy[i] = w[i] + 0.01f * static_cast<float>(std::sin(1.3 * i));
    grad[i] = static_cast<float>(std::sin(0.1 * i));
  }
  std::vector<float> scale_a(n), scale_b(n), slope_a(n), slope_b(n), grad_a(n), grad_b(n);
  double factors_sum_a = 0, factors_sum_b = 0;
  float factors_max_a = 0, factors_max_b = 0;
  d::group_factors_avx2(logits.data(), n, 13 * 0.6931f, 2 * 0.6931f, 1.7f, scale_a.data(), slope_a.data(), 2.0f, 13.0f,
                        &factors_sum_a, &factors_max_a);
  d::group_factors_avx512(logits.data(), n, 13 * 0.6931f, 2 * 0.6931f, 1.7f, scale_b.data(), slope_b.data(), 2.0f,
                          13.0f, &factors_sum_b, &factors_max_b);
  EXPECT_EQ(scale_a, scale_b);
  EXPECT_EQ(slope_a, slope_b);
  double sum_a = 0, sum_b = 0;
  float max_a = 0, max_b = 0;
  d::bits_sum_avx2(logits.data(), n, 2.0f, 13.0f, &sum_a, &max_a);
  d::bits_sum_avx512(logits.data(), n, 2.0f, 13.0f, &sum_b, &max_b);
  EXPECT_EQ(sum_a, sum_b);
  EXPECT_EQ(max_a, max_b);
  // The factors' pass gives the bits sum's bits.
  EXPECT_EQ(factors_sum_a, sum_a);
  EXPECT_EQ(factors_max_a, max_a);
  EXPECT_EQ(factors_sum_b, sum_b);
  EXPECT_EQ(factors_max_b, max_b);
  d::bits_sum_grad_avx2(logits.data(), n, 0.3f, grad_a.data());
  d::bits_sum_grad_avx512(logits.data(), n, 0.3f, grad_b.data());
  EXPECT_EQ(grad_a, grad_b);
  float low_a, high_a, low_b, high_b;
  d::range_avx2(w.data(), n, &low_a, &high_a);
  d::range_avx512(w.data(), n, &low_b, &high_b);
  EXPECT_EQ(low_a, low_b);
  EXPECT_EQ(high_a, high_b);
  for (int64_t group : {int64_t(1), int64_t(4), int64_t(16), int64_t(48), n}) {
    const int64_t groups = (n + group - 1) / group;
    std::vector<double> sums_a(groups), sums_b(groups);
    std::vector<float> out_a(n), out_b(n);
    EXPECT_EQ(d::backward_chunk_avx2(grad.data(), noisy.data(), w.data(), out_a.data(), n, group, low_a, high_a,
                                     sums_a.data()),
              d::backward_chunk_avx512(grad.data(), noisy.data(), w.data(), out_b.data(), n, group, low_a, high_a,
                                       sums_b.data()));
    EXPECT_EQ(sums_a, sums_b) << "group " << group;
    EXPECT_EQ(out_a, out_b) << "group " << group;
  }
}

// Quant-Noise's masks: Bernoulli(p) from the uniform stream, at rate p
// (within 5 standard deviations), none at p = 0, all at p = 1, a pure
// function of the key, and independent of their neighbours.
TEST(Noise, BernoulliDrawsAtRateP) {
  const int64_t n = 1 << 20;
  std::unique_ptr<bool[]> a(new bool[n]), b(new bool[n]);
  for (double p : {0.05, 0.5, 0.9}) {
    bernoulli(7, n, p, a.get());
    int64_t ones = 0, pairs = 0;
    for (int64_t i = 0; i < n; ++i) {
      ones += a[i];
      pairs += a[i] && i + 1 < n && a[i + 1];
    }
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(ones), n * p, 5 * sd) << p;
    EXPECT_NEAR(static_cast<double>(pairs), n * p * p, 5 * std::sqrt(n * p * p * (1 + 3 * p)) + 5) << p;
    bernoulli(7, n, p, b.get());
    EXPECT_EQ(std::memcmp(a.get(), b.get(), n), 0) << p;
    bernoulli(8, n, p, b.get());
    EXPECT_NE(std::memcmp(a.get(), b.get(), n), 0) << p;
  }
  bernoulli(7, n, 0.0, a.get());
  EXPECT_EQ(std::count(a.get(), a.get() + n, true), 0);
  bernoulli(7, n, 1.0, a.get());
  EXPECT_EQ(std::count(a.get(), a.get() + n, true), n);
}
