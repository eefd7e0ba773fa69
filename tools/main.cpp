// The `diffq` executable.
#include <iostream>

#include "cli.h"
#include "signals.h"

int main(int argc, char** argv) {
  diffq::cli::install_signal_handlers();
  std::vector<std::string> args(argv + 1, argv + argc);
  return diffq::cli::run(args, std::cout, std::cerr);
}
