// Clear errors for every misuse.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "diffq/diffq.h"
#include "test_util.h"

using namespace diffq;
using diffq_test::Mlp;
using diffq_test::all_params;

namespace {
// Expects `fn` to throw diffq::Error whose message contains `fragment`.
template <typename F>
void expect_error(F fn, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
  } catch (const diffq::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Errors, GroupSizeMustDivideNamesTheTensor) {
  Mlp mlp(16, 30, 4);
  expect_error([&] { DiffQuantizer q(mlp, DiffQOptions().group_size(16).discovery(all_params())); },
               "'fc1.bias'");
  // The failed construction released the model: a new quantizer is accepted.
  DiffQuantizer ok(mlp, DiffQOptions().group_size(2).discovery(all_params()));
}

TEST(Errors, BitOptionsOrder) {
  Mlp mlp(16, 32, 16);
  expect_error([&] { DiffQuantizer q(mlp, DiffQOptions().init_bits(2)); }, "min_bits < init_bits");
  expect_error([&] { DiffQuantizer q(mlp, DiffQOptions().init_bits(15)); }, "min_bits < init_bits");
  expect_error([&] { DiffQuantizer q(mlp, DiffQOptions().min_bits(2.5)); }, "whole numbers");
  expect_error([&] { DiffQuantizer q(mlp, DiffQOptions().group_size(-1)); }, "group_size");
  expect_error([&] { UniformQuantizer q(mlp, UniformOptions().bits(9.6)); }, "whole number");
  expect_error([&] { UniformQuantizer q(mlp, UniformOptions().bits(17)); }, "1..16");
  expect_error([&] { LSQQuantizer q(mlp, LSQOptions().bits(1)); }, "2..16");
  // A fractional min_bits given as a float that is whole is fine.
  DiffQuantizer q(mlp, DiffQOptions().min_bits(3.0).init_bits(6).discovery(all_params()).group_size(4));
  EXPECT_EQ(q.get_quantized_state().tensors[0].min_bits, 3);
}

TEST(Errors, SecondQuantizerRefused) {
  Mlp mlp(16, 32, 16);
  DiffQuantizer first(mlp, DiffQOptions().discovery(all_params()));
  expect_error([&] { UniformQuantizer second(mlp); }, "already handled by another quantizer");
}

TEST(Errors, LogitsAlreadyInOptimizer) {
  Mlp mlp(16, 32, 16);
  DiffQuantizer q(mlp, DiffQOptions().discovery(all_params()));
  auto params = mlp->parameters();
  for (auto& l : q.parameters()) params.push_back(l);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-3).weight_decay(0.1));
  expect_error([&] { q.add_to_optimizer(adam, 1e-3); }, "already in the optimizer");
}

TEST(Errors, AddToOptimizerMakesOwnGroupWithoutWeightDecay) {
  Mlp mlp(16, 32, 16);
  DiffQuantizer q(mlp, DiffQOptions().discovery(all_params()));
  torch::optim::AdamW adamw(mlp->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  q.add_to_optimizer(adamw, 5e-2);
  ASSERT_EQ(adamw.param_groups().size(), 2u);
  auto& options = static_cast<torch::optim::AdamWOptions&>(adamw.param_groups()[1].options());
  EXPECT_EQ(options.weight_decay(), 0);
  EXPECT_EQ(options.lr(), 5e-2);
  expect_error([&] { q.add_to_optimizer(adamw, 5e-2); }, "already in the optimizer");
}

TEST(Errors, ScopesCannotOverlap) {
  Mlp mlp(16, 32, 16);
  DiffQuantizer q(mlp, DiffQOptions().discovery(all_params()));
  {
    auto step = q.training_step();
    expect_error([&] { q.training_step(); }, "already active");
    expect_error([&] { q.quantized_evaluation(); }, "training step is active");
    expect_error([&] { q.get_quantized_state(); }, "float weights");
  }
  auto scope = q.quantized_evaluation();
  expect_error([&] { q.training_step(); }, "evaluation scope is active");
}

TEST(Errors, NanWeightsNamed) {
  Mlp mlp(16, 32, 16);
  {
    torch::NoGradGuard no_grad;
    mlp->fc2->weight[0][0] = std::nanf("");
  }
  DiffQuantizer q(mlp, DiffQOptions().discovery(all_params()));
  const auto before = mlp->fc1->weight.detach().clone();
  expect_error([&] { q.training_step(); }, "'fc2.weight' contains NaN");
  // The failed step left every weight in place.
  EXPECT_TRUE(torch::equal(mlp->fc1->weight, before));
  expect_error([&] { q.quantized_evaluation(); }, "'fc2.weight' contains NaN");
  expect_error([&] { q.get_quantized_state(); }, "'fc2.weight' contains NaN");
  // And the scopes can be opened again once the weights are fixed.
  {
    torch::NoGradGuard no_grad;
    mlp->fc2->weight[0][0] = 0.f;
  }
  auto step = q.training_step();
}

// Weights that turn NaN or infinite during training (after the quantizer
// checked them at construction) stop the next step of every
// straight-through quantizer with the tensor's name, and leave the weights
// in place; LSQ checks them in its forward pass.
TEST(Errors, NonFiniteWeightsStopTheStraightThroughSteps) {
  for (float bad : {std::nanf(""), INFINITY}) {
    for (int method = 0; method < 2; ++method) {
      torch::manual_seed(1);
      Mlp mlp(16, 32, 16);
      std::unique_ptr<Quantizer> q;
      if (method == 0) {
        q = std::make_unique<LSQQuantizer>(mlp, LSQOptions().bits(4).discovery(all_params()));
      } else {
        q = std::make_unique<UniformQuantizer>(mlp, UniformOptions().bits(4).qat(true).discovery(all_params()));
      }
      {
        torch::NoGradGuard no_grad;
        mlp->fc2->weight[3][5] = bad;
      }
      const auto before = diffq_test::snapshot(*mlp);
      expect_error([&] { q->training_step(); }, "'fc2.weight' contains NaN or infinite values");
      EXPECT_TRUE(diffq_test::same_bits(*mlp, before)) << method << " " << bad;
      {
        torch::NoGradGuard no_grad;
        mlp->fc2->weight[3][5] = 0.f;
      }
      auto step = q->training_step();
    }
  }
}

TEST(Errors, RestoreChecksEverythingBeforeWriting) {
  torch::manual_seed(0);
  Mlp mlp(16, 32, 16);
  QuantizedState state;
  {
    DiffQuantizer q(mlp, DiffQOptions().discovery(all_params()));
    state = q.get_quantized_state();
  }
  Mlp target(16, 32, 16);
  const auto before = diffq_test::snapshot(*target);
  {
    auto bad = state;
    bad.tensors.back().name = "fc2.bogus";
    expect_error([&] { restore(target, bad); }, "no parameter named 'fc2.bogus'");
  }
  {
    Mlp wrong_shape(16, 32, 5);
    const auto snap = diffq_test::snapshot(*wrong_shape);
    expect_error([&] { restore(wrong_shape, state); }, "'fc2.weight' has shape");
    EXPECT_TRUE(diffq_test::same_bits(*wrong_shape, snap));
  }
  {
    Mlp doubled(16, 32, 16);
    doubled->to(torch::kFloat64);
    expect_error([&] { restore(doubled, state); }, "dtype");
  }
  {
    auto missing = state;
    missing.tensors.pop_back();
    expect_error([&] { restore(target, missing); }, "'fc2.bias' of the model is missing");
  }
  {
    auto corrupt = state;
    corrupt.tensors.back().levels.pop_back();  // last record: the others would be written first
    corrupt.tensors.back().encoding = Encoding::kUniform;
    corrupt.tensors.back().bits = 4;
    expect_error([&] { restore(target, corrupt); }, "fc2.bias");
  }
  EXPECT_TRUE(diffq_test::same_bits(*target, before));
}
