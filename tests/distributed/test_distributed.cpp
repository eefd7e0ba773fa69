// Data-parallel training (c10d, Gloo, loopback): N processes with batch b
// train as one process with batch N·b; replicas stay identical; only rank
// 0 writes; a rank that dies or hangs ends the others within the timeout;
// a killed run resumes to the same model file.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/train/distributed.h"
#include "test_util_cli.h"

namespace fs = std::filesystem;
using cli_test::contains;

namespace {

// A port nobody listens on (the kernel's choice for an ephemeral bind).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Starts `program args...` with stderr to `log`; returns its pid.
pid_t start(const std::string& program, const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    std::freopen("/dev/null", "w", stdout);
    std::vector<char*> argv{const_cast<char*>(program.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for `pid`; its exit status (128 + signal when killed).
int finish(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A model file without its creation time: the header's tensor table and
// every payload byte (preamble: magic, version, header length, data offset,
// header checksum; docs/format.md).
std::string model_content(const std::string& path) {
  const std::string bytes = read_text(path);
  if (bytes.size() < 40) return "";
  uint64_t header = 0, data = 0;
  std::memcpy(&header, bytes.data() + 16, 8);
  std::memcpy(&data, bytes.data() + 24, 8);
  const auto json = nlohmann::json::parse(bytes.substr(40, header));
  return json.at("tensors").dump() + bytes.substr(data);
}

std::vector<torch::Tensor> load_tensors(const std::string& path) {
  std::vector<torch::Tensor> v;
  torch::load(v, path);
  return v;
}

// Trains `method` on `world` worker processes (batch 8 each) and on one
// process (batch 8·world); returns (max |difference| to the single
// process, max |difference| between replicas).
std::pair<double, double> compare_to_single_process(const std::string& method, int world) {
  const auto dir = cli_test::temp_dir("equiv_" + method + std::to_string(world));
  const std::string steps = "6";
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> ranks;
  for (int r = 0; r < world; ++r)
    ranks.push_back(start(DIFFQ_DIST_WORKER,
                          {method, std::to_string(r), std::to_string(world), port, steps, "8",
                           dir + "/rank" + std::to_string(r) + ".pt"},
                          dir + "/rank" + std::to_string(r) + ".log"));
  const pid_t single = start(DIFFQ_DIST_WORKER, {method, "0", "1", "0", steps, std::to_string(8 * world), dir + "/single.pt"},
                             dir + "/single.log");
  for (int r = 0; r < world; ++r)
    EXPECT_EQ(finish(ranks[size_t(r)]), 0) << read_text(dir + "/rank" + std::to_string(r) + ".log");
  EXPECT_EQ(finish(single), 0) << read_text(dir + "/single.log");
  const auto reference = load_tensors(dir + "/single.pt");
  const auto rank0 = load_tensors(dir + "/rank0.pt");
  double to_single = 0, between = 0;
  EXPECT_EQ(reference.size(), rank0.size());
  for (size_t i = 0; i < reference.size(); ++i)
    to_single = std::max(to_single, (reference[i] - rank0[i]).abs().max().item<double>());
  for (int r = 1; r < world; ++r) {
    const auto other = load_tensors(dir + "/rank" + std::to_string(r) + ".pt");
    for (size_t i = 0; i < rank0.size(); ++i)
      between = std::max(between, (other[i] - rank0[i]).abs().max().item<double>());
  }
  return {to_single, between};
}

class Equivalence : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Equivalence, MatchesOneProcessWithTheCombinedBatch) {
  const auto [method, world] = GetParam();
  const auto [to_single, between] = compare_to_single_process(method, world);
  EXPECT_LE(to_single, 1e-5) << method << " on " << world << " processes";
  EXPECT_EQ(between, 0.0) << "replicas differ";
}

INSTANTIATE_TEST_SUITE_P(Methods, Equivalence,
                         ::testing::Combine(::testing::Values("fp32", "qat", "lsq", "diffq", "quant-noise", "oneshot"),
                                            ::testing::Values(2, 3)),
                         [](const auto& info) {
                           std::string m = std::get<0>(info.param);
                           for (auto& ch : m)
                             if (ch == '-') ch = '_';
                           return m + "_" + std::to_string(std::get<1>(info.param));
                         });

TEST(Distributed, OptionsAreChecked) {
  using diffq::train::DistributedOptions;
  EXPECT_THROW(diffq::train::check_distributed_options(DistributedOptions().rank(2).world_size(2)), diffq::Error);
  EXPECT_THROW(diffq::train::check_distributed_options(DistributedOptions().master_port(70000)), diffq::Error);
  EXPECT_THROW(diffq::train::check_distributed_options(DistributedOptions().timeout_seconds(0)), diffq::Error);
  EXPECT_THROW(diffq::train::parse_master("10.0.0.1"), diffq::Error);
  EXPECT_THROW(diffq::train::parse_master("10.0.0.1:x"), diffq::Error);
  EXPECT_EQ(diffq::train::parse_master("10.0.0.1:1234"), std::make_pair(std::string("10.0.0.1"), 1234));
  EXPECT_EQ(diffq::train::parse_master("[::1]:80"), std::make_pair(std::string("::1"), 80));
  ::setenv("WORLD_SIZE", "3", 1);
  ::setenv("RANK", "2", 1);
  ::setenv("MASTER_PORT", "4242", 1);
  const auto o = diffq::train::distributed_options_from_environment();
  EXPECT_EQ(o.world_size(), 3);
  EXPECT_EQ(o.rank(), 2);
  EXPECT_EQ(o.master_port(), 4242);
  ::setenv("RANK", "two", 1);
  EXPECT_THROW(diffq::train::distributed_options_from_environment(), diffq::Error);
  for (auto v : {"WORLD_SIZE", "RANK", "MASTER_PORT"}) ::unsetenv(v);
}

// Waits until `path` exists (or `seconds` pass).
bool wait_for(const std::string& path, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(path)) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// The flags of a small CLI run on the synthetic data set.
std::vector<std::string> train_args(const std::string& out, int rank, int world, int port) {
  return {"train", "--data-dir", cli_test::tiny_fashion(512, 128), "--method", "diffq", "--epochs", "3",
          "--batch-size", "16", "--checkpoint-every", "2", "--progress", "plain", "--threads", "1",
          "--out", out, "--rank", std::to_string(rank), "--world-size", std::to_string(world),
          "--master", "127.0.0.1:" + std::to_string(port), "--dist-timeout", "8"};
}

TEST(DistributedCli, OnlyRankZeroWritesAndLaunchMatchesManualRanks) {
  const auto dir = cli_test::temp_dir("writes");
  const int port = free_port();
  const pid_t r0 = start(DIFFQ_TOOL, train_args(dir + "/r0", 0, 2, port), dir + "/r0.log");
  const pid_t r1 = start(DIFFQ_TOOL, train_args(dir + "/r1", 1, 2, port), dir + "/r1.log");
  ASSERT_EQ(finish(r0), 0) << read_text(dir + "/r0.log");
  ASSERT_EQ(finish(r1), 0) << read_text(dir + "/r1.log");
  EXPECT_TRUE(fs::exists(dir + "/r0/model.diffq"));
  EXPECT_TRUE(fs::exists(dir + "/r0/metrics.json"));
  EXPECT_FALSE(fs::exists(dir + "/r1")) << "rank 1 wrote files";
  const auto metrics = nlohmann::json::parse(read_text(dir + "/r0/metrics.json"));
  EXPECT_EQ(metrics.at("world_size"), 2);
  EXPECT_EQ(metrics.at("global_batch_size"), 32);
  EXPECT_GT(metrics.at("quantizer_gradient_bytes_per_step").get<double>(), 0);

  // `diffq launch` gives the same ranks the same work: the same file.
  auto args = train_args(dir + "/launched", 0, 1, port);
  args.resize(args.size() - 8);  // no --rank/--world-size/--master/--dist-timeout
  std::vector<std::string> launch{"launch", "--nproc", "2", "--"};
  launch.insert(launch.end(), args.begin(), args.end());
  ASSERT_EQ(finish(start(DIFFQ_TOOL, launch, dir + "/launch.log")), 0) << read_text(dir + "/launch.log");
  EXPECT_EQ(model_content(dir + "/launched/model.diffq"), model_content(dir + "/r0/model.diffq"));
}

TEST(DistributedCli, LaunchFailsWhenARankFails) {
  const auto dir = cli_test::temp_dir("launch_fail");
  // Rank 1 gets an unreadable data directory through its own environment:
  // not possible per rank, so make every rank fail on a bad option value.
  std::vector<std::string> launch{"launch", "--nproc", "2", "--", "train", "--data-dir", dir + "/none",
                                  "--out", dir + "/o", "--progress", "none"};
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(finish(start(DIFFQ_TOOL, launch, dir + "/launch.log")), 0);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60);
  EXPECT_TRUE(contains(read_text(dir + "/launch.log"), "exited with status")) << read_text(dir + "/launch.log");
  EXPECT_NE(finish(start(DIFFQ_TOOL, {"launch", "--nproc", "2", "--", "eval", "x"}, dir + "/l2.log")), 0);
}

// Starts two ranks of a run in `dir`/run, sends `signal` to rank 1 once the
// first checkpoint exists, and returns rank 0's exit status, the seconds it
// took to end after the signal, and its messages.
struct Fault {
  int status = 0;
  double seconds = 0;
  std::string log;
};

Fault fault_rank_one(const std::string& dir, int signal) {
  const int port = free_port();
  const pid_t r0 = start(DIFFQ_TOOL, train_args(dir + "/run", 0, 2, port), dir + "/r0.log");
  const pid_t r1 = start(DIFFQ_TOOL, train_args(dir + "/unused", 1, 2, port), dir + "/r1.log");
  Fault f;
  EXPECT_TRUE(wait_for(dir + "/run/checkpoint.pt", 120));
  ::kill(r1, signal);
  const auto t0 = std::chrono::steady_clock::now();
  f.status = finish(r0);
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(r1, SIGKILL);
  finish(r1);
  f.log = read_text(dir + "/r0.log");
  return f;
}

TEST(DistributedCli, KilledRankEndsTheOthersAndTheRunResumes) {
  const auto dir = cli_test::temp_dir("kill");
  const auto f = fault_rank_one(dir, SIGKILL);
  ASSERT_EQ(f.status, 1) << "rank 0 should fail once rank 1 is gone";
  EXPECT_LT(f.seconds, 8 + 10) << "rank 0 noticed the dead rank after " << f.seconds << " s";
  EXPECT_TRUE(contains(f.log, "distributed")) << f.log;
  EXPECT_FALSE(contains(f.log, "frame #")) << f.log;

  // A different world size is refused by name.
  auto single = train_args(dir + "/run", 0, 1, free_port());
  single.push_back("--resume");
  ASSERT_EQ(finish(start(DIFFQ_TOOL, single, dir + "/single.log")), 1);
  EXPECT_TRUE(contains(read_text(dir + "/single.log"), "written by 2 processes")) << read_text(dir + "/single.log");

  // The same world size resumes to the file of an uninterrupted run.
  const int port2 = free_port();
  auto a0 = train_args(dir + "/run", 0, 2, port2), a1 = train_args(dir + "/unused", 1, 2, port2);
  a0.push_back("--resume");
  a1.push_back("--resume");
  const pid_t s0 = start(DIFFQ_TOOL, a0, dir + "/s0.log"), s1 = start(DIFFQ_TOOL, a1, dir + "/s1.log");
  ASSERT_EQ(finish(s0), 0) << read_text(dir + "/s0.log");
  ASSERT_EQ(finish(s1), 0) << read_text(dir + "/s1.log");
  const int port3 = free_port();
  const pid_t u0 = start(DIFFQ_TOOL, train_args(dir + "/whole", 0, 2, port3), dir + "/u0.log");
  const pid_t u1 = start(DIFFQ_TOOL, train_args(dir + "/unused2", 1, 2, port3), dir + "/u1.log");
  ASSERT_EQ(finish(u0), 0);
  ASSERT_EQ(finish(u1), 0);
  EXPECT_EQ(model_content(dir + "/run/model.diffq"), model_content(dir + "/whole/model.diffq"));
}

TEST(DistributedCli, LaunchForwardsInterruptsAndTheRunResumes) {
  const auto dir = cli_test::temp_dir("interrupt");
  auto args = train_args(dir + "/run", 0, 1, 0);
  args.resize(args.size() - 8);
  args[6] = "8";  // --epochs: long enough to be interrupted
  std::vector<std::string> launch{"launch", "--nproc", "2", "--"};
  launch.insert(launch.end(), args.begin(), args.end());
  const pid_t l = start(DIFFQ_TOOL, launch, dir + "/launch.log");
  ASSERT_TRUE(wait_for(dir + "/run/checkpoint.pt", 120));
  ::kill(l, SIGINT);
  EXPECT_EQ(finish(l), 130) << read_text(dir + "/launch.log");
  const auto log = read_text(dir + "/launch.log");
  EXPECT_TRUE(contains(log, "stopped; resume with --resume")) << log;
  EXPECT_FALSE(contains(log, "exited with status")) << log;
  EXPECT_FALSE(fs::exists(dir + "/run/metrics.json"));
  launch.push_back("--resume");
  ASSERT_EQ(finish(start(DIFFQ_TOOL, launch, dir + "/resume.log")), 0) << read_text(dir + "/resume.log");
  EXPECT_TRUE(fs::exists(dir + "/run/metrics.json"));
}

TEST(DistributedCli, HungRankEndsTheOthersWithinTheTimeout) {
  const auto f = fault_rank_one(cli_test::temp_dir("hang"), SIGSTOP);
  ASSERT_EQ(f.status, 1) << "rank 0 should fail once rank 1 stops answering";
  EXPECT_LT(f.seconds, 8 + 10);
  EXPECT_TRUE(contains(f.log, "did not answer within 8 s")) << f.log;
}

TEST(DistributedCli, RefusalOfRankZeroReachesEveryRank) {
  const auto dir = cli_test::temp_dir("refusal");
  fs::create_directories(dir + "/run");
  std::ofstream(dir + "/run/metrics.json") << "{}";
  const int port = free_port();
  const pid_t r0 = start(DIFFQ_TOOL, train_args(dir + "/run", 0, 2, port), dir + "/r0.log");
  const pid_t r1 = start(DIFFQ_TOOL, train_args(dir + "/unused", 1, 2, port), dir + "/r1.log");
  EXPECT_EQ(finish(r0), 1);
  EXPECT_EQ(finish(r1), 1);
  EXPECT_TRUE(contains(read_text(dir + "/r1.log"), "rank 0 refused the run")) << read_text(dir + "/r1.log");
}

}  // namespace
