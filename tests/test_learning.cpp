// A learning test that fails if DiffQ is wrong: with λ > 0 the bits fall well
// below init_bits while the task loss stays close to the float model's; with
// λ = 0 they do not fall.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "diffq/diffq.h"
#include "test_util.h"

using namespace diffq;

namespace {

struct Outcome {
  double mean_bits;
  double loss;      // on held-out data, with the TRUE quantized weights (or float)
  double variance;  // of the held-out targets: the loss of predicting their mean
  double ptq3_loss = 0;  // float model only: its loss after 3-bit uniform PTQ
  double ptq4_loss = 0;  // float model only: its loss after 4-bit uniform PTQ
};

Outcome train(double penalty, bool quantize) {
  torch::manual_seed(0);
  diffq_test::Mlp teacher(8, 32, 1);
  auto x = torch::randn({1024, 8});
  auto x_test = torch::randn({512, 8});
  torch::Tensor y, y_test;
  {
    torch::NoGradGuard no_grad;
    y = teacher->forward(x);
    y_test = teacher->forward(x_test);
  }
  torch::manual_seed(1);
  diffq_test::Mlp student(8, 64, 1);
  torch::optim::Adam optimizer(student->parameters(), torch::optim::AdamOptions(3e-3));
  DiscoveryOptions d;
  d.min_size(0).exclude({"bias"});
  std::unique_ptr<DiffQuantizer> q;
  if (quantize) {
    q = std::make_unique<DiffQuantizer>(student, DiffQOptions().group_size(8).discovery(d));
    q->add_to_optimizer(optimizer, 5e-2);
  }
  for (int epoch = 0; epoch < 60; ++epoch) {
    auto order = torch::randperm(1024);
    for (int64_t i = 0; i < 1024; i += 64) {
      auto index = order.slice(0, i, i + 64);
      optimizer.zero_grad();
      if (quantize) {
        auto step = q->training_step();
        auto loss = torch::mse_loss(student->forward(x.index_select(0, index)), y.index_select(0, index)) +
                    penalty * q->model_size();
        loss.backward();
      } else {
        torch::mse_loss(student->forward(x.index_select(0, index)), y.index_select(0, index)).backward();
      }
      optimizer.step();
    }
  }
  torch::NoGradGuard no_grad;
    const double variance = y_test.var().item<double>();
  if (!quantize) {
    Outcome out{32.0, torch::mse_loss(student->forward(x_test), y_test).item<double>(), variance};
    for (int bits : {3, 4}) {
      UniformQuantizer ptq(student, UniformOptions().bits(bits).discovery(d));
      auto scope = ptq.quantized_evaluation();
      (bits == 3 ? out.ptq3_loss : out.ptq4_loss) =
          torch::mse_loss(student->forward(x_test), y_test).item<double>();
    }
    return out;
  }
  auto scope = q->quantized_evaluation();
  return {q->mean_bits(), torch::mse_loss(student->forward(x_test), y_test).item<double>(), variance};
}

}  // namespace

TEST(Learning, PenaltyLowersBitsAndKeepsAccuracy) {
  const auto fp = train(0, false);
  const auto penalised = train(5.0, true);
  const auto free = train(0.0, true);
  std::printf("float loss %.5f (PTQ 3 bits %.5f, 4 bits %.5f) | λ>0: bits %.2f loss %.5f | λ=0: bits %.2f loss %.5f\n",
              fp.loss, fp.ptq3_loss, fp.ptq4_loss, penalised.mean_bits, penalised.loss, free.mean_bits, free.loss);
  // Well below init_bits = 8 with the penalty; not below it without.
  EXPECT_LT(penalised.mean_bits, 4.5);
  EXPECT_GE(free.mean_bits, 7.5);
  // Close to the float model: the true quantized model explains more than
  // 98 % of the targets' variance, and beats uniform post-training
  // quantization of the float model at a comparable size (3 bits).
  EXPECT_LT(fp.loss, 0.01 * fp.variance);
  EXPECT_LT(penalised.loss, 0.02 * penalised.variance);
  EXPECT_LT(penalised.loss, fp.ptq3_loss);
  EXPECT_LT(free.loss, 1.5 * fp.loss);
}
