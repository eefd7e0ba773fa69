// The one-shot method in the training library: the step of 1 + K passes,
// its equivalence with one pass when K = 0, clipping by value, the bit-width
// scheduler's quota, determinism and learning.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <unistd.h>

#include <torch/torch.h>

#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/oneshot/resnet.h"
#include "diffq/oneshot/schedule.h"
#include "diffq/train/oneshot_step.h"
#include "diffq/train/trainer.h"

using namespace diffq;
using namespace diffq::train;

namespace {

std::shared_ptr<models::Model> small_net(uint64_t seed) {
  torch::manual_seed(seed);
  return oneshot::make_oneshot_resnet(oneshot::OneShotResNetOptions().channels({4, 8, 8}).blocks(1).candidates({2, 3, 4}));
}

// 12x12 images whose class is the quadrant with the largest mean (4 classes).
Batch quadrant_batch(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 1, 12, 12});
  auto q = x.view({n, 1, 2, 6, 2, 6}).mean({1, 3, 5}).reshape({n, 4});
  return {x, q.argmax(1)};
}

TrainerOptions oneshot_options(std::map<std::string, std::string> extra = {}) {
  MethodOptions m;
  m.extra = std::move(extra);
  return TrainerOptions().method("oneshot").method_options(m).seed(5).lr(3e-3).schedule(Schedule::kConstant);
}

oneshot::OneShotQuantizer& quantizer_of(Trainer& t) { return dynamic_cast<oneshot::OneShotQuantizer&>(*t.quantizer()); }

std::vector<torch::Tensor> gradients(const Trainer& t) {
  std::vector<torch::Tensor> out;
  for (const auto& p : t.parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}

void zero_gradients(Trainer& t) {
  for (const auto& p : t.parameters())
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

}  // namespace

TEST(OneShotTraining, WithoutRandomPathsTheStepIsOnePassOfTheMaxPath) {
  auto net = small_net(1);
  Trainer trainer(net, oneshot_options());
  auto batch = quadrant_batch(16, 2);
  net->train();
  OneShotStep step(OneShotStepOptions().random_paths(0).clip_value(0).scheduler(false));
  zero_gradients(trainer);
  step.compute_gradients(trainer, batch);
  auto a = gradients(trainer);
  zero_gradients(trainer);
  quantizer_of(trainer).set_config(quantizer_of(trainer).max_config());
  SinglePassStep().compute_gradients(trainer, batch);
  auto b = gradients(trainer);
  ASSERT_EQ(a.size(), b.size());
  size_t compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << i;
    if (!a[i].defined()) continue;
    EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
    ++compared;
  }
  EXPECT_GT(compared, 20u);
}

TEST(OneShotTraining, RandomPathsAddGradientAndClippingAfterTheHooksBoundsEveryElement) {
  auto net = small_net(1);
  Trainer trainer(net, oneshot_options());
  auto batch = quadrant_batch(16, 2);
  net->train();
  OneShotStep one(OneShotStepOptions().random_paths(0).clip_value(0).scheduler(false));
  zero_gradients(trainer);
  one.compute_gradients(trainer, batch);
  auto max_only = gradients(trainer);
  OneShotStep four(OneShotStepOptions().random_paths(3).clip_value(1e-4).scheduler(false));
  zero_gradients(trainer);
  four.compute_gradients(trainer, batch);
  auto unclipped = gradients(trainer);
  // Clipping waits for the gradient of the whole batch (after the
  // data-parallel hooks): compute_gradients leaves it alone.
  double largest_unclipped = 0;
  for (const auto& g : unclipped)
    if (g.defined()) largest_unclipped = std::max(largest_unclipped, g.abs().max().item<double>());
  EXPECT_GT(largest_unclipped, 1e-4);
  four.finish_gradients(trainer);
  auto clipped = gradients(trainer);
  double largest = 0;
  bool differs = false;
  for (size_t i = 0; i < clipped.size(); ++i) {
    if (!clipped[i].defined()) continue;
    largest = std::max(largest, clipped[i].abs().max().item<double>());
    differs = differs || !torch::equal(clipped[i], max_only[i].clamp(-1e-4, 1e-4));
  }
  EXPECT_LE(largest, 1e-4 + 1e-12);
  EXPECT_NEAR(largest, 1e-4, 1e-9);  // something was clipped
  EXPECT_TRUE(differs);              // the random paths contributed
  // The step leaves the max path configured.
  EXPECT_EQ(quantizer_of(trainer).config(), quantizer_of(trainer).max_config());
}

TEST(OneShotTraining, SchedulerDropsTheLowestCandidateOfTheMostTurbulentLayers) {
  auto net = small_net(3);
  Trainer trainer(net, oneshot_options());
  auto& q = quantizer_of(trainer);
  OneShotStep step(OneShotStepOptions().steps_per_epoch(1));
  const int64_t total = 40;
  const auto plan = oneshot::SchedulePlan::for_budget(total, 1);
  ASSERT_GT(plan.warmup_steps, 0);
  EXPECT_FALSE(step.schedule(trainer, 0, total));  // warm-up
  const auto turbulence = q.turbulence();
  const int64_t first = plan.warmup_steps;
  ASSERT_TRUE(plan.due(first));
  ASSERT_TRUE(step.schedule(trainer, first, total));
  const auto searchable = q.searchable_layers();
  const auto quota =
      static_cast<size_t>(std::floor(oneshot::shrink_ratio(double(first) / total) * double(searchable.size())));
  ASSERT_GT(quota, 0u);
  std::vector<size_t> dropped;
  for (size_t i : searchable) {
    if (q.weight_candidates(i).front() != 2) dropped.push_back(i);
    EXPECT_EQ(q.weight_candidates(i).back(), 4) << i;
  }
  ASSERT_EQ(dropped.size(), quota);
  double lowest_dropped = 1e9, highest_kept = -1;
  for (size_t i : searchable) {
    const bool was_dropped = std::count(dropped.begin(), dropped.end(), i) > 0;
    if (was_dropped) lowest_dropped = std::min(lowest_dropped, turbulence[i]);
    else highest_kept = std::max(highest_kept, turbulence[i]);
  }
  EXPECT_GE(lowest_dropped, highest_kept);
  // It runs exactly at the plan's steps.
  for (int64_t s = first + 1; s < total; ++s) EXPECT_EQ(step.schedule(trainer, s, total), plan.due(s)) << s;
  // Scheduler off: never.
  OneShotStep off(OneShotStepOptions().steps_per_epoch(1).scheduler(false));
  for (int64_t s = 0; s < total; ++s) EXPECT_FALSE(off.schedule(trainer, s, total));
}

TEST(OneShotTraining, TrainingIsDeterministicAndLearns) {
  torch::set_num_threads(1);
  auto run = [](int steps, std::vector<double>* losses) {
    auto net = small_net(7);
    Trainer trainer(net, oneshot_options({{"steps_per_epoch", "4"}}));
    for (int s = 0; s < steps; ++s) {
      auto r = trainer.step(quadrant_batch(32, 100 + s % 8));
      if (losses) losses->push_back(r.loss.item<double>());
    }
    std::vector<torch::Tensor> params;
    for (const auto& p : trainer.parameters()) params.push_back(p.detach().clone());
    return params;
  };
  std::vector<double> losses;
  auto a = run(40, &losses);
  auto b = run(40, nullptr);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  double first = 0, last = 0;
  for (int i = 0; i < 8; ++i) {
    first += losses[i] / 8;
    last += losses[losses.size() - 1 - i] / 8;
  }
  EXPECT_LT(last, 0.8 * first) << first << " -> " << last;
}

TEST(OneShotTraining, CheckpointResumesBitIdentically) {
  torch::set_num_threads(1);
  const auto path = ::testing::TempDir() + "/oneshot_resume_" + std::to_string(::getpid()) + ".pt";
  auto make = [] {
    auto net = small_net(11);
    return std::make_pair(net, std::make_unique<Trainer>(net, oneshot_options({{"steps_per_epoch", "1"}}).total_steps(6)));
  };
  auto [net_a, a] = make();
  for (int s = 0; s < 6; ++s) a->step(quadrant_batch(16, 50 + s));
  auto [net_b, b] = make();
  for (int s = 0; s < 3; ++s) b->step(quadrant_batch(16, 50 + s));
  nlohmann::json candidates = nlohmann::json::array();
  auto& qb = quantizer_of(*b);
  for (size_t i = 0; i < qb.layers().size(); ++i) candidates.push_back(qb.weight_candidates(i));
  b->save_checkpoint(path, {{"candidates", candidates}});
  auto [net_c, c] = make();
  const auto extra = c->load_checkpoint(path);
  auto& qc = quantizer_of(*c);
  for (size_t i = 0; i < qc.layers().size(); ++i)
    qc.set_weight_candidates(i, extra["candidates"][i].get<std::vector<int>>());
  for (int s = 3; s < 6; ++s) c->step(quadrant_batch(16, 50 + s));
  const auto pa = a->parameters(), pc = c->parameters();
  ASSERT_EQ(pa.size(), pc.size());
  auto names = net_a->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::equal(pa[i], pc[i])) << i << " " << (i < names.size() ? names[i].key() : "own")
                                            << " max diff " << (pa[i] - pc[i]).abs().max().item<double>();
  auto ba = net_a->named_buffers(), bc = net_c->named_buffers();
  for (const auto& item : ba) EXPECT_TRUE(torch::equal(item.value(), bc[item.key()])) << item.key();
  std::remove(path.c_str());
}
