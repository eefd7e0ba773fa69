// The `diffq` executable.
#include <csignal>
#include <iostream>

#include "cli.h"
#include "diffq/train/experiment.h"

namespace {
extern "C" void on_signal(int sig) {
  diffq::train::request_stop();   // checkpoint at the next step boundary, then exit 130
  std::signal(sig, SIG_DFL);      // a second signal kills at once
}
}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::vector<std::string> args(argv + 1, argv + argc);
  return diffq::cli::run(args, std::cout, std::cerr);
}
