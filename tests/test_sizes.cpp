// Model sizes against the reference figures of spec section 5.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "diffq/diffq.h"
#include "test_util.h"

using namespace diffq;

namespace {

double diffq_linear_size(int64_t group_size, bool estimate) {
  torch::nn::Linear layer(1024, 512);
  DiffQuantizer q(layer, DiffQOptions().group_size(group_size));
  return estimate ? q.model_size().item<double>() : q.true_model_size();
}

}  // namespace

TEST(Sizes, LinearReferenceFiguresTrueSize) {
  EXPECT_NEAR(diffq_linear_size(0, false), 0.501962066, 1e-9);
  EXPECT_NEAR(diffq_linear_size(1, false), 0.689461708, 1e-9);
  EXPECT_NEAR(diffq_linear_size(8, false), 0.525399208, 1e-9);
  EXPECT_NEAR(diffq_linear_size(16, false), 0.513680458, 1e-9);
}

TEST(Sizes, EstimateEqualsTrueSizeAtInitialisation) {
  // The estimate is computed from float32 logits: equal up to their rounding.
  for (int64_t g : {0, 1, 8, 16}) {
    EXPECT_NEAR(diffq_linear_size(g, true), diffq_linear_size(g, false), 2e-7) << "group " << g;
  }
}

TEST(Sizes, CnnReferenceFigures) {
  diffq_test::SpecCnn cnn;
  {
    DiffQuantizer q(cnn, DiffQOptions().group_size(8));
    EXPECT_NEAR(q.true_model_size(), 0.832178116, 1e-9);
    EXPECT_NEAR(q.float_model_size(), 3.145057678, 1e-9);
  }
  {
    UniformQuantizer q(cnn, UniformOptions().bits(4));
    EXPECT_NEAR(q.true_model_size(), 0.403862000, 1e-9);
  }
  {
    LSQQuantizer q(cnn, LSQOptions().bits(4));
    EXPECT_NEAR(q.true_model_size(), 0.403854370, 1e-9);
  }
}

TEST(Sizes, StateTrueBitsMatchesQuantizer) {
  diffq_test::SpecCnn cnn;
  {
    DiffQuantizer q(cnn, DiffQOptions().group_size(8));
    EXPECT_NEAR(q.get_quantized_state().true_mib(), q.true_model_size(), 1e-12);
  }
  {
    UniformQuantizer q(cnn, UniformOptions().bits(3));
    EXPECT_NEAR(q.get_quantized_state().true_mib(), q.true_model_size(), 1e-12);
  }
  {
    LSQQuantizer q(cnn, LSQOptions().bits(5));
    EXPECT_NEAR(q.get_quantized_state().true_mib(), q.true_model_size(), 1e-12);
  }
}

TEST(Sizes, MinSizeThresholdAndFloat16Leftovers) {
  // floor(0.01 * 2^20 / 4) = 2621: a tensor of 2621 elements stays float,
  // one of 2622 is quantized.
  torch::nn::Linear small(torch::nn::LinearOptions(2621, 1).bias(false));
  torch::nn::Linear large(torch::nn::LinearOptions(2622, 1).bias(false));
  {
    UniformQuantizer q(small, UniformOptions().bits(4));
    EXPECT_EQ(q.quantized_names().size(), 0u);
    EXPECT_NEAR(q.true_model_size() * 8 * 1048576, 32.0 * 2621, 1e-6);
  }
  {
    UniformQuantizer q(large, UniformOptions().bits(4));
    EXPECT_EQ(q.quantized_names().size(), 1u);
    EXPECT_NEAR(q.true_model_size() * 8 * 1048576, 4.0 * 2622 + 64, 1e-6);
  }
  {
    UniformQuantizer q(small, UniformOptions().bits(4).discovery(DiscoveryOptions().float16(true)));
    EXPECT_NEAR(q.true_model_size() * 8 * 1048576, 16.0 * 2621, 1e-6);
  }
}

TEST(Sizes, ExcludeGlobsMatchFullAndBareNames) {
  torch::nn::Sequential seq(torch::nn::Linear(64, 64), torch::nn::Linear(64, 64),
                            torch::nn::Linear(64, 64));
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias", "[02].*"});
  UniformQuantizer q(seq, UniformOptions().bits(4).discovery(d));
  EXPECT_EQ(q.quantized_names(), std::vector<std::string>({"1.weight"}));
  EXPECT_EQ(q.float_names().size(), 5u);
}

// Inside a training step the estimate reuses the bits sums of the pass that
// computed the step's noise scales (one autograd node for all tensors):
// the same value and gradient, bit for bit, as the estimate outside a step;
// logits edited during the step are seen; and it agrees with the tensor
// path (float64 logits) to float rounding.
TEST(Sizes, EstimateInAStepEqualsTheEstimateOutside) {
  torch::manual_seed(3);
  torch::nn::Sequential model(torch::nn::Linear(64, 48), torch::nn::ReLU(), torch::nn::Linear(48, 40));
  DiscoveryOptions every;
  every.min_size(0).exclude({"*bias"});
  DiffQuantizer q(model, DiffQOptions().group_size(8).extra_bits(1).discovery(every));
  const auto logits = q.parameters();
  ASSERT_EQ(logits.size(), 2u);
  {
    torch::NoGradGuard no_grad;
    for (const auto& l : logits) l.copy_(torch::randn_like(l).mul_(3));
  }
  auto grads_of = [&](const torch::Tensor& size) {
    for (const auto& l : logits) l.mutable_grad() = torch::Tensor();
    (2.5 * size).backward();
    std::vector<torch::Tensor> out;
    for (const auto& l : logits) out.push_back(l.grad().clone());
    return out;
  };
  const auto outside = q.model_size();
  const auto outside_grads = grads_of(outside);
  auto step = q.training_step();
  const auto inside = q.model_size();
  EXPECT_EQ(inside.item<double>(), outside.item<double>());
  const auto inside_grads = grads_of(inside);
  for (size_t t = 0; t < logits.size(); ++t) EXPECT_TRUE(torch::equal(inside_grads[t], outside_grads[t]));
  // An edit during the step (the logits' version moves on): not the step's sums.
  {
    torch::NoGradGuard no_grad;
    logits[1].add_(0.75);
  }
  const double edited = q.model_size().item<double>();
  EXPECT_GT(edited, inside.item<double>());
  step.finish();
  EXPECT_EQ(edited, q.model_size().item<double>());
  // The tensor path (float64 logits, one scalar expression per tensor).
  torch::nn::Sequential twin(torch::nn::Linear(64, 48), torch::nn::ReLU(), torch::nn::Linear(48, 40));
  twin->to(torch::kFloat64);
  DiffQuantizer q64(twin, DiffQOptions().group_size(8).extra_bits(1).discovery(every));
  {
    torch::NoGradGuard no_grad;
    for (size_t t = 0; t < logits.size(); ++t) q64.parameters()[t].copy_(logits[t]);
  }
  EXPECT_NEAR(q64.model_size().item<double>(), edited, 1e-7 * edited);  // float32 against float64 bits
}
