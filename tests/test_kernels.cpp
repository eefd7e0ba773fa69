// The fused straight-through kernels against the tensor expressions they
// replace: bit for bit (ties at x.5 included), and the same whatever the
// number of threads; the noise kernels' results do not depend on it either.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include <torch/torch.h>

#include "../src/kernels/fake_quant.h"
#include "../src/kernels/parallel_probe.h"
#include "../src/noise/noise_kernels.h"

namespace {

// Weights with exact ties: multiples of step/2 mixed with Gaussians.
torch::Tensor weights(int64_t n, float step) {
  torch::manual_seed(3);
  auto w = torch::randn({n});
  auto ties = torch::randint(-20, 20, {n}).to(torch::kFloat32).mul(step / 2);
  return torch::where(torch::rand({n}) < 0.3, ties, w);
}

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && std::memcmp(a.data_ptr(), b.data_ptr(), size_t(a.nbytes())) == 0;
}

class ThreadCount {
 public:
  explicit ThreadCount(int n) : before_(torch::get_num_threads()) { torch::set_num_threads(n); }
  ~ThreadCount() { torch::set_num_threads(before_); }

 private:
  int before_;
};

// The kernels' at::parallel_for runs on the intra-op threads (it silently
// runs on one thread in a translation unit built without OpenMP).
TEST(Kernels, ParallelRegionsUseTheIntraOpThreads) {
  for (int threads : {1, 2, 3}) {
    ThreadCount guard(threads);
    EXPECT_EQ(diffq::kernels::parallel_region_threads(), threads) << threads << " threads";
  }
}

TEST(Kernels, UniformFakeQuantEqualsTheTensorExpression) {
  const int64_t n = 100003;
  auto w = weights(n, 0.25f);
  const float mn = w.min().item<float>(), mx = w.max().item<float>();
  for (int bits : {1, 2, 4, 8, 16}) {
    auto denom = torch::full({1, 1}, std::pow(2.0, bits) - 1, w.options());
    auto expected = torch::round((w.view({1, -1}) - mn) / (mx - mn) * denom).div(denom).mul(mx - mn).add(mn).view(-1);
    auto out = torch::empty_like(w);
    diffq::kernels::uniform_fake_quant(w.data_ptr<float>(), out.data_ptr<float>(), n, mn, mx,
                                       float(std::pow(2.0, bits) - 1));
    EXPECT_TRUE(same_bits(out, expected)) << bits << " bits";
  }
}

// Quant-Noise's scalar noise: the expressions of the tensor path (the
// levels clamped, a range narrower than the weights, so that some selected
// weights fall outside it), and the gradient through the pass mask.
TEST(Kernels, QuantNoiseFakeQuantEqualsTheTensorExpressions) {
  const int64_t n = 100003;
  auto w = weights(n, 0.25f);
  auto grad = torch::randn({n});
  const float mn = 0.5f * w.min().item<float>(), mx = 0.5f * w.max().item<float>();
  auto selected = torch::rand({n}) < 0.4;
  for (int bits : {4, 8}) {
    const double levels_max = std::pow(2.0, bits) - 1;
    auto denom = torch::full({1, 1}, levels_max, w.options());
    auto levels = torch::round((w.view({1, -1}) - mn) / (mx - mn) * denom).clamp(0, levels_max);
    auto values = levels.div(denom).mul(mx - mn).add(mn).view(-1);
    auto inside = (w >= mn) & (w <= mx);
    auto expected = torch::where(selected, values, w);
    auto expected_pass = torch::logical_not(selected & torch::logical_not(inside));
    auto out = torch::empty_like(w);
    auto pass = torch::empty({n}, torch::kBool);
    diffq::kernels::noise_fake_quant(w.data_ptr<float>(), selected.data_ptr<bool>(), out.data_ptr<float>(),
                                     pass.data_ptr<bool>(), n, mn, mx, float(levels_max));
    EXPECT_TRUE(same_bits(out, expected)) << bits << " bits";
    EXPECT_TRUE(torch::equal(pass, expected_pass)) << bits << " bits";
    EXPECT_GT(torch::logical_not(pass).sum().item<int64_t>(), 100);  // some selected weights are outside
    auto expected_grad = grad * pass.to(torch::kFloat32);
    auto grad_out = torch::empty_like(grad);
    diffq::kernels::masked_gradient(grad.data_ptr<float>(), pass.data_ptr<bool>(), grad_out.data_ptr<float>(), n);
    EXPECT_TRUE(same_bits(grad_out, expected_grad)) << bits << " bits";
  }
}

TEST(Kernels, QuantNoiseProxyDropEqualsTheTensorExpression) {
  const int64_t block = 8, blocks = 12501, n = block * blocks;
  auto w = weights(n, 0.25f);
  auto drop = torch::rand({blocks}) < 0.3;
  for (double p : {0.1, 0.3, 0.55}) {
    auto expected = torch::where(drop.unsqueeze(1), torch::zeros({}), w.view({blocks, block}) / (1.0 - p)).view(-1);
    auto out = torch::empty_like(w);
    diffq::kernels::proxy_drop(w.data_ptr<float>(), drop.data_ptr<bool>(), out.data_ptr<float>(), n, block,
                               static_cast<float>(1.0 - p));
    EXPECT_TRUE(same_bits(out, expected)) << p;
  }
}

TEST(Kernels, LsqForwardAndBackwardEqualTheTensorExpressions) {
  const int64_t n = 70001;
  const float step = 0.125f;
  auto w = weights(n, step);
  auto grad = torch::randn({n});
  for (int bits : {2, 3, 4, 8}) {
    const float qn = float(std::pow(2.0, bits - 1)), qp = qn - 1;
    auto v = w / step;
    auto expected = torch::clamp(torch::round(v), -qn, qp).mul(step).add(0.0);  // + 0: no -0
    auto out = torch::empty_like(w);
    EXPECT_TRUE(diffq::kernels::lsq_forward(w.data_ptr<float>(), out.data_ptr<float>(), n, step, qn, qp));
    EXPECT_TRUE(same_bits(out, expected)) << bits << " bits";

    auto below = v <= -qn, above = v >= qp;
    auto inside = torch::logical_not(torch::logical_or(below, above));
    auto dstep = torch::where(inside, torch::round(v) - v,
                              torch::where(below, torch::full({}, -qn), torch::full({}, qp)));
    auto expected_grad = grad * inside.to(torch::kFloat32);
    const double expected_sum = (grad * dstep).to(torch::kFloat64).sum().item<double>();
    auto grad_out = torch::empty_like(grad);
    const double sum = diffq::kernels::lsq_backward(w.data_ptr<float>(), grad.data_ptr<float>(),
                                                    grad_out.data_ptr<float>(), n, step, qn, qp);
    EXPECT_TRUE(same_bits(grad_out, expected_grad)) << bits << " bits";
    EXPECT_NEAR(sum, expected_sum, 1e-9 * (1 + std::abs(expected_sum))) << bits << " bits";
  }
}

// The LSQ forward reports non-finite weights (its step's only check of
// them): NaN and both infinities, in the first, a middle and the last chunk.
TEST(Kernels, LsqForwardReportsNonFiniteWeights) {
  const int64_t n = 70001;
  auto w = weights(n, 0.125f);
  auto out = torch::empty_like(w);
  EXPECT_TRUE(diffq::kernels::lsq_forward(w.data_ptr<float>(), out.data_ptr<float>(), n, 0.125f, 8, 7));
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    for (int64_t at : {int64_t(0), n / 2, n - 1}) {
      auto v = w.clone();
      v[at] = bad;
      EXPECT_FALSE(diffq::kernels::lsq_forward(v.data_ptr<float>(), out.data_ptr<float>(), n, 0.125f, 8, 7))
          << bad << " at " << at;
    }
  }
  auto big = torch::full({n}, std::numeric_limits<float>::max());
  EXPECT_TRUE(diffq::kernels::lsq_forward(big.data_ptr<float>(), out.data_ptr<float>(), n, 0.125f, 8, 7));
}

TEST(Kernels, ResultsDoNotDependOnTheThreadCount) {
  const int64_t n = 1 << 18;
  auto w = weights(n, 0.5f);
  auto grad = torch::randn({n});
  auto scale = torch::rand({n / 16}).add(0.01);
  std::vector<torch::Tensor> noisy, backward_out;
  std::vector<double> sums, group0;
  // Σ bits, max bits, min and max weight, Σ group sums, two logit gradients
  std::vector<std::vector<double>> group_results;
  const auto logits = torch::linspace(-8, 8, 100003);
  std::vector<std::vector<int64_t>> ties_at_low;
  std::vector<std::vector<bool>> masks;
  std::vector<torch::Tensor> factors;
  std::vector<double> group_sums(100003);
  for (size_t k = 0; k < group_sums.size(); ++k) group_sums[k] = std::sin(0.7 * static_cast<double>(k)) * 1e3;
  for (int threads : {1, 2, 3}) {
    ThreadCount guard(threads);
    auto out = torch::empty_like(w);
    diffq::noise::add_noise<float>(w.data_ptr<float>(), out.data_ptr<float>(), n, 16, scale.data_ptr<float>(), 42,
                                   diffq::noise::Kind::kGaussian);
    noisy.push_back(out);
    std::vector<double> per_group(size_t(n / 16)), one_group(1);
    std::vector<int64_t> at_low, at_high;
    auto copied = torch::empty_like(grad);
    diffq::noise::noise_backward<float>(grad.data_ptr<float>(), out.data_ptr<float>(), w.data_ptr<float>(), n, 16,
                                        -1.0f, 1.0f, per_group.data(), copied.data_ptr<float>(), at_low, at_high);
    group0.push_back(per_group[777]);
    diffq::noise::noise_backward<float>(grad.data_ptr<float>(), out.data_ptr<float>(), w.data_ptr<float>(), n, 0,
                                        -1.0f, 1.0f, one_group.data(), copied.data_ptr<float>(), at_low, at_high);
    group0.push_back(one_group[0]);
    ties_at_low.push_back(at_low);
    auto g = torch::empty_like(grad);
    sums.push_back(diffq::kernels::lsq_backward(w.data_ptr<float>(), grad.data_ptr<float>(), g.data_ptr<float>(),
                                                n, 0.5f, 8, 7));
    backward_out.push_back(g);
    double bits_total = 0;
    float bits_max = 0, low = 0, high = 0;
    diffq::noise::bits_sum(logits.data_ptr<float>(), logits.numel(), 2.0f, 13.0f, &bits_total, &bits_max);
    // The factors' pass: its scales, and the bits sum's bits along the way.
    double factors_total = 0;
    float factors_max = 0;
    auto factor_scale = torch::empty_like(logits), factor_slope = torch::empty_like(logits);
    diffq::noise::group_factors(logits.data_ptr<float>(), logits.numel(), 9.0f, 1.4f, 0.1f,
                                factor_scale.data_ptr<float>(), factor_slope.data_ptr<float>(), 2.0f, 13.0f,
                                &factors_total, &factors_max);
    EXPECT_EQ(factors_total, bits_total) << threads << " threads";
    EXPECT_EQ(factors_max, bits_max) << threads << " threads";
    factors.push_back(torch::cat({factor_scale, factor_slope}));
    diffq::noise::range(w.data_ptr<float>(), n, &low, &high);
    // The logits' gradient from group sums (added to what it holds), over
    // several stretches of groups.
    std::vector<float> logit_grad(group_sums.size(), 0.25f), slope(group_sums.size());
    for (size_t k = 0; k < slope.size(); ++k) slope[k] = 1.0f + 1e-3f * static_cast<float>(k % 97);
    const double group_total = diffq::noise::logit_gradient(
        group_sums.data(), slope.data(), static_cast<int64_t>(group_sums.size()), logit_grad.data(), true);
    EXPECT_EQ(logit_grad[77777], 0.25f + static_cast<float>(group_sums[77777]) * slope[77777]);
    // Quant-Noise's masks (n = 2^18: several chunks).
    std::unique_ptr<bool[]> mask(new bool[n]);
    diffq::noise::bernoulli(11, n, 0.3, mask.get());
    masks.emplace_back(mask.get(), mask.get() + n);
    group_results.push_back({bits_total, bits_max, low, high, group_total, logit_grad[12345], logit_grad.back()});
  }
  EXPECT_NEAR(group_results[0][0], 100003 * 8.5, 1.0);  // symmetric logits: mean bits 2 + 13/2
  EXPECT_NEAR(group_results[0][1], 2 + 13 / (1 + std::exp(-8.0)), 1e-5);
  EXPECT_EQ(group_results[0][2], w.min().item<float>());
  EXPECT_EQ(group_results[0][3], w.max().item<float>());
  EXPECT_NEAR(group_results[0][4], std::accumulate(group_sums.begin(), group_sums.end(), 0.0), 1e-9);
  for (size_t i = 1; i < noisy.size(); ++i) {
    EXPECT_TRUE(same_bits(noisy[i], noisy[0]));
    EXPECT_TRUE(same_bits(backward_out[i], backward_out[0]));
    EXPECT_EQ(sums[i], sums[0]);
    EXPECT_EQ(group_results[i], group_results[0]);
    EXPECT_EQ(ties_at_low[i], ties_at_low[0]);
    EXPECT_EQ(masks[i], masks[0]);
    EXPECT_TRUE(same_bits(factors[i], factors[0]));
  }
  EXPECT_GT(ties_at_low[0].size(), 100u);  // -1 is one of the tie values
  for (size_t i = 2; i < group0.size(); ++i) {
    EXPECT_EQ(group0[i], group0[i % 2]);
  }
}

}  // namespace
