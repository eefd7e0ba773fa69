// The training library's Trainer: steps, the step-strategy and gradient-hook
// extension points, fit, checkpoints and restore of what it trained.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/restore.h"
#include "diffq/train/trainer.h"
#include "tiny_net.h"

using namespace diffq;
using namespace diffq::train;
using namespace train_test;

namespace {

TrainerOptions options_for(const std::string& method) {
  MethodOptions m;
  m.min_size = 0;  // quantize every tensor
  m.bits = 4;
  m.group_size = 4;
  return TrainerOptions().method(method).method_options(m).seed(3).schedule(Schedule::kConstant);
}

std::vector<torch::Tensor> gradients(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}

// Runs the default one-pass strategy `passes` times: gradients accumulate.
struct RepeatedPasses : StepStrategy {
  explicit RepeatedPasses(int passes) : passes(passes) {}
  StepResult compute_gradients(Trainer& trainer, const Batch& batch) override {
    StepResult r;
    for (int i = 0; i < passes; ++i) r = SinglePassStep().compute_gradients(trainer, batch);
    ++calls;
    return r;
  }
  int passes;
  int calls = 0;
};

}  // namespace

TEST(Trainer, HookSeesEveryOptimizedTensorAfterBackward) {
  auto net = make_tiny(1);
  Trainer trainer(net, options_for("diffq"));
  size_t seen = 0;
  bool all_have_gradients = true;
  trainer.add_gradient_hook([&](const std::vector<torch::Tensor>& params) {
    seen = params.size();
    for (const auto& p : params) all_have_gradients = all_have_gradients && p.grad().defined();
  });
  trainer.step(tiny_batch(16, 2));
  // 4 model parameters, then DiffQ's logits of the 4 quantized tensors.
  EXPECT_EQ(seen, 4u + trainer.quantizer()->parameters().size());
  EXPECT_EQ(trainer.quantizer()->parameters().size(), 4u);
  EXPECT_TRUE(all_have_gradients);
  EXPECT_EQ(trainer.global_step(), 1);
}

TEST(Trainer, HookThatZeroesGradientsFreezesTheModel) {
  auto net = make_tiny(1);
  Trainer trainer(net, options_for("fp32"));
  std::vector<torch::Tensor> before;
  for (const auto& p : net->parameters()) before.push_back(p.detach().clone());
  trainer.add_gradient_hook([](const std::vector<torch::Tensor>& params) {
    for (const auto& p : params) p.mutable_grad().zero_();
  });
  trainer.step(tiny_batch(16, 2));
  const auto after = net->parameters();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << i;
}

TEST(Trainer, StrategyWithTwoPassesAccumulatesTwiceTheGradient) {
  // Deterministic methods (DiffQ draws new noise at each pass).
  for (const std::string method : {"fp32", "qat", "lsq"}) {
    SCOPED_TRACE(method);
    const auto batch = tiny_batch(16, 2);
    std::vector<torch::Tensor> once, twice;
    {
      auto net = make_tiny(1);
      Trainer trainer(net, options_for(method));
      trainer.add_gradient_hook([&](const std::vector<torch::Tensor>& p) { once = gradients(p); });
      trainer.step(batch);
    }
    {
      auto net = make_tiny(1);
      Trainer trainer(net, options_for(method));
      auto strategy = std::make_unique<RepeatedPasses>(2);
      auto* counter = strategy.get();
      trainer.set_step_strategy(std::move(strategy));
      trainer.add_gradient_hook([&](const std::vector<torch::Tensor>& p) { twice = gradients(p); });
      trainer.step(batch);
      EXPECT_EQ(counter->calls, 1);
    }
    ASSERT_EQ(once.size(), twice.size());
    for (size_t i = 0; i < once.size(); ++i) {
      ASSERT_TRUE(once[i].defined()) << i;
      EXPECT_TRUE(torch::allclose(twice[i], 2 * once[i], 1e-5, 1e-7)) << i;
    }
  }
}

TEST(Trainer, FitLearnsAndTheStateRestoresTheQuantizedModel) {
  for (const std::string method : {"diffq", "qat", "lsq"}) {
    SCOPED_TRACE(method);
    auto net = make_tiny(4);
    const auto data = tiny_batch(512, 5);
    Trainer trainer(net, options_for(method).lr(5e-3));
    trainer.fit(data.inputs, data.targets, /*epochs=*/4, /*batch_size=*/32);
    EXPECT_EQ(trainer.global_step(), 4 * 16);
    auto fresh = make_tiny(99);
    restore(fresh, trainer.quantized_state());
    auto scope = trainer.quantizer()->quantized_evaluation();
    torch::NoGradGuard no_grad;
    const auto out = net->forward(data.inputs);
    EXPECT_TRUE(torch::equal(fresh->forward(data.inputs), out));
    EXPECT_GT(out.argmax(1).eq(data.targets).to(torch::kFloat64).mean().item<double>(), 0.6);
  }
}

TEST(Trainer, CheckpointResumesBitIdentically) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("diffq_trainer_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "ckpt.pt").string();
  for (const std::string method : {"diffq", "lsq", "quant-noise"}) {
    SCOPED_TRACE(method);
    auto steps = [&](Trainer& t, int from, int to) {
      for (int i = from; i < to; ++i) t.step(tiny_batch(16, 100 + uint64_t(i)));
    };
    auto a = make_tiny(1);
    Trainer ta(a, options_for(method).total_steps(6).schedule(Schedule::kCosine));
    steps(ta, 0, 3);
    ta.save_checkpoint(path, {{"note", "mid-run"}});
    steps(ta, 3, 6);

    // Other initial weights: the checkpoint replaces them. (Quant-Noise keeps
    // the ranges it measured on the initial weights until its next refresh:
    // a resumed run rebuilds its model from the same seed.)
    auto b = make_tiny(method == "quant-noise" ? 1 : 7);
    Trainer tb(b, options_for(method).total_steps(6).schedule(Schedule::kCosine));
    EXPECT_EQ(tb.load_checkpoint(path)["note"], "mid-run");
    EXPECT_EQ(tb.global_step(), 3);
    steps(tb, 3, 6);
    const auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
    const auto qa = ta.quantizer()->parameters(), qb = tb.quantizer()->parameters();
    for (size_t i = 0; i < qa.size(); ++i) EXPECT_TRUE(torch::equal(qa[i], qb[i])) << i;
  }
  std::filesystem::remove_all(dir);
}

TEST(Trainer, CosineScheduleAndErrors) {
  auto net = make_tiny(1);
  Trainer trainer(net, options_for("fp32").lr(0.1).total_steps(4).schedule(Schedule::kCosine));
  EXPECT_DOUBLE_EQ(trainer.learning_rate(), 0.1);
  trainer.step(tiny_batch(8, 1));
  trainer.step(tiny_batch(8, 2));
  EXPECT_NEAR(trainer.learning_rate(), 0.05, 1e-15);
  EXPECT_THROW((Trainer(make_tiny(1), options_for("nope"))), Error);
  EXPECT_THROW((Trainer(make_tiny(1), options_for("fp32").lr(0))), Error);
  EXPECT_THROW(parse_schedule("linear"), Error);
  auto nan_batch = tiny_batch(8, 3);
  nan_batch.inputs[0][0] = std::nan("");
  try {
    trainer.step(nan_batch);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
  }
}
