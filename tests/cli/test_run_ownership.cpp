// A run directory belongs to one process (lock), temporaries of killed runs
// are cleaned, and a finished run is only "resumed" with its own configuration.
#include <gtest/gtest.h>

#include <filesystem>

#include "diffq/format.h"
#include "test_util_cli.h"
#include "test_util_process.h"

using namespace cli_test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> tiny(const std::string& out, const std::string& method, const std::string& epochs = "1") {
  return {"train", "--model", "cnn", "--width", "0.25", "--method", method, "--epochs", epochs, "--batch-size", "32",
          "--data-dir", tiny_fashion(), "--out", out, "--progress", "none"};
}

// A pid that no process has (a child that already exited and was reaped).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

}  // namespace

// Two runs into one --out: the second fails fast naming the first's pid;
// the first's outputs are intact and consistent (all of the DiffQ run).
TEST(RunOwnership, SecondRunIntoTheSameDirectoryIsRefused) {
  const auto dir = temp_dir("lock");
  const auto out = dir + "/run";
  auto first = spawn(tiny(out, "diffq", "40"), dir, "first");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read_text(out + "/lock").find(std::to_string(first.pid)) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_NE(read_text(out + "/lock").find(std::to_string(first.pid)), std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  const auto second = run(tiny(out, "fp32"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(::kill(first.pid, 0), 0) << "the first run ended too soon for the test";
  EXPECT_EQ(second.status, 1);
  EXPECT_TRUE(contains(second.err, "in use by another diffq run (pid " + std::to_string(first.pid) + ")"))
      << second.err;
  EXPECT_LT(seconds, 10.0);
  const auto ended = wait_for(first, 600);
  ASSERT_TRUE(ended.ended);
  ASSERT_EQ(ended.status, 0) << read_text(first.err_path);
  std::ifstream in(out + "/metrics.json");
  const auto metrics = nlohmann::json::parse(in);
  EXPECT_EQ(metrics["method"], "diffq");
  const auto state = diffq::load(out + "/model.diffq");
  EXPECT_EQ(state.options.at("run.method"), "diffq");
  std::ifstream log(out + "/log.jsonl");
  int lines = 0;
  for (std::string line; std::getline(log, line);) ++lines;
  EXPECT_EQ(lines, 40);
  // Released at the end: a new run is refused as finished, no longer as locked.
  const auto after = run(tiny(out, "diffq", "40"));
  EXPECT_TRUE(contains(after.err, "holds a finished run")) << after.err;
}

// Temporaries `<file>.tmp.<pid>` of dead processes go at start; those of
// live ones stay.
TEST(RunOwnership, TemporariesOfKilledRunsAreRemoved) {
  const auto out = temp_dir("stale") + "/run";
  fs::create_directories(out);
  const std::string dead = std::to_string(dead_pid()), alive = std::to_string(::getppid());
  for (const auto& name : {"checkpoint.pt.tmp." + dead, "log.jsonl.tmp." + dead, "metrics.json.tmp." + alive})
    write_bytes(out + "/" + name, {1, 2, 3});
  const auto r = run(tiny(out, "fp32"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(out + "/checkpoint.pt.tmp." + dead));
  EXPECT_FALSE(fs::exists(out + "/log.jsonl.tmp." + dead));
  EXPECT_TRUE(fs::exists(out + "/metrics.json.tmp." + alive));
}

// --resume of a finished run: its own configuration prints its metrics; a
// different one is refused with the differences.
TEST(RunOwnership, ResumingAFinishedRunChecksItsConfiguration) {
  const auto out = temp_dir("finished") + "/run";
  ASSERT_EQ(run(tiny(out, "fp32")).status, 0);
  auto same = tiny(out, "fp32");
  same.push_back("--resume");
  EXPECT_EQ(run(same).status, 0);
  auto other = tiny(out, "qat");
  other.insert(other.end(), {"--bits", "4", "--resume"});
  const auto r = run(other);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "finished run of a different configuration")) << r.err;
  EXPECT_TRUE(contains(r.err, "method (finished run \"fp32\", now \"qat\")")) << r.err;
}
