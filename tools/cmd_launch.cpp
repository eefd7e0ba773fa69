// `diffq launch --nproc N -- train ...`: starts N local processes of this
// program with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (as torchrun
// does), forwards SIGINT/SIGTERM to them, and fails when any of them fails.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "diffq/error.h"
#include "diffq/train/distributed.h"

namespace diffq {
namespace cli {

namespace {

struct LaunchFlags {
  int nproc = 2;
  int nnodes = 1;
  int node_rank = 0;
  std::string master;
  std::vector<std::string> command;
};

volatile sig_atomic_t g_signal = 0;
extern "C" void remember_signal(int sig) { g_signal = sig; }

// A TCP port of the loopback interface that nobody listens on now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  DIFFQ_CHECK(fd >= 0, "launch: cannot open a socket: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  DIFFQ_CHECK(ok, "launch: cannot find a free port: ", std::strerror(errno));
  return ntohs(a.sin_port);
}

// Starts this program with `args` as rank `rank`; returns its pid.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  DIFFQ_CHECK(pid >= 0, "launch: fork failed: ", std::strerror(errno));
  if (pid > 0) return pid;
  // Child: its own process group (the terminal's Ctrl-C reaches the
  // launcher only, which forwards it once), ended if the launcher dies.
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(1);
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> argv;
  static char name[] = "diffq";
  argv.push_back(name);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  ::_exit(127);
}

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int run_launch(const LaunchFlags& f, std::ostream& err) {
  DIFFQ_CHECK(f.nproc >= 1 && f.nproc <= 256, "launch: --nproc must be in 1..256, not ", f.nproc);
  DIFFQ_CHECK(f.nnodes >= 1 && f.node_rank >= 0 && f.node_rank < f.nnodes, "launch: --node-rank must be in [0, ",
              f.nnodes, "), not ", f.node_rank);
  DIFFQ_CHECK(!f.command.empty() && f.command[0] == "train",
              "launch: the command after -- must be `train ...` (e.g. diffq launch --nproc 2 -- train --out runs/x)");
  std::string addr = "127.0.0.1";
  int port = 0;
  if (!f.master.empty()) std::tie(addr, port) = train::parse_master(f.master);
  DIFFQ_CHECK(port != 0 || f.nnodes == 1, "launch: --master ADDRESS:PORT is required with --nnodes > 1");
  if (port == 0) port = free_port();
  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  const int world = f.nproc * f.nnodes;
  std::vector<pid_t> children;
  for (int i = 0; i < f.nproc; ++i) {
    const int rank = f.node_rank * f.nproc + i;
    children.push_back(spawn(f.command, {{"RANK", std::to_string(rank)},
                                         {"LOCAL_RANK", std::to_string(i)},
                                         {"WORLD_SIZE", std::to_string(world)},
                                         {"MASTER_ADDR", addr},
                                         {"MASTER_PORT", std::to_string(port)}}));
  }
  int first_failure = 0, forwarded = 0;
  size_t running = children.size();
  while (running > 0) {
    if (g_signal && forwarded < 2) {
      // First signal: every rank stops at its next safe point; second: at once.
      for (pid_t c : children)
        if (c > 0) ::kill(c, forwarded == 0 ? g_signal : SIGKILL);
      ++forwarded;
      g_signal = 0;
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, 0);
    if (done < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < children.size(); ++i) {
      if (children[i] != done) continue;
      children[i] = -1;
      --running;
      const int code = exit_status(status);
      if (code != 0 && first_failure == 0 && forwarded > 0) {
        first_failure = code;  // stopped on request: each rank said so
      } else if (code != 0 && first_failure == 0) {
        first_failure = code;
        err << "diffq launch: rank " << f.node_rank * f.nproc + int(i) << " exited with status " << code
            << "; stopping the other ranks\n";
        for (pid_t c : children)
          if (c > 0) ::kill(c, SIGTERM);
      }
    }
  }
  return first_failure;
}

}  // namespace

Command add_launch(CLI::App& app) {
  auto f = std::make_shared<LaunchFlags>();
  auto* la = app.add_subcommand(
      "launch", "start N local processes of data-parallel training: diffq launch --nproc 2 -- train --out DIR ...");
  la->add_option("--nproc", f->nproc, "processes on this machine")->capture_default_str();
  la->add_option("--nnodes", f->nnodes, "machines (run the same command on each)")->capture_default_str();
  la->add_option("--node-rank", f->node_rank, "this machine's index in [0, --nnodes)")->capture_default_str();
  la->add_option("--master", f->master,
                 "ADDRESS:PORT of rank 0's machine (default: this machine, a free port; required with --nnodes > 1)");
  la->add_option("command", f->command, "the diffq command each process runs (after --)")->required();
  return {la, [f](std::ostream&, std::ostream& err) { return run_launch(*f, err); }};
}

}  // namespace cli
}  // namespace diffq
