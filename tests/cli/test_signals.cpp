// Signals and blocking files: every subcommand answers SIGINT / SIGTERM
// (training at its next step, with a checkpoint; the others at once), a
// second signal exits at once, and FIFOs are refused without being read.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <sstream>

#include "diffq/train/trainer.h"
#include "test_util_cli.h"
#include "test_util_process.h"

using namespace cli_test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> tiny(const std::string& out, const std::string& epochs = "2") {
  return {"train", "--model", "cnn", "--width", "0.25", "--method", "diffq", "--epochs", epochs, "--batch-size", "32",
          "--data-dir", tiny_fashion(), "--out", out, "--progress", "none", "--min-size", "0.001"};
}

// Waits until the run of `child` holds its directory's lock (it is then in
// `run_training`, before its loop).
void wait_for_lock(const Child& child, const std::string& out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read_text(out + "/lock").find(std::to_string(child.pid)) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_NE(read_text(out + "/lock").find(std::to_string(child.pid)), std::string::npos);
}

// Non-empty lines of `text`.
int lines(const std::string& text) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.empty() ? 0 : 1;
  return n;
}

}  // namespace

// A FIFO (no writer) given to any command is refused at once, not waited on.
TEST(Signals, FifoIsRefusedWithoutBlocking) {
  const auto dir = temp_dir("fifo");
  const auto fifo = dir + "/f";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::vector<std::vector<std::string>> commands = {
      {"inspect", fifo},
      {"eval", fifo},
      {"compress", fifo, "--bits", "4", "-o", dir + "/x.diffq"},
      {"train", "--task", "kjv-lm", "--text", fifo, "--out", dir + "/run", "--progress", "none"}};
  int i = 0;
  for (const auto& args : commands) {
    auto child = spawn(args, dir, "c" + std::to_string(i++));
    const auto ended = wait_for(child, 20);
    EXPECT_TRUE(ended.ended) << args[0] << " blocked on a FIFO";
    EXPECT_EQ(ended.status, 1) << args[0];
    EXPECT_TRUE(contains(read_text(child.err_path), "not a regular file")) << read_text(child.err_path);
  }
}

// A stop requested before a run starts is not forgotten when its loop
// starts: the run stops after its first step (and the request is then spent).
TEST(Signals, StopRequestedBeforeTheLoopIsKept) {
  diffq::train::TrainConfig c;
  c.model.width = 0.25;
  c.method = "fp32";
  c.data.fashion_dir = tiny_fashion();
  c.epochs = 2;
  c.batch_size = 32;
  c.progress = "none";
  c.out_dir = temp_dir("stop_before") + "/run";
  diffq::train::request_stop();
  const auto stopped = diffq::train::run_training(c);
  EXPECT_TRUE(stopped.interrupted);
  c.resume = true;
  EXPECT_FALSE(diffq::train::run_training(c).interrupted);
}

// SIGINT once the run has started (before the training loop): the run
// stops after its first step with a checkpoint, prints one line (even with
// --progress none), exits 130; --resume then finishes it.
TEST(Signals, EarlyInterruptStopsTrainingWithACheckpoint) {
  const auto dir = temp_dir("sigint");
  auto child = spawn(tiny(dir + "/run", "3"), dir, "train");
  wait_for_lock(child, dir + "/run");
  ::kill(child.pid, SIGINT);
  const auto ended = wait_for(child, 300);
  const auto err = read_text(child.err_path);
  ASSERT_TRUE(ended.ended);
  EXPECT_FALSE(ended.signaled);
  EXPECT_EQ(ended.status, 130) << err;
  EXPECT_EQ(lines(err), 1) << err;
  EXPECT_TRUE(contains(err, "interrupted")) << err;
  EXPECT_TRUE(fs::exists(dir + "/run/checkpoint.pt"));
  EXPECT_FALSE(fs::exists(dir + "/run/metrics.json"));
  auto resume = tiny(dir + "/run", "3");
  resume.push_back("--resume");
  const auto r = run(resume);
  EXPECT_EQ(r.status, 0) << r.err;
}

// A second signal exits at once.
TEST(Signals, SecondInterruptExitsAtOnce) {
  const auto dir = temp_dir("sigint2");
  auto child = spawn(tiny(dir + "/run", "50"), dir, "train");
  wait_for_lock(child, dir + "/run");
  ::kill(child.pid, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(child.pid, SIGINT);
  const auto ended = wait_for(child, 30);
  EXPECT_TRUE(ended.ended);
  EXPECT_EQ(ended.status, 130);
  EXPECT_TRUE(contains(read_text(child.err_path), "exiting at once")) << read_text(child.err_path);
}

// SIGTERM to a command without safe points (eval) ends it at once.
TEST(Signals, TerminateEndsEvaluation) {
  const auto dir = temp_dir("sigterm");
  ASSERT_EQ(run(tiny(dir + "/run", "1")).status, 0);
  auto child = spawn({"eval", dir + "/run/model.diffq", "--data-dir", tiny_fashion()}, dir, "eval");
  ASSERT_TRUE(wait_for_handler(child.pid, SIGTERM, 30));
  ::kill(child.pid, SIGTERM);
  const auto ended = wait_for(child, 30);
  EXPECT_TRUE(ended.ended);
  EXPECT_FALSE(ended.signaled);
  EXPECT_EQ(ended.status, 128 + SIGTERM) << read_text(child.err_path);
  EXPECT_TRUE(contains(read_text(child.err_path), "interrupted"));
}

// --threads is bounded: an absurd count is refused before any thread starts.
TEST(Signals, ThreadCountIsBounded) {
  const auto dir = temp_dir("threads");
  auto args = tiny(dir + "/run", "1");
  args.insert(args.end(), {"--threads", "100000"});
  const auto r = run(args);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "--threads must be between 1 and 256")) << r.err;
  const auto e = run({"eval", dir + "/none.diffq", "--threads", "0"});
  EXPECT_TRUE(contains(e.err, "--threads must be between 1 and 256")) << e.err;
}
