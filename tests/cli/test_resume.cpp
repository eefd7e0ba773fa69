// Resume: a run interrupted (as if killed) and resumed ends exactly like the
// uninterrupted run (fixed seed, one thread).
#include <map>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "diffq/format.h"
#include "diffq/error.h"
#include "diffq/train/trainer.h"
#include "test_util_cli.h"

using namespace diffq;
namespace fs = std::filesystem;

namespace {

train::TrainConfig tiny(const std::string& method, const std::string& out, const std::string& model = "cnn") {
  train::TrainConfig c;
  c.model.task = "fashion-mnist";
  c.model.name = model;
  c.model.width = model == "cnn" ? 0.25 : 0.5;
  c.method = method;
  c.method_options.bits = 3;
  // One-shot: every conv and linear weight (the last one is the classifier).
  c.method_options.min_size = model == "cnn" ? 0.001 : 0.0;
  c.method_options.group_size = 8;
  c.method_options.penalty = 20;
  c.data.fashion_dir = cli_test::tiny_fashion();
  c.epochs = 2;
  c.batch_size = 32;  // 8 steps per epoch
  c.augment = true;
  c.seed = 7;
  c.checkpoint_every = 3;
  c.out_dir = out;
  c.progress = "none";
  c.coding = "none";
  return c;
}

void expect_same_state(const QuantizedState& a, const QuantizedState& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& x = a.tensors[i];
    const auto& y = b.tensors[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.values_f32, y.values_f32) << x.name;
    EXPECT_EQ(x.levels, y.levels) << x.name;
    EXPECT_EQ(x.group_bits, y.group_bits) << x.name;
    EXPECT_EQ(x.min, y.min) << x.name;
    EXPECT_EQ(x.max, y.max) << x.name;
    EXPECT_EQ(x.step, y.step) << x.name;
  }
}

std::vector<nlohmann::json> log_without_time(const std::string& dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(dir + "/log.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    j.erase("train_seconds");
    lines.push_back(j);
  }
  return lines;
}

void check_resume(const std::string& method, std::vector<int64_t> stops, const std::string& model = "cnn",
                  const std::map<std::string, std::string>& extra = {}) {
  const auto base = cli_test::temp_dir("resume_" + method);
  auto full_cfg = tiny(method, base + "/full", model);
  full_cfg.method_options.extra = extra;
  const auto full = train::run_training(full_cfg);
  ASSERT_FALSE(full.interrupted);
  auto cfg = tiny(method, base + "/cut", model);
  cfg.method_options.extra = extra;
  for (auto stop : stops) {
    cfg.stop_after_step = stop;
    auto r = train::run_training(cfg);
    ASSERT_TRUE(r.interrupted) << "stop " << stop;
    EXPECT_TRUE(fs::exists(base + "/cut/checkpoint.pt"));
    cfg.resume = true;
  }
  cfg.stop_after_step = 0;
  const auto resumed = train::run_training(cfg);
  ASSERT_FALSE(resumed.interrupted);
  expect_same_state(full.state, resumed.state);
  EXPECT_EQ(full.metrics["accuracy"], resumed.metrics["accuracy"]);
  EXPECT_EQ(full.metrics["mean_bits"], resumed.metrics["mean_bits"]);
  EXPECT_EQ(full.metrics["steps"], resumed.metrics["steps"]);
  EXPECT_EQ(log_without_time(base + "/full"), log_without_time(base + "/cut"));
  EXPECT_FALSE(fs::exists(base + "/cut/checkpoint.pt"));
  for (const auto& e : fs::directory_iterator(base + "/cut"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

}  // namespace

// Killed mid-epoch (step 5: last checkpoint at step 3, two steps replayed).
TEST(Resume, DiffQMidEpochEqualsUninterrupted) { check_resume("diffq", {5}); }

// Killed twice: in the second epoch, then again right after resuming.
TEST(Resume, DiffQTwiceEqualsUninterrupted) { check_resume("diffq", {10, 11}); }

// Killed at an epoch boundary (step 8 = end of epoch 1).
TEST(Resume, LsqAtEpochBoundaryEqualsUninterrupted) { check_resume("lsq", {8}); }

TEST(Resume, QatEqualsUninterrupted) { check_resume("qat", {4}); }

// One-shot: random paths, the scheduler's candidates (it runs at steps on
// both sides of the cut with 1-step "epochs"), weight and activation steps,
// switchable BatchNorm, all optimizer states.
TEST(Resume, OneShotEqualsUninterrupted) {
  check_resume("oneshot", {5, 11}, "oneshot-resnet", {{"steps_per_epoch", "1"}, {"paths", "2"}});
}

TEST(Resume, RefusesCheckpointOfAnotherConfiguration) {
  const auto dir = cli_test::temp_dir("resume_other");
  auto cfg = tiny("diffq", dir);
  cfg.stop_after_step = 4;
  ASSERT_TRUE(train::run_training(cfg).interrupted);
  cfg.stop_after_step = 0;
  cfg.resume = true;
  cfg.method_options.penalty = 1;
  try {
    train::run_training(cfg);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(cli_test::contains(e.what(), "penalty")) << e.what();
  }
  // Without --resume, an unfinished run is not silently replaced.
  cfg.resume = false;
  cfg.method_options.penalty = 20;
  EXPECT_THROW(train::run_training(cfg), Error);
  cfg.overwrite = true;
  EXPECT_FALSE(train::run_training(cfg).interrupted);
}
