// One-shot mixed precision, torch side: the activation quantizer's per-bit
// steps and gradients, the switchable BatchNorm, the quantizer's weight
// steps, turbulence, distortion (IDM), layer costs and the stored state.
#include <cmath>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/oneshot/bit_config.h"
#include "diffq/oneshot/modules.h"
#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/oneshot/resnet.h"
#include "diffq/oneshot/search_model.h"
#include "diffq/restore.h"

namespace {

using namespace diffq::oneshot;

// ---------------------------------------------------------------- activation quantizer

TEST(ActivationQuantizer, StepIsInitialisedFromTheFirstBatchOfItsBitWidth) {
  ActivationQuantizer q(ActivationQuantizerOptions().candidates({2, 4}));
  auto x = torch::tensor({0.5f, 1.0f, 1.5f, 3.0f});  // mean |x| = 1.5
  q->set_bits(2);
  q->forward(x);
  EXPECT_NEAR(q->steps[0].item<double>(), 2 * 1.5 / std::sqrt(3.0), 1e-6);  // Q_P = 2^2 - 1
  EXPECT_TRUE(q->initialized[0].item<bool>());
  EXPECT_FALSE(q->initialized[1].item<bool>());
  EXPECT_EQ(q->steps[1].item<float>(), 1.0f);  // untouched until 4 bits run
  q->set_bits(4);
  q->forward(x * 2);
  EXPECT_NEAR(q->steps[1].item<double>(), 2 * 3.0 / std::sqrt(15.0), 1e-6);
  EXPECT_NEAR(q->steps[0].item<double>(), 2 * 1.5 / std::sqrt(3.0), 1e-6);  // not re-initialised
}

TEST(ActivationQuantizer, ForwardRoundsToUnsignedOrSignedLevels) {
  ActivationQuantizer u(ActivationQuantizerOptions().candidates({2}));
  u->set_bits(2);
  u->forward(torch::ones({1}));
  {
    torch::NoGradGuard g;
    u->steps.fill_(0.5);
  }
  auto y = u->forward(torch::tensor({-1.0f, 0.2f, 0.3f, 0.74f, 5.0f}));
  // levels 0..3 of step 0.5: clamp below at 0 and above at 1.5
  auto expected = torch::tensor({0.0f, 0.0f, 0.5f, 0.5f, 1.5f});
  EXPECT_TRUE(torch::equal(y.detach(), expected)) << y;
  ActivationQuantizer s(ActivationQuantizerOptions().candidates({3}).is_signed(true));
  s->set_bits(3);
  s->forward(torch::ones({1}));
  {
    torch::NoGradGuard g;
    s->steps.fill_(1.0);
  }
  auto z = s->forward(torch::tensor({-9.0f, -2.4f, 2.6f, 9.0f}));
  EXPECT_TRUE(torch::equal(z.detach(), torch::tensor({-4.0f, -2.0f, 3.0f, 3.0f}))) << z;
  s->set_bits(0);  // float
  auto x = torch::tensor({-9.1f, 0.123f});
  EXPECT_TRUE(torch::equal(s->forward(x), x));
}

TEST(ActivationQuantizer, OnlyTheRunningStepGetsTheLsqGradient) {
  ActivationQuantizer q(ActivationQuantizerOptions().candidates({2, 3}));
  q->set_bits(3);
  auto x = torch::tensor({-0.3f, 0.26f, 0.9f, 2.2f, 9.0f}).requires_grad_(true);
  q->forward(x.detach());
  {
    torch::NoGradGuard g;
    q->steps.copy_(torch::tensor({0.7f, 0.4f}));
  }
  auto r = torch::tensor({1.0f, -2.0f, 0.5f, 3.0f, -1.0f});
  (q->forward(x) * r).sum().backward();
  // Step 0.4, levels 0..7: v = x / s = -0.75, 0.65, 2.25, 5.5, 22.5.
  // d/ds: below 0 -> -Q_N = 0; inside round(v) - v; above 7 -> Q_P = 7.
  const double dv[] = {0.0, 1 - 0.65, 2 - 2.25, 6 - 5.5, 7.0};
  const double rv[] = {1.0, -2.0, 0.5, 3.0, -1.0};
  double expected = 0;
  for (int i = 0; i < 5; ++i) expected += rv[i] * dv[i];
  ASSERT_TRUE(q->steps.grad().defined());
  EXPECT_NEAR(q->steps.grad()[1].item<double>(), expected, 1e-5);
  EXPECT_EQ(q->steps.grad()[0].item<float>(), 0.0f);
  // Straight through inside the range, zero outside.
  auto expected_x = torch::tensor({0.0f, -2.0f, 0.5f, 3.0f, 0.0f});
  EXPECT_TRUE(torch::allclose(x.grad(), expected_x)) << x.grad();
}

TEST(ActivationQuantizer, StepGradientMatchesFiniteDifferencesAwayFromRoundingJumps) {
  // Between two rounding jumps the output is linear in s: round(v)·s (inside)
  // and Q_P·s (clamped); a central difference is then exact up to float error.
  ActivationQuantizer q(ActivationQuantizerOptions().candidates({4}));
  q->set_bits(4);
  auto x = torch::tensor({0.13f, 0.52f, 1.01f, 1.77f, 40.0f});
  q->forward(x);
  const double s = 0.3;
  {
    torch::NoGradGuard g;
    q->steps.fill_(s);
  }
  auto r = torch::tensor({0.3f, -1.0f, 2.0f, 0.7f, 1.5f});
  (q->forward(x) * r).sum().backward();
  const double analytic = q->steps.grad()[0].item<double>();
  auto loss_at = [&](double step) {
    torch::NoGradGuard g;
    q->steps.fill_(step);
    return (q->forward(x) * r).sum().item<double>();
  };
  const double h = 1e-4;
  // The LSQ formula: round(v) - v inside the range, Q_P above it.
  double formula = 0;
  auto xs = x.accessor<float, 1>();
  auto rs = r.accessor<float, 1>();
  for (int i = 0; i < 5; ++i) {
    const double v = xs[i] / s;
    formula += rs[i] * (v >= 15 ? 15.0 : std::nearbyint(v) - v);
  }
  EXPECT_NEAR(analytic, formula, 1e-4);
  // The finite difference of the forward gives Σ r·round(v) inside (+ Q_P
  // outside): the straight-through gradient differs from it by exactly
  // -Σ r·v over the inside elements (the estimator's defining term).
  const double fd = (loss_at(s + h) - loss_at(s - h)) / (2 * h);
  double inside_rv = 0;
  for (int i = 0; i < 5; ++i)
    if (xs[i] / s < 15) inside_rv += rs[i] * xs[i] / s;
  EXPECT_NEAR(analytic, fd - inside_rv, 2e-2);
}

TEST(ActivationQuantizer, RefusesBitWidthsOutsideItsCandidates) {
  ActivationQuantizer q(ActivationQuantizerOptions().candidates({2, 4}));
  EXPECT_THROW(q->set_bits(3), diffq::Error);
  EXPECT_THROW(ActivationQuantizer(ActivationQuantizerOptions().candidates({4, 2})), diffq::Error);
  EXPECT_THROW(ActivationQuantizer(ActivationQuantizerOptions().candidates({})), diffq::Error);
}

// ---------------------------------------------------------------- switchable BatchNorm

TEST(SwitchableBatchNorm, OnlyTheSelectedPairLearnsStatistics) {
  SwitchableBatchNorm2d bn(SwitchableBatchNormOptions(2).weight_candidates({2, 3}).activation_candidates({4, 5}));
  ASSERT_EQ(bn->norms().size(), 4u);
  EXPECT_EQ(bn->child_name(3, 4), "w3a4");
  bn->select(3, 4);
  EXPECT_EQ(bn->selected(), 2u);
  bn->train();
  bn->forward(torch::randn({4, 2, 3, 3}) + 5);
  for (size_t i = 0; i < 4; ++i) {
    const double mean = bn->norms()[i]->running_mean.abs().sum().item<double>();
    if (i == 2) {
      EXPECT_GT(mean, 0.5);
    } else {
      EXPECT_EQ(mean, 0.0) << i;
    }
  }
  EXPECT_THROW(bn->select(4, 4), diffq::Error);
  SwitchableBatchNorm2d by_weight(SwitchableBatchNormOptions(2).weight_candidates({2, 3}).by_weight_bits(true));
  EXPECT_EQ(by_weight->norms().size(), 2u);
  by_weight->select(3, 6);  // activation bits do not matter
  EXPECT_EQ(by_weight->selected(), 1u);
  EXPECT_EQ(by_weight->child_name(3, 6), "w3");
}

TEST(OneShotLayers, ConvolutionKeepsBiasAndDilation) {
  // The public implementation's quantized convolution dropped both.
  torch::manual_seed(2);
  OneShotConv2d layer(OneShotConv2dOptions(3, 4, 3).padding(2).dilation(2).bias(true).batch_norm(false));
  auto x = torch::randn({2, 3, 9, 9});
  layer->act->set_bits(0);
  auto expected = torch::conv2d(x, layer->conv->weight, layer->conv->bias, 1, 2, 2);
  EXPECT_TRUE(torch::allclose(layer->forward(x), expected));
  EXPECT_NE(layer->conv->bias.abs().sum().item<double>(), 0.0);
}

// ---------------------------------------------------------------- the quantizer

std::shared_ptr<diffq::models::Model> small_resnet() {
  torch::manual_seed(3);
  return make_oneshot_resnet(OneShotResNetOptions().channels({4, 8, 8}).blocks(1).candidates({2, 3, 4}));
}

TEST(OneShotQuantizer, FindsLayersTheirModulesAndFixesStemAndClassifier) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  net->forward(torch::randn({2, 1, 28, 28}));
  auto layers = q.layers();
  // stem, stage1 (conv1, conv2), stage2 and stage3 (conv1, conv2, shortcut), classifier
  ASSERT_EQ(layers.size(), 10u);
  EXPECT_EQ(layers[0].name, "stem");
  EXPECT_EQ(layers[1].name, "stage1_0.conv1");
  EXPECT_EQ(layers[5].name, "stage2_0.shortcut");
  EXPECT_EQ(layers[8].name, "stage3_0.shortcut");
  EXPECT_EQ(layers[9].name, "classifier");
  EXPECT_TRUE(layers[0].fixed);
  EXPECT_TRUE(layers[9].fixed);
  for (size_t i = 1; i < 9; ++i) EXPECT_FALSE(layers[i].fixed) << i;
  EXPECT_EQ(layers[0].fixed_bits, (LayerBits{8, 0}));
  EXPECT_EQ(layers[9].fixed_bits, (LayerBits{8, 8}));
  EXPECT_EQ(layers[1].weight_candidates, (std::vector<int>{2, 3, 4}));
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_NE(q.activation_quantizer(i), nullptr) << i;
    EXPECT_EQ(q.batch_norm(i) != nullptr, i != 9) << i;
  }
  // Only the conv and linear weights are quantized.
  EXPECT_EQ(q.quantized_names().size(), 10u);
  EXPECT_EQ(q.max_config().layers[3], (LayerBits{4, 4}));
}

TEST(OneShotQuantizer, MacsAndCostsByHand) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  net->forward(torch::randn({2, 1, 28, 28}));
  auto layers = q.layers();
  // stem 1->4 3x3 on 28x28; stage1 4->4 3x3 on 28x28; stage2 conv1 4->8 3x3
  // stride 2 -> 14x14; shortcut 4->8 1x1 stride 2; stage3 8->8 stride 2 -> 7x7.
  EXPECT_EQ(layers[0].macs, 4 * 9 * 784);
  EXPECT_EQ(layers[1].macs, 4 * 4 * 9 * 784);
  EXPECT_EQ(layers[3].macs, 8 * 4 * 9 * 196);
  EXPECT_EQ(layers[4].macs, 8 * 8 * 9 * 196);
  EXPECT_EQ(layers[5].macs, 8 * 4 * 196);
  EXPECT_EQ(layers[6].macs, 8 * 8 * 9 * 49);
  EXPECT_EQ(layers[8].macs, 8 * 8 * 49);
  EXPECT_EQ(layers[9].macs, 8 * 10);
  const auto config = q.max_config();
  double expected = 4 * 9 * 784 * 8.0 * 32;  // stem: W8, float input counts 32
  for (size_t i = 1; i < 9; ++i) expected += double(layers[i].macs) * 4 * 4;
  expected += 80 * 8 * 8;
  EXPECT_DOUBLE_EQ(bitops(layers, config), expected);
  double size = 0;
  for (size_t i = 0; i < layers.size(); ++i) size += double(layers[i].weights) * config.layers[i].weight;
  EXPECT_DOUBLE_EQ(size_bits(layers, config), size);
}

TEST(OneShotQuantizer, SetConfigPushesBitsToTheModulesAndRefusesImpossibleOnes) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  auto c = q.max_config();
  c.layers[2] = {2, 3};
  q.set_config(c);
  EXPECT_EQ(q.activation_quantizer(2)->bits(), 3);
  EXPECT_EQ(q.batch_norm(2)->selected(), q.batch_norm(2)->index_of(2, 3));
  EXPECT_EQ(q.activation_quantizer(0)->bits(), 0);  // stem input stays float
  EXPECT_EQ(q.activation_quantizer(9)->bits(), 8);
  auto bad = c;
  bad.layers[2] = {5, 3};
  EXPECT_THROW(q.set_config(bad), diffq::Error);
  bad = c;
  bad.layers[0] = {4, 0};
  EXPECT_THROW(q.set_config(bad), diffq::Error);
  bad.layers.pop_back();
  EXPECT_THROW(q.set_config(bad), diffq::Error);
  EXPECT_EQ(q.config(), c);  // unchanged by the refusals
}

TEST(OneShotQuantizer, WeightStepsStartAtThreeSigmaAndOnlyTheRunningOneLearns) {
  torch::manual_seed(0);
  auto net = small_resnet();
  OneShotQuantizer q(net);
  auto w = net->named_parameters()["stage1_0.conv1.conv.weight"].detach().to(torch::kFloat64);
  const double mean = w.mean().item<double>(), sd = w.std().item<double>();
  const double extent = std::max(std::abs(mean - 3 * sd), std::abs(mean + 3 * sd));
  EXPECT_NEAR(q.weight_step(1, 2), extent / 2, 1e-6);
  EXPECT_NEAR(q.weight_step(1, 4), extent / 8, 1e-7);

  auto c = q.max_config();
  c.layers[1].weight = 3;
  q.set_config(c);
  auto x = torch::randn({2, 1, 28, 28});
  for (auto& p : q.parameters()) p.mutable_grad() = torch::Tensor();
  torch::Tensor weight_grad;
  {
    auto step = q.training_step();
    auto out = net->forward(x);
    out.sum().backward();
  }
  auto own = q.parameters()[1];
  ASSERT_TRUE(own.grad().defined());
  EXPECT_EQ(own.grad()[0].item<float>(), 0.0f);
  EXPECT_EQ(own.grad()[2].item<float>(), 0.0f);
  EXPECT_NE(own.grad()[1].item<float>(), 0.0f);
}

TEST(OneShotQuantizer, WeightStepGradientIsTheLsqFormula) {
  // A linear block: y = W x, loss = Σ r·y, so dL/dW_q = r xᵀ and the step's
  // gradient is Σ dL/dW_q · (round(v) - v | -Q_N | Q_P).
  struct Net : torch::nn::Module {
    OneShotLinear a{nullptr}, b{nullptr}, c{nullptr};
    Net() {
      a = register_module("a", OneShotLinear(OneShotLinearOptions(3, 3).bias(false)));
      b = register_module("b", OneShotLinear(OneShotLinearOptions(3, 2).bias(false)));
      c = register_module("c", OneShotLinear(OneShotLinearOptions(2, 2).bias(false).activation_candidates({8})));
    }
    torch::Tensor forward(const torch::Tensor& x) { return c(b(a(x))); }
  };
  torch::manual_seed(1);
  auto net = std::make_shared<Net>();
  OneShotQuantizer q(net);
  auto config = q.max_config();
  config.layers[1] = {3, 0};
  // b's activation quantizer would also quantize; run it in float for a clean formula.
  config.layers[1].activation = 2;
  q.set_config(config);
  net->b->act->set_bits(0);
  auto x = torch::randn({4, 3});
  std::vector<torch::Tensor> inputs;
  torch::Tensor grad_out;
  {
    auto step = q.training_step();
    auto h = net->a(x).detach().requires_grad_(true);
    auto y = net->b(h);
    y.retain_grad();
    auto out = net->c(y);
    out.sum().backward();
    inputs.push_back(h.detach());
    grad_out = y.grad().clone();
  }
  auto w = net->b->linear->weight.detach();
  const double s = q.weight_step(1, 3);
  auto dwq = grad_out.t().matmul(inputs[0]);  // dL/dW_q
  auto v = w / s;
  auto dstep = torch::where(v <= -4, torch::full_like(v, -4.0),
                            torch::where(v >= 3, torch::full_like(v, 3.0), torch::round(v) - v));
  const double expected = (dwq * dstep).sum().item<double>();
  auto own = q.parameters()[1];
  EXPECT_NEAR(own.grad()[1].item<double>(), expected, 1e-4 * std::max(1.0, std::abs(expected)));
  // and the weight's gradient is straight through inside the range
  auto inside = torch::logical_and(v > -4, v < 3).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(net->b->linear->weight.grad(), dwq * inside, 1e-5, 1e-6));
}

TEST(OneShotQuantizer, TurbulenceOnAHandMadeTensor) {
  struct Net : torch::nn::Module {
    torch::nn::Linear first{nullptr}, middle{nullptr}, last{nullptr};
    Net() {
      first = register_module("first", torch::nn::Linear(torch::nn::LinearOptions(2, 4).bias(false)));
      middle = register_module("middle", torch::nn::Linear(torch::nn::LinearOptions(4, 2).bias(false)));
      last = register_module("last", torch::nn::Linear(torch::nn::LinearOptions(2, 2).bias(false)));
    }
  };
  auto net = std::make_shared<Net>();
  {
    torch::NoGradGuard g;
    // v = w / s with s = 1 for every candidate: distances from the nearest level
    net->middle->weight.copy_(torch::tensor({{0.1f, 0.4f, 0.5f, -1.45f}, {1.2f, -2.4f, 3.45f, -9.5f}}));
  }
  OneShotQuantizer q(net, OneShotOptions().weight_candidates({2, 3}));
  {
    torch::NoGradGuard g;
    q.parameters()[1].fill_(1.0f);
  }
  const auto t = q.turbulence();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0], 0.0);  // fixed
  // 2 bits, levels -2..1: v in range and |v - round v| > 0.375:
  //   0.4 (0.4), 0.5 (0.5), -1.45 (0.45) -> 3; 1.2 no; -2.4 beyond -2; 3.45 beyond; -9.5 beyond
  // 3 bits, levels -4..3: 0.4, 0.5, -1.45, -2.4 (0.4) -> 4; 3.45 beyond 3; -9.5 beyond
  const double expected = (3.0 / 8 / 2 + 4.0 / 8 / 3) / 2;
  EXPECT_NEAR(t[1], expected, 1e-12);
  // Dropping the 2-bit candidate leaves only the 3-bit term.
  q.set_weight_candidates(1, {3});
  EXPECT_NEAR(q.turbulence()[1], 4.0 / 8 / 3, 1e-12);
  EXPECT_EQ(q.config().layers[1].weight, 3);
  EXPECT_THROW(q.set_weight_candidates(1, {5}), diffq::Error);
  EXPECT_THROW(q.set_weight_candidates(1, {}), diffq::Error);
}

TEST(OneShotQuantizer, DistortionIsZeroAtTheMaximumAndTheMseAtTheLowestBits) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  auto x = torch::randn({2, 1, 28, 28});
  q.set_capture(true);
  q.set_config(q.max_config());
  std::vector<torch::Tensor> reference;
  {
    torch::NoGradGuard g;
    auto scope = q.training_step();
    net->forward(x);
    for (auto& t : q.captured_outputs()) reference.push_back(t.defined() ? t.detach().clone() : t);
  }
  {
    auto scope = q.training_step();
    net->forward(x);
    EXPECT_EQ(q.distortion(reference).item<double>(), 0.0);  // no layer at its lowest
  }
  auto c = q.max_config();
  c.layers[2] = {2, 4};  // lowest weight candidate
  c.layers[4] = {3, 2};  // not lowest in weights: no term
  q.set_config(c);
  double expected = 0;
  torch::Tensor d;
  {
    auto scope = q.training_step();
    net->forward(x);
    auto outs = q.captured_outputs();
    expected = torch::mse_loss(outs[2], reference[2]).item<double>();
    d = q.distortion(reference);
    EXPECT_TRUE(d.requires_grad());
    d.backward();
  }
  EXPECT_GT(expected, 0.0);
  EXPECT_NEAR(d.item<double>(), expected, 1e-9);
  q.set_capture(false);
}

TEST(OneShotQuantizer, RandomConfigsDrawFromTheCurrentCandidates) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  q.set_weight_candidates(3, {3, 4});
  std::mt19937_64 g(7), h(7);
  std::set<int> seen_w, seen_a;
  for (int i = 0; i < 200; ++i) {
    auto c = q.random_config(g);
    EXPECT_EQ(c, q.random_config(h));  // a function of the generator
    EXPECT_EQ(c.layers[0], (LayerBits{8, 0}));
    EXPECT_NE(c.layers[3].weight, 2);
    seen_w.insert(c.layers[1].weight);
    seen_a.insert(c.layers[1].activation);
    q.set_config(c);
  }
  EXPECT_EQ(seen_w, (std::set<int>{2, 3, 4}));
  EXPECT_EQ(seen_a, (std::set<int>{2, 3, 4}));
}

TEST(OneShotQuantizer, StoredStateRestoresTheQuantizedWeightsBitForBit) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  auto c = q.max_config();
  c.layers[1] = {2, 3};
  c.layers[6] = {3, 2};
  q.set_config(c);
  net->forward(torch::randn({2, 1, 28, 28}));  // initialise the activation steps
  net->eval();
  auto x = torch::randn({3, 1, 28, 28});
  torch::Tensor expected;
  {
    auto scope = q.quantized_evaluation();
    torch::NoGradGuard g;
    expected = net->forward(x);
  }
  auto state = q.get_quantized_state();
  auto copy = small_resnet();
  OneShotQuantizer q2(copy);
  q2.set_config(c);
  diffq::restore(copy, state);
  copy->eval();
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(copy->forward(x), expected));
  EXPECT_DOUBLE_EQ(q.true_model_size(), q2.true_model_size());
}

}  // namespace

// ---------------------------------------------------------------- search on the model

namespace search_test {

std::vector<torch::Tensor> buffers_of(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& b : m.buffers()) out.push_back(b.clone());
  return out;
}

TEST(SearchModel, FindsAConfigurationWithinTheBudgetAndLeavesTheStatisticsAlone) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  auto forward = [&](const torch::Tensor& x) { return net->forward(x); };
  // Initialise every activation step: one training-mode forward per bit pair.
  net->train();
  for (int b : {2, 3, 4}) {
    auto c = q.max_config();
    for (size_t i : q.searchable_layers()) c.layers[i] = {b, b};
    q.set_config(c);
    torch::NoGradGuard g;
    net->forward(torch::randn({8, 1, 28, 28}));
  }
  q.set_config(q.max_config());
  std::vector<LabeledBatch> held_out;
  for (int i = 0; i < 3; ++i) held_out.push_back({torch::randn({16, 1, 28, 28}), torch::randint(0, 10, {16})});
  const auto layers = q.layers();
  SearchOptions options;
  options.budget = bitops(layers, uniform_config(layers, 3, 3));
  const auto before = buffers_of(*net);
  const auto result = search_model(*net, q, forward, held_out, options);
  EXPECT_LE(result.cost, options.budget);
  EXPECT_GE(result.cost, 0.9 * options.budget);
  EXPECT_GT(result.evaluations, 0);
  EXPECT_EQ(q.config(), q.max_config());  // restored
  const auto after = buffers_of(*net);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << i;
  EXPECT_TRUE(net->is_training());
  // The same search again gives the same configuration.
  EXPECT_EQ(search_model(*net, q, forward, held_out, options).config, result.config);
}

TEST(SearchModel, TopOneAndSoftErrorsByHand) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  // Three examples, three classes; the forward returns fixed logits.
  const auto logits = torch::tensor({{2.0f, 0.0f, 0.0f}, {0.0f, 1.0f, 0.0f}, {0.0f, 0.0f, 3.0f}});
  const auto targets = torch::tensor({0, 2, 2}, torch::kInt64);
  auto forward = [&](const torch::Tensor&) { return logits; };
  const LabeledBatch batch{torch::zeros({3, 1, 28, 28}), targets};
  // Misclassified: the second example only.
  EXPECT_DOUBLE_EQ(batch_statistics_error(*net, q, forward, batch, HeldOutError::kTop1), 1.0 / 3.0);
  // p(true class): e²/(e²+2), 1/(e+2), e³/(e³+2).
  const double e = std::exp(1.0);
  const double p = (e * e / (e * e + 2) + 1 / (e + 2) + e * e * e / (e * e * e + 2)) / 3;
  EXPECT_NEAR(batch_statistics_error(*net, q, forward, batch, HeldOutError::kSoft), 1 - p, 1e-6);
}

TEST(SearchModel, RecalibrationIsACumulativeAverageOfTheSelectedNormsOnly) {
  auto net = small_resnet();
  OneShotQuantizer q(net);
  auto forward = [&](const torch::Tensor& x) { return net->forward(x); };
  auto c = q.max_config();
  c.layers[2] = {2, 3};
  q.set_config(c);
  auto* bn = q.batch_norm(2);
  const size_t selected = bn->selected();
  const size_t other = bn->index_of(4, 4);
  auto other_mean = bn->norms()[other]->running_mean.clone();
  auto x = torch::randn({8, 1, 28, 28});
  EXPECT_GT(recalibrate_selected_batchnorm(*net, q, forward, {x}), 0);
  auto once_mean = bn->norms()[selected]->running_mean.clone();
  auto once_var = bn->norms()[selected]->running_var.clone();
  EXPECT_EQ(bn->norms()[selected]->num_batches_tracked.item<int64_t>(), 1);
  // Two copies of the same batch average to the same statistics (no momentum).
  recalibrate_selected_batchnorm(*net, q, forward, {x, x});
  EXPECT_TRUE(torch::allclose(bn->norms()[selected]->running_mean, once_mean, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(bn->norms()[selected]->running_var, once_var, 1e-6, 1e-7));
  EXPECT_EQ(bn->norms()[selected]->num_batches_tracked.item<int64_t>(), 2);
  // A different second batch moves them halfway (the mean of the batch means).
  auto y = torch::randn({8, 1, 28, 28}) * 2 + 1;
  recalibrate_selected_batchnorm(*net, q, forward, {y});
  auto y_mean = bn->norms()[selected]->running_mean.clone();
  recalibrate_selected_batchnorm(*net, q, forward, {x, y});
  EXPECT_TRUE(torch::allclose(bn->norms()[selected]->running_mean, (once_mean + y_mean) / 2, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(bn->norms()[other]->running_mean, other_mean));  // untouched
  EXPECT_EQ(bn->norms()[selected]->options.momentum(), c10::optional<double>(0.1));  // restored
}

}  // namespace search_test
