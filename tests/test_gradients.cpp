// Gradients against central finite differences (noise draw held fixed by the
// seed), and the straight-through and LSQ gradients against their formulas.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

#include "diffq/diffq.h"

using namespace diffq;

namespace {

// A double-precision layer, so that finite differences are accurate.
torch::nn::Linear make_layer() {
  torch::manual_seed(7);
  torch::nn::Linear layer(8, 6);
  layer->to(torch::kFloat64);
  return layer;
}

DiffQOptions fd_options(Parametrization param, NoiseKind noise, int64_t group_size) {
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  return DiffQOptions().group_size(group_size).param(param).noise(noise).seed(1234).discovery(d);
}

// Loss of one training forward with a fresh quantizer (same seed, so the same
// noise draw), after `perturb` edits the weight or the logits.
double loss_of(const torch::Tensor& x, const torch::Tensor& r, const DiffQOptions& options,
               const std::function<void(torch::nn::Linear&, DiffQuantizer&)>& perturb,
               torch::Tensor* weight_grad = nullptr, torch::Tensor* logit_grad = nullptr) {
  auto layer = make_layer();
  DiffQuantizer q(layer, options);
  {
    torch::NoGradGuard no_grad;
    perturb(layer, q);
  }
  auto step = q.training_step();
  auto out = layer->forward(x);
  auto loss = (torch::tanh(out) * r).sum();
  if (weight_grad != nullptr) {
    loss.backward();
    step.finish();
    *weight_grad = layer->weight.grad().clone();
    *logit_grad = q.parameters()[0].grad().clone();
  }
  return loss.item<double>();
}

void check_diffq_gradients(Parametrization param, NoiseKind noise, int64_t group_size) {
  torch::manual_seed(3);
  auto x = torch::randn({5, 8}, torch::kFloat64);
  auto r = torch::randn({5, 6}, torch::kFloat64);
  const auto options = fd_options(param, noise, group_size);
  torch::Tensor wg, lg;
  loss_of(x, r, options, [](auto&, auto&) {}, &wg, &lg);
  const double h = 1e-6;
  // Every weight, including the arg-max and arg-min (range path).
  for (int64_t i = 0; i < 48; ++i) {
    auto edit = [&](double delta) {
      return [=](torch::nn::Linear& layer, DiffQuantizer&) {
        layer->weight.view(-1)[i] += delta;
      };
    };
    const double fd = (loss_of(x, r, options, edit(h)) - loss_of(x, r, options, edit(-h))) / (2 * h);
    EXPECT_NEAR(wg.view(-1)[i].item<double>(), fd, 1e-6 + 1e-5 * std::abs(fd)) << "weight " << i;
  }
  for (int64_t g = 0; g < lg.numel(); ++g) {
    auto edit = [&](double delta) {
      return [=](torch::nn::Linear&, DiffQuantizer& q) { q.parameters()[0][g] += delta; };
    };
    const double fd = (loss_of(x, r, options, edit(h)) - loss_of(x, r, options, edit(-h))) / (2 * h);
    EXPECT_NEAR(lg[g].item<double>(), fd, 1e-6 + 1e-5 * std::abs(fd)) << "logit " << g;
  }
}

}  // namespace

TEST(Gradients, DiffQGaussianBitsGroups) {
  check_diffq_gradients(Parametrization::kBits, NoiseKind::kGaussian, 4);
}
TEST(Gradients, DiffQUniformNoiseParamWholeTensor) {
  check_diffq_gradients(Parametrization::kNoise, NoiseKind::kUniform, 0);
}
TEST(Gradients, DiffQGroupSizeOne) {
  check_diffq_gradients(Parametrization::kBits, NoiseKind::kUniform, 1);
}

TEST(Gradients, RangePathReachesArgMaxAndArgMin) {
  // With the loss depending on the noise only through the range, the extreme
  // elements get a gradient different from the others'.
  torch::manual_seed(3);
  auto x = torch::randn({5, 8}, torch::kFloat64);
  auto r = torch::randn({5, 6}, torch::kFloat64);
  auto options = fd_options(Parametrization::kBits, NoiseKind::kGaussian, 4);
  torch::Tensor wg, lg;
  loss_of(x, r, options, [](auto&, auto&) {}, &wg, &lg);
  // Reference gradient without the range path: run the same forward with a
  // float model whose weight is the noisy one.
  auto layer = make_layer();
  auto w = layer->weight.detach().view(-1);
  const int64_t imax = w.argmax().item<int64_t>();
  const int64_t imin = w.argmin().item<int64_t>();
  // Numerical check of these two entries is in the test above; here check
  // that they differ from what identity alone would give by the same
  // amount with opposite signs.
  const auto dy = wg.view(-1);
  // Identity part: the loss derivative w.r.t. the noisy weight.
  DiffQuantizer q(layer, options);
  auto step = q.training_step();
  auto noisy = layer->weight.detach().clone();
  auto out = torch::nn::functional::linear(x, noisy.requires_grad_(true), layer->bias.detach());
  auto loss = (torch::tanh(out) * r).sum();
  auto identity = torch::autograd::grad({loss}, {noisy})[0].view(-1);
  step.finish();
  const double extra_max = (dy[imax] - identity[imax]).item<double>();
  const double extra_min = (dy[imin] - identity[imin]).item<double>();
  EXPECT_GT(std::abs(extra_max), 1e-9);
  EXPECT_NEAR(extra_max, -extra_min, 1e-12);
  auto others = torch::ones({48}, torch::kBool);
  others[imax] = false;
  others[imin] = false;
  EXPECT_TRUE(torch::allclose(dy.masked_select(others), identity.masked_select(others), 0, 1e-12));
}

TEST(Gradients, ModelSizeAgainstFiniteDifferences) {
  auto layer = make_layer();
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  DiffQuantizer q(layer, DiffQOptions().group_size(4).discovery(d));
  auto logits = q.parameters()[0];
  {
    torch::NoGradGuard no_grad;
    logits.copy_(torch::linspace(-2, 2, logits.numel(), torch::kFloat64));
  }
  q.model_size().backward();
  auto analytic = logits.grad().clone();
  const double h = 1e-6;
  for (int64_t g = 0; g < logits.numel(); ++g) {
    torch::NoGradGuard no_grad;
    logits[g] += h;
    const double plus = q.model_size().item<double>();
    logits[g] -= 2 * h;
    const double minus = q.model_size().item<double>();
    logits[g] += h;
    EXPECT_NEAR(analytic[g].item<double>(), (plus - minus) / (2 * h), 1e-9) << "logit " << g;
  }
}

TEST(Gradients, StraightThroughForUniformQat) {
  auto layer = make_layer();
  DiscoveryOptions d;
  d.min_size(0);
  UniformQuantizer q(layer, UniformOptions().bits(3).qat(true).discovery(d));
  torch::manual_seed(5);
  auto x = torch::randn({4, 8}, torch::kFloat64);
  torch::Tensor wq, bq;
  {
    auto scope = q.quantized_evaluation();
    wq = layer->weight.detach().clone();
    bq = layer->bias.detach().clone();
  }
  auto step = q.training_step();
  auto loss = layer->forward(x).pow(2).sum();
  loss.backward();
  step.finish();
  // d/dW sum((x Wq^T + bq)^2) = 2 (x Wq^T + bq)^T x, evaluated at the QUANTIZED weights.
  auto y = torch::matmul(x, wq.t()) + bq;
  EXPECT_TRUE(torch::allclose(layer->weight.grad(), 2 * torch::matmul(y.t(), x), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(layer->bias.grad(), 2 * y.sum(0), 1e-12, 1e-12));
  EXPECT_FALSE(torch::equal(wq, layer->weight.detach()));
}

TEST(Gradients, LsqWeightAndStepFormulas) {
  auto layer = make_layer();
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  const int bits = 3;
  LSQQuantizer q(layer, LSQOptions().bits(bits).discovery(d));
  auto step_param = q.parameters()[0];
  {
    torch::NoGradGuard no_grad;
    step_param.fill_(0.08);  // small step: some weights fall outside the range
  }
  torch::manual_seed(5);
  auto x = torch::randn({4, 8}, torch::kFloat64);
  auto w = layer->weight.detach().clone();
  auto step = q.training_step();
  auto out = layer->forward(x);
  auto loss = out.pow(2).sum();
  loss.backward();
  step.finish();
  // Reference: dL/dWq at the quantized weights, then the LSQ formulas
  // elementwise in double.
  const double s = 0.08f;  // the step is stored in float32
  const double qn = 4, qp = 3;
  const float sf = 0.08f;
  auto wq = torch::clamp(torch::round(w.to(torch::kFloat32) / sf), -qn, qp).mul(sf).to(torch::kFloat64);
  auto y = torch::matmul(x, wq.t()) + layer->bias.detach();
  auto gq = 2 * torch::matmul(y.t(), x);
  double expected_step = 0;
  int outside = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    const double v = w.view(-1)[i].item<double>() / s;
    const double g = gq.view(-1)[i].item<double>();
    double dw, ds;
    if (v <= -qn) {
      dw = 0, ds = -qn, ++outside;
    } else if (v >= qp) {
      dw = 0, ds = qp, ++outside;
    } else {
      dw = 1, ds = std::nearbyint(v) - v;
    }
    EXPECT_NEAR(layer->weight.grad().view(-1)[i].item<double>(), g * dw, 1e-9) << i;
    expected_step += g * ds;
  }
  expected_step /= std::sqrt(48.0 * qp);
  EXPECT_GT(outside, 0);
  EXPECT_NEAR(step_param.grad().item<double>(), expected_step, 1e-5 * std::abs(expected_step) + 1e-6);
}

// The float path's fused group kernels (noise scales, d ln s / d l, the
// size and its gradient) against the double path's torch operations, on
// the same layer and logits: the same numbers to float precision.
TEST(Gradients, FloatGroupKernelsMatchTheDoublePath) {
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  const auto options = DiffQOptions().group_size(4).seed(99).discovery(d);
  torch::manual_seed(5);
  auto x = torch::randn({7, 8});
  auto r = torch::randn({7, 6});
  std::vector<torch::Tensor> sizes, size_grads, weight_grads, logit_grads, combined_grads;
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    auto layer = make_layer();
    layer->to(dtype);
    DiffQuantizer q(layer, options);
    auto logits = q.parameters()[0];
    {
      torch::NoGradGuard no_grad;
      logits.copy_(torch::linspace(-6, 6, logits.numel(), dtype));  // 2.03 .. 14.97 bits
    }
    auto size = q.model_size();
    size.backward();
    sizes.push_back(size.detach());
    size_grads.push_back(logits.grad().to(torch::kFloat64).clone());
    logits.mutable_grad() = torch::Tensor();
    auto step = q.training_step();
    auto loss = (torch::tanh(layer->forward(x.to(dtype))) * r.to(dtype)).sum();
    loss.backward();
    step.finish();
    weight_grads.push_back(layer->weight.grad().to(torch::kFloat64));
    logit_grads.push_back(logits.grad().to(torch::kFloat64));
    // The size's gradient first, then a step's: the noise path adds its
    // gradient to the one the logits already hold.
    logits.mutable_grad() = torch::Tensor();
    layer->weight.mutable_grad() = torch::Tensor();
    (0.3 * q.model_size()).backward();
    auto both = q.training_step();
    (torch::tanh(layer->forward(x.to(dtype))) * r.to(dtype)).sum().backward();
    both.finish();
    combined_grads.push_back(logits.grad().to(torch::kFloat64));
  }
  EXPECT_NEAR(sizes[0].item<double>(), sizes[1].item<double>(), 1e-6 * sizes[1].item<double>());
  EXPECT_TRUE(torch::allclose(size_grads[0], size_grads[1], 1e-5, 1e-12)) << size_grads[0] - size_grads[1];
  EXPECT_TRUE(torch::allclose(weight_grads[0], weight_grads[1], 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(logit_grads[0], logit_grads[1], 1e-3, 1e-7)) << logit_grads[0] - logit_grads[1];
  EXPECT_GT(size_grads[1].abs().max().item<double>(), 0);
  EXPECT_GT(logit_grads[1].abs().max().item<double>(), 0);
  // The second step (its own noise, the same on both paths): the size's
  // gradient plus that step's noise gradient, on both paths alike.
  EXPECT_TRUE(torch::allclose(combined_grads[0], combined_grads[1], 1e-3, 1e-7)) << combined_grads[0] - combined_grads[1];
  EXPECT_GT((combined_grads[1] - logit_grads[1]).abs().max().item<double>(), 0);
}
