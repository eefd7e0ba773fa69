// DiffQ's target-size mode and frozen-bits phase: the Lagrange multiplier's
// controller, the shift of the bits onto a target, training on the true
// quantized weights with the bits frozen, and the Trainer ending at the size
// asked for (also across a checkpoint).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/train/size_target.h"
#include "diffq/train/trainer.h"
#include "tiny_net.h"

using namespace diffq;
using namespace diffq::train;
using namespace train_test;

namespace {

MethodOptions diffq_options() {
  MethodOptions m;
  m.min_size = 0;  // every tensor quantized
  m.group_size = 4;
  m.bits_lr = 0.05;
  return m;
}

// Randomised logits, so that groups differ.
void scatter_logits(DiffQuantizer& q, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& l : q.parameters()) l.copy_(torch::randn_like(l) * 2);
}

}  // namespace

TEST(SizeController, ReferenceMovesLinearlyThenHolds) {
  SizeController c(/*start=*/8, /*target=*/2, /*warmup=*/6, /*rate=*/0.1, /*lambda=*/1);
  EXPECT_DOUBLE_EQ(c.reference(0), 8);
  EXPECT_DOUBLE_EQ(c.reference(3), 5);
  EXPECT_DOUBLE_EQ(c.reference(6), 2);
  EXPECT_DOUBLE_EQ(c.reference(100), 2);
  SizeController at_once(8, 2, 0, 0.1, 1);
  EXPECT_DOUBLE_EQ(at_once.reference(0), 2);
}

TEST(SizeController, DualAscentInLogSpaceWithClampedExcess) {
  SizeController c(4, 2, 0, 0.1, 1);
  EXPECT_DOUBLE_EQ(c.update(0, 3), std::exp(0.1 * 0.5));                    // 50 % over: λ grows
  EXPECT_DOUBLE_EQ(c.update(1, 2), std::exp(0.1 * 0.5));                    // on target: unchanged
  EXPECT_DOUBLE_EQ(c.update(2, 1), std::exp(0.1 * 0.5) * std::exp(-0.05));  // 50 % under: shrinks
  SizeController big(4, 2, 0, 0.1, 1);
  EXPECT_DOUBLE_EQ(big.update(0, 100), std::exp(0.1));  // excess clamped to 1
  SizeController top(4, 2, 0, 10, SizeController::kMaxLambda);
  EXPECT_DOUBLE_EQ(top.update(0, 4), SizeController::kMaxLambda);
  EXPECT_THROW(SizeController(4, 0, 0, 0.1, 1), Error);
  EXPECT_THROW(SizeController(4, 2, 0, 0, 1), Error);
  EXPECT_THROW(c.update(3, std::nan("")), Error);
}

// A plant like the bits under Adam: the measure moves at most `speed` per
// step towards the equilibrium size that λ sets.
TEST(SizeController, SettlesASlowPlantWithinTwoPercent) {
  const double start = 8, target = 3, speed = 0.02;
  SizeController c(start, target, /*warmup=*/300, /*rate=*/0.05, /*lambda=*/1);
  double m = start;
  for (int64_t step = 0; step < 1500; ++step) {
    const double equilibrium = 2 + 10 / (1 + c.lambda());
    m += std::clamp(equilibrium - m, -speed, speed);
    c.update(step, m);
  }
  EXPECT_NEAR(m / target, 1.0, 0.02);
}

TEST(DiffQShift, LandsOnTheTargetFromBelowAndKeepsTheRanking) {
  auto net = make_tiny(1);
  DiffQuantizer q(*net, DiffQOptions().group_size(4).discovery(DiscoveryOptions().min_size(0)));
  scatter_logits(q, 2);
  const auto before = q.bits("fc1.weight");
  const double floor_mib = [&] {
    // Every group at min_bits.
    auto other = make_tiny(1);
    DiffQuantizer probe(*other, DiffQOptions().group_size(4).init_bits(2.0001).discovery(DiscoveryOptions().min_size(0)));
    return probe.true_model_size();
  }();
  for (const double target : {floor_mib * 1.3, floor_mib * 2.0, floor_mib * 3.5}) {
    q.shift_bits_to(target, DiffQuantizer::Measure::kTrueSizeMiB);
    EXPECT_LE(q.true_model_size(), target);
    EXPECT_GE(q.true_model_size(), 0.98 * target) << "target " << target;
  }
  // A shift of the logits keeps the order of the groups' bits.
  const auto after = q.bits("fc1.weight");
  const auto order_before = before.argsort(), order_after = after.argsort();
  const auto sorted_after = after.index_select(0, order_before);
  EXPECT_TRUE((sorted_after.slice(0, 1) >= sorted_after.slice(0, 0, -1)).all().item<bool>());
  q.shift_bits_to(3.0, DiffQuantizer::Measure::kMeanBits);
  EXPECT_LE(q.mean_bits(), 3.0);
  EXPECT_GE(q.mean_bits(), 2.94);
  try {
    q.shift_bits_to(floor_mib * 0.9, DiffQuantizer::Measure::kTrueSizeMiB);
    FAIL() << "a target below every group at min_bits was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below what every group at min_bits gives"), std::string::npos);
  }
}

TEST(DiffQFrozen, TrainsOnTheTrueQuantizedWeightsStraightThrough) {
  auto net = make_tiny(3);
  DiffQuantizer q(*net, DiffQOptions().group_size(4).discovery(DiscoveryOptions().min_size(0)));
  scatter_logits(q, 4);
  q.freeze_bits();
  EXPECT_TRUE(q.bits_frozen());
  const auto size = q.model_size();
  EXPECT_FALSE(size.requires_grad());
  EXPECT_DOUBLE_EQ(size.item<double>(), q.true_model_size());
  auto batch = tiny_batch(8, 5);
  // The reference: a copy of the network holding the true quantized weights.
  auto copy = make_tiny(3);
  {
    auto scope = q.quantized_evaluation();
    torch::NoGradGuard no_grad;
    copy->fc1->weight.copy_(net->fc1->weight);
    copy->fc1->bias.copy_(net->fc1->bias);
    copy->fc2->weight.copy_(net->fc2->weight);
    copy->fc2->bias.copy_(net->fc2->bias);
  }
  auto reference = torch::cross_entropy_loss(copy->forward(batch.inputs), batch.targets);
  reference.backward();
  const auto latent = net->fc1->weight.detach().clone();
  for (int repeat = 0; repeat < 2; ++repeat) {  // the second step reuses the buffers
    net->zero_grad();
    for (auto& l : q.parameters()) l.mutable_grad() = torch::Tensor();
    auto step = q.training_step();
    auto loss = torch::cross_entropy_loss(net->forward(batch.inputs), batch.targets) + q.model_size();
    loss.backward();
    step.finish();
    EXPECT_TRUE(torch::equal(net->fc1->weight.detach(), latent)) << "the latent weights were not put back";
    EXPECT_NEAR(loss.item<double>() - q.true_model_size(), reference.item<double>(), 1e-6);
    // Straight-through: the latent weights get the gradient of the quantized ones.
    EXPECT_TRUE(torch::allclose(net->fc1->weight.grad(), copy->fc1->weight.grad(), 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(net->fc2->weight.grad(), copy->fc2->weight.grad(), 1e-6, 1e-7));
    for (const auto& l : q.parameters()) EXPECT_FALSE(l.grad().defined()) << "a frozen logit got a gradient";
  }
}

TEST(DiffQFrozen, FrozenFractionFreezesTheLogitsNotTheWeights) {
  auto net = make_tiny(6);
  Trainer trainer(net, TrainerOptions().method("diffq").method_options([] {
    auto m = diffq_options();
    m.frozen_fraction = 0.5;
    return m;
  }()).total_steps(20).seed(1));
  EXPECT_EQ(trainer.freeze_step(), 10);
  std::vector<torch::Tensor> logits_at_freeze;
  torch::Tensor weights_at_freeze;
  for (int i = 0; i < 20; ++i) {
    if (i == 10) {
      for (const auto& l : trainer.quantizer()->parameters()) logits_at_freeze.push_back(l.detach().clone());
      weights_at_freeze = net->fc1->weight.detach().clone();
    }
    trainer.step(tiny_batch(16, 100 + i));
  }
  const auto logits = trainer.quantizer()->parameters();
  for (size_t i = 0; i < logits.size(); ++i) EXPECT_TRUE(torch::equal(logits[i], logits_at_freeze[i]));
  EXPECT_FALSE(torch::equal(net->fc1->weight.detach(), weights_at_freeze));
}

namespace {

// Trains the net for `steps` steps with a target; returns the trainer's
// final measure (true size or mean bits).
struct TargetRun {
  double true_mib, mean_bits, lambda;
};

TargetRun train_to(const MethodOptions& m, int64_t steps) {
  auto net = make_tiny(7);
  Trainer trainer(net, TrainerOptions().method("diffq").method_options(m).total_steps(steps).seed(2));
  for (int64_t i = 0; i < steps; ++i) trainer.step(tiny_batch(32, 1000 + i));
  auto* d = dynamic_cast<DiffQuantizer*>(trainer.quantizer());
  EXPECT_TRUE(d->bits_frozen()) << "the bits are frozen after the last step in target mode";
  return {d->true_model_size(), d->mean_bits(), trainer.size_penalty()};
}

}  // namespace

TEST(TrainerTarget, EndsAtTheMeanBitsAskedFor) {
  for (const double bits : {3.0, 4.0}) {
    auto m = diffq_options();
    m.target_bits = bits;
    const auto run = train_to(m, 300);
    EXPECT_LE(run.mean_bits, bits);
    EXPECT_GE(run.mean_bits, 0.98 * bits) << "target " << bits;
  }
}

TEST(TrainerTarget, EndsAtTheSizeAskedForAndTheControllerGetsThereAlone) {
  // Without the final shift (frozen_fraction 0 shifts after the last step),
  // the controller alone must already be near the target.
  auto m = diffq_options();
  m.frozen_fraction = 0;
  auto net = make_tiny(7);
  DiffQuantizer probe(*net, DiffQOptions().group_size(4).init_bits(3).discovery(DiscoveryOptions().min_size(0)));
  m.target_mib = probe.true_model_size();
  auto net2 = make_tiny(7);
  const int64_t steps = 300;
  Trainer trainer(net2, TrainerOptions().method("diffq").method_options(m).total_steps(steps).seed(2));
  auto* d = dynamic_cast<DiffQuantizer*>(trainer.quantizer());
  for (int64_t i = 0; i + 1 < steps; ++i) trainer.step(tiny_batch(32, 1000 + i));
  EXPECT_NEAR(d->model_size().item<double>() / m.target_mib, 1.0, 0.05) << "the controller alone";
  EXPECT_NE(trainer.size_penalty(), m.penalty) << "λ never moved";
  trainer.step(tiny_batch(32, 1000 + steps - 1));
  EXPECT_TRUE(d->bits_frozen());
  EXPECT_LE(d->true_model_size(), m.target_mib);
  EXPECT_GE(d->true_model_size(), 0.98 * m.target_mib);
}

TEST(TrainerTarget, CheckpointAcrossTheFreezeResumesBitIdentically) {
  auto m = diffq_options();
  m.target_bits = 3;
  m.frozen_fraction = 0.4;
  const int64_t steps = 40;
  const auto options = TrainerOptions().method("diffq").method_options(m).total_steps(steps).seed(5);
  auto a = make_tiny(8);
  Trainer whole(a, options);
  for (int64_t i = 0; i < steps; ++i) whole.step(tiny_batch(16, 50 + i));
  const std::string path = testing::TempDir() + "target_ckpt_" + std::to_string(getpid()) + ".pt";
  for (const int64_t cut : {int64_t(10), int64_t(24), int64_t(30)}) {  // before, at and after the freeze (24)
    auto b = make_tiny(8);
    Trainer first(b, options);
    for (int64_t i = 0; i < cut; ++i) first.step(tiny_batch(16, 50 + i));
    first.save_checkpoint(path, {});
    auto c = make_tiny(8);
    Trainer second(c, options);
    second.load_checkpoint(path);
    for (int64_t i = cut; i < steps; ++i) second.step(tiny_batch(16, 50 + i));
    EXPECT_EQ(second.size_penalty(), whole.size_penalty()) << "cut at " << cut;
    EXPECT_TRUE(torch::equal(c->fc1->weight, a->fc1->weight)) << "cut at " << cut;
    const auto la = whole.quantizer()->parameters(), lc = second.quantizer()->parameters();
    for (size_t i = 0; i < la.size(); ++i) EXPECT_TRUE(torch::equal(la[i], lc[i])) << "cut at " << cut;
  }
  std::filesystem::remove(path);
}

TEST(TrainerTarget, DefaultFreezesTheLastHalfWithATargetOnly) {
  auto m = diffq_options();
  EXPECT_EQ(m.effective_frozen_fraction(), 0.0);
  EXPECT_EQ(Trainer(make_tiny(1), TrainerOptions().method("diffq").method_options(m).total_steps(100)).freeze_step(),
            -1);
  m.target_bits = 3;
  EXPECT_EQ(m.effective_frozen_fraction(), kTargetFrozenFraction);
  EXPECT_EQ(kTargetFrozenFraction, 0.5);
  EXPECT_EQ(Trainer(make_tiny(1), TrainerOptions().method("diffq").method_options(m).total_steps(100)).freeze_step(),
            50);
  m.frozen_fraction = 0;
  EXPECT_EQ(Trainer(make_tiny(1), TrainerOptions().method("diffq").method_options(m).total_steps(100)).freeze_step(),
            100);  // the shift after the last step
}

TEST(TrainerTarget, RefusedWhereItCannotApply) {
  auto m = diffq_options();
  m.target_bits = 3;
  EXPECT_THROW(Trainer(make_tiny(1), TrainerOptions().method("qat").method_options(m)), Error);
  m.target_mib = 0.01;
  EXPECT_THROW(check_method_options(find_method("diffq"), m), Error);  // both targets
  m.target_mib = 0;
  m.target_bits = 1;
  EXPECT_THROW(check_method_options(find_method("diffq"), m), Error);  // below min_bits
  m.target_bits = 3;
  m.frozen_fraction = 1;
  EXPECT_THROW(check_method_options(find_method("diffq"), m), Error);
}

TEST(TrainerTarget, AnImpossibleTargetIsRefusedBeforeTraining) {
  auto m = diffq_options();
  m.target_mib = 1e-9;
  try {
    Trainer trainer(make_tiny(1), TrainerOptions().method("diffq").method_options(m));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below what every group at min_bits gives"), std::string::npos) << e.what();
  }
}
