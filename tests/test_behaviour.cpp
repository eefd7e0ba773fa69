// Behaviour of the training step and the evaluation scope; restore round trips.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "diffq/diffq.h"
#include "test_util.h"

using namespace diffq;
using diffq_test::Mlp;
using diffq_test::all_params;

TEST(Behaviour, TrainingForwardsDifferEvaluationForwardsEqual) {
  torch::manual_seed(0);
  Mlp mlp(16, 32, 16);
  DiffQuantizer q(mlp, DiffQOptions().group_size(16).discovery(all_params()));
  auto x = torch::randn({8, 16});
  torch::Tensor a, b;
  {
    auto step = q.training_step();
    a = mlp->forward(x).detach();
  }
  {
    auto step = q.training_step();
    b = mlp->forward(x).detach();
  }
  EXPECT_FALSE(torch::equal(a, b));
  torch::Tensor c, d;
  {
    auto scope = q.quantized_evaluation();
    c = mlp->forward(x).detach();
    d = mlp->forward(x).detach();
  }
  {
    auto scope = q.quantized_evaluation();
    EXPECT_TRUE(torch::equal(mlp->forward(x).detach(), c));
  }
  EXPECT_TRUE(torch::equal(c, d));
  EXPECT_FALSE(torch::equal(c, mlp->forward(x).detach()));  // float differs from quantized
}

TEST(Behaviour, EvaluationUsesTrueQuantizedWeightsAndRestoresLatent) {
  torch::manual_seed(1);
  Mlp mlp(16, 32, 16);
  DiffQuantizer q(mlp, DiffQOptions().group_size(8).init_bits(3.4).discovery(all_params()));
  const auto before = diffq_test::snapshot(*mlp);
  std::vector<torch::Tensor> inside;
  {
    auto scope = q.quantized_evaluation();
    inside = diffq_test::snapshot(*mlp);
  }
  EXPECT_TRUE(diffq_test::same_bits(*mlp, before));
  // At 3 bits each group has at most 8 distinct values, all on the grid
  // min + k (max - min) / 7.
  auto w = before[0].view(-1);
  const float mn = w.min().item<float>(), mx = w.max().item<float>();
  auto q_w = inside[0].view({-1, 8});
  for (int64_t g = 0; g < q_w.size(0); ++g) {
    EXPECT_LE(std::get<0>(torch::_unique(q_w[g])).numel(), 8);
  }
  auto k = (inside[0] - mn) / (mx - mn) * 7;
  EXPECT_TRUE(torch::allclose(k, torch::round(k), 0, 1e-4));
  // Restoring the state into a fresh model gives exactly these weights.
  Mlp other(16, 32, 16);
  restore(other, q.get_quantized_state());
  EXPECT_TRUE(diffq_test::same_bits(*other, inside));
}

TEST(Behaviour, LatentWeightsUnchangedAfterStepsWithLearningRateZero) {
  torch::manual_seed(2);
  Mlp mlp(16, 32, 16);
  DiffQuantizer q(mlp, DiffQOptions().group_size(4).discovery(all_params()));
  torch::optim::SGD sgd(mlp->parameters(), torch::optim::SGDOptions(0.0));
  auto bits_optimizer = q.make_optimizer(1e-2);
  const auto before = diffq_test::snapshot(*mlp);
  auto x = torch::randn({8, 16});
  for (int i = 0; i < 5; ++i) {
    sgd.zero_grad();
    bits_optimizer->zero_grad();
    auto step = q.training_step();
    auto loss = mlp->forward(x).pow(2).mean() + q.model_size();
    loss.backward();
    step.finish();
    sgd.step();
    bits_optimizer->step();
  }
  EXPECT_TRUE(diffq_test::same_bits(*mlp, before));
  EXPECT_TRUE(mlp->fc1->weight.grad().defined());
  EXPECT_GT(mlp->fc1->weight.grad().abs().sum().item<double>(), 0);
}

TEST(Behaviour, TensorIdentityKeptForOptimizerState) {
  Mlp mlp(16, 32, 16);
  const void* impl = mlp->fc1->weight.unsafeGetTensorImpl();
  const void* data = mlp->fc1->weight.data_ptr();
  DiffQuantizer q(mlp, DiffQOptions().discovery(all_params()));
  {
    auto step = q.training_step();
    EXPECT_EQ(mlp->fc1->weight.unsafeGetTensorImpl(), impl);
    EXPECT_NE(mlp->fc1->weight.data_ptr(), data);  // noisy data installed
    mlp->forward(torch::randn({2, 16})).sum().backward();
    EXPECT_EQ(mlp->fc1->weight.data_ptr(), data);  // back right after backward
  }
  EXPECT_EQ(mlp->fc1->weight.data_ptr(), data);
}

namespace {
void expect_round_trip(torch::nn::Module& model, torch::nn::Module& fresh, Quantizer& q) {
  std::vector<torch::Tensor> expected;
  {
    auto scope = q.quantized_evaluation();
    expected = diffq_test::snapshot(model);
  }
  restore(fresh, q.get_quantized_state());
  EXPECT_TRUE(diffq_test::same_bits(fresh, expected));
}
}  // namespace

TEST(Behaviour, RestoreRoundTripsExactly) {
  for (int64_t g : {0, 1, 8}) {
    for (double extra : {0.0, 7.0}) {  // 8 + 7 = 15-bit groups
      torch::manual_seed(3);
      Mlp mlp(16, 32, 16), fresh(16, 32, 16);
      DiffQuantizer q(mlp, DiffQOptions().group_size(g).extra_bits(extra).discovery(all_params()));
      expect_round_trip(*mlp, *fresh, q);
      if (extra == 7.0) {
        for (const auto& r : q.get_quantized_state().tensors) {
          for (auto b : r.group_bits) EXPECT_EQ(b, 15);
        }
      }
    }
  }
  for (int bits : {1, 4, 16}) {
    Mlp mlp(16, 32, 16), fresh(16, 32, 16);
    UniformQuantizer q(mlp, UniformOptions().bits(bits).discovery(all_params()));
    expect_round_trip(*mlp, *fresh, q);
  }
  Mlp mlp(16, 32, 16), fresh(16, 32, 16);
  LSQQuantizer q(mlp, LSQOptions().bits(3).discovery(all_params()));
  expect_round_trip(*mlp, *fresh, q);
}

TEST(Behaviour, ConstantTensorIsStoredExactly) {
  torch::nn::Linear layer(torch::nn::LinearOptions(64, 64).bias(false));
  {
    torch::NoGradGuard no_grad;
    layer->weight.fill_(0.3125f);
  }
  DiffQuantizer q(layer, DiffQOptions().discovery(all_params()));
  {
    auto step = q.training_step();  // no division by zero, no NaN
    layer->forward(torch::randn({2, 64})).sum().backward();
  }
  EXPECT_TRUE(torch::isfinite(layer->weight.grad()).all().item<bool>());
  torch::nn::Linear fresh(torch::nn::LinearOptions(64, 64).bias(false));
  restore(fresh, q.get_quantized_state());
  EXPECT_TRUE(torch::equal(fresh->weight, layer->weight));
}

TEST(Behaviour, Float16LeftoversRoundTrip) {
  torch::manual_seed(4);
  Mlp mlp(16, 32, 16), fresh(16, 32, 16);
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"}).float16(true);
  DiffQuantizer q(mlp, DiffQOptions().discovery(d));
  auto state = q.get_quantized_state();
  restore(fresh, state);
  EXPECT_TRUE(torch::equal(fresh->fc1->bias, mlp->fc1->bias.to(torch::kFloat16).to(torch::kFloat32)));
  EXPECT_FALSE(torch::equal(fresh->fc1->bias, mlp->fc1->bias));
}

namespace {
// An output projection whose weight is given (tied).
struct ProjectionImpl : torch::nn::Module {
  explicit ProjectionImpl(torch::Tensor shared) {
    weight = register_parameter("weight", shared);
    bias = register_parameter("bias", torch::zeros({shared.size(0)}));
  }
  torch::Tensor forward(torch::Tensor x) { return torch::nn::functional::linear(x, weight, bias); }
  torch::Tensor weight, bias;
};
TORCH_MODULE(Projection);

// An embedding tied with the output projection.
struct TiedImpl : torch::nn::Module {
  TiedImpl() {
    embedding = register_module("embedding", torch::nn::Embedding(50, 16));
    output = register_module("output", Projection(embedding->weight));
  }
  torch::Tensor forward(torch::Tensor tokens) { return output(embedding(tokens)); }
  torch::nn::Embedding embedding{nullptr};
  Projection output{nullptr};
};
TORCH_MODULE(Tied);
}  // namespace

TEST(Behaviour, TiedParametersDetected) {
  Tied tied, fresh;
  DiffQuantizer q(tied, DiffQOptions().group_size(10).discovery(all_params()));
  EXPECT_EQ(q.quantized_names(), std::vector<std::string>({"embedding.weight", "output.bias"}));
  EXPECT_EQ(q.parameters()[0].numel(), 800 / 10);
  auto state = q.get_quantized_state();
  ASSERT_EQ(state.tensors.size(), 2u);
  EXPECT_EQ(state.tensors[0].aliases, std::vector<std::string>({"output.weight"}));
  {
    auto step = q.training_step();
    tied->forward(torch::randint(50, {4, 3})).sum().backward();
  }
  EXPECT_TRUE(q.parameters()[0].grad().defined());
  std::vector<torch::Tensor> expected;
  {
    auto scope = q.quantized_evaluation();
    expected = diffq_test::snapshot(*tied);
  }
  restore(fresh, state);
  EXPECT_TRUE(diffq_test::same_bits(*fresh, expected));
  EXPECT_EQ(fresh->output->weight.data_ptr(), fresh->embedding->weight.data_ptr());
}

TEST(Behaviour, TiedParametersWithoutDetectionCountedTwice) {
  Tied tied;
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  double detected, undetected;
  {
    DiffQuantizer q(tied, DiffQOptions().discovery(d));
    detected = q.true_model_size();
  }
  d.detect_bound(false);
  {
    DiffQuantizer q(tied, DiffQOptions().discovery(d));
    undetected = q.true_model_size();
    EXPECT_EQ(q.parameters().size(), 2u);
    EXPECT_EQ(q.get_quantized_state().tensors.size(), 3u);
    // Both occurrences get trained, in turn.
    for (int i = 0; i < 2; ++i) {
      auto step = q.training_step();
      tied->forward(torch::randint(50, {4, 3})).sum().backward();
    }
    EXPECT_TRUE(q.parameters()[0].grad().defined());
    EXPECT_TRUE(q.parameters()[1].grad().defined());
  }
  const double bias_bits = 50 * 32;
  const double weight_bits = 800 * 8 + 72 + 3 * 50;
  EXPECT_NEAR(detected * 8 * 1048576, weight_bits + bias_bits, 1e-6);
  EXPECT_NEAR(undetected * 8 * 1048576, 2 * weight_bits + bias_bits, 1e-6);
}

namespace {
struct BranchyImpl : torch::nn::Module {
  BranchyImpl() {
    used = register_module("used", torch::nn::Linear(32, 32));
    unused = register_module("unused", torch::nn::Linear(32, 32));
  }
  torch::Tensor forward(torch::Tensor x) { return used(x); }
  torch::nn::Linear used{nullptr}, unused{nullptr};
};
TORCH_MODULE(Branchy);
}  // namespace

TEST(Behaviour, CheckUnusedZeroesBitsGradient) {
  Branchy model;
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  DiffQuantizer q(model, DiffQOptions().discovery(d));
  auto step = q.training_step();
  auto loss = model->forward(torch::randn({4, 32})).pow(2).mean() + 10 * q.model_size();
  loss.backward();
  step.finish();
  EXPECT_GT(q.parameters()[0].grad().abs().sum().item<double>(), 0);
  EXPECT_EQ(q.parameters()[1].grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(torch::equal(model->unused->weight, model->unused->weight.detach()));
}

namespace {
// Built-in layers of every kind the issue lists, and a user module that
// registers its own parameter.
struct ZooImpl : torch::nn::Module {
  ZooImpl() {
    embedding = register_module("embedding", torch::nn::Embedding(40, 32));
    lstm = register_module("lstm", torch::nn::LSTM(torch::nn::LSTMOptions(32, 32)));
    gru = register_module("gru", torch::nn::GRU(torch::nn::GRUOptions(32, 32)));
    attention = register_module("attention", torch::nn::MultiheadAttention(32, 4));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({32})));
    conv = register_module("conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(32, 32, 3).padding(1)));
    batch_norm = register_module("batch_norm", torch::nn::BatchNorm1d(32));
    custom = register_parameter("custom", torch::randn({32, 32}) * 0.1);
  }
  torch::Tensor forward(torch::Tensor tokens) {
    auto x = embedding(tokens);                  // [T, B, 32]
    x = std::get<0>(lstm(x));
    x = std::get<0>(gru(x));
    x = std::get<0>(attention(x, x, x));
    x = norm(x);
    auto c = conv(x.permute({1, 2, 0}));         // [B, 32, T]
    c = batch_norm(c);
    return torch::matmul(c.permute({0, 2, 1}), custom);
  }
  torch::nn::Embedding embedding{nullptr};
  torch::nn::LSTM lstm{nullptr};
  torch::nn::GRU gru{nullptr};
  torch::nn::MultiheadAttention attention{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Conv1d conv{nullptr};
  torch::nn::BatchNorm1d batch_norm{nullptr};
  torch::Tensor custom;
};
TORCH_MODULE(Zoo);
}  // namespace

TEST(Behaviour, WrapsEveryKindOfLayer) {
  torch::manual_seed(5);
  Zoo zoo;
  DiscoveryOptions d;
  d.min_size(0);
  DiffQuantizer q(zoo, DiffQOptions().group_size(0).discovery(d));
  const auto names = q.quantized_names();
  for (const char* expected : {"embedding.weight", "lstm.weight_ih_l0", "gru.weight_hh_l0",
                               "attention.in_proj_weight", "attention.out_proj.weight",
                               "norm.weight", "conv.weight", "batch_norm.weight", "custom"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
  const auto before = diffq_test::snapshot(*zoo);
  auto tokens = torch::randint(40, {6, 3});
  {
    auto step = q.training_step();
    zoo->forward(tokens).pow(2).mean().backward();
  }
  EXPECT_TRUE(diffq_test::same_bits(*zoo, before));
  for (auto& logits : q.parameters()) {
    ASSERT_TRUE(logits.grad().defined());
  }
  for (auto& p : zoo->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
  }
  std::vector<torch::Tensor> expected;
  {
    auto scope = q.quantized_evaluation();
    expected = diffq_test::snapshot(*zoo);
    zoo->forward(tokens);
  }
  Zoo fresh;
  restore(fresh, q.get_quantized_state());
  EXPECT_TRUE(diffq_test::same_bits(*fresh, expected));
}

// The installed buffer lives from the forward to its layer's backward only:
// DiffQ and LSQ hand it to autograd as the latent weight's gradient (no
// buffer kept across steps, no copy of the gradient) — unless a graph kept
// for a second backward still holds it, which then still sees the installed
// values (the gradient goes to a new buffer).
TEST(Behaviour, InstalledBufferBecomesTheGradientUnlessTheGraphIsKept) {
  for (const std::string method : {"diffq", "lsq"}) {
    SCOPED_TRACE(method);
    torch::manual_seed(3);
    Mlp mlp(16, 32, 16);
    std::unique_ptr<Quantizer> q;
    if (method == "diffq") {
      q = std::make_unique<DiffQuantizer>(mlp, DiffQOptions().group_size(8).discovery(all_params()));
    } else {
      q = std::make_unique<LSQQuantizer>(mlp, LSQOptions().bits(3).discovery(all_params()));
    }
    auto x = torch::randn({8, 16});
    // Released graph: the installed buffer is the gradient.
    {
      auto step = q->training_step();
      const void* installed = mlp->fc1->weight.data_ptr();
      mlp->forward(x).pow(2).sum().backward();
      step.finish();
      ASSERT_TRUE(mlp->fc1->weight.grad().defined());
      EXPECT_EQ(mlp->fc1->weight.grad().data_ptr(), installed);
      EXPECT_NE(mlp->fc1->weight.data_ptr(), installed);  // the latent data is back
    }
    for (auto& p : mlp->parameters()) p.mutable_grad() = torch::Tensor();
    // Kept graph: a second backward through it gives the same input
    // gradient as the first (the installed values were not overwritten).
    {
      auto step = q->training_step();
      const void* installed = mlp->fc1->weight.data_ptr();
      auto xi = x.clone().requires_grad_(true);
      auto loss = mlp->forward(xi).pow(2).sum();
      loss.backward({}, /*retain_graph=*/true);
      step.finish();
      const auto first = xi.grad().clone();
      EXPECT_NE(mlp->fc1->weight.grad().data_ptr(), installed);
      const auto second = torch::autograd::grad({loss}, {xi})[0];
      EXPECT_TRUE(torch::equal(first, second)) << "the kept graph lost the installed weights";
    }
  }
}
