// The `diffq` executable.
#include <iostream>

#include <diffq/allocator.h>

#include "cli.h"
#include "signals.h"
#include "thread_pools.h"

int main(int argc, char** argv) {
  // Before anything else: may re-execute the program (see thread_pools.h).
  diffq::cli::use_sleeping_thread_pools(argc, argv);
  diffq::cli::install_signal_handlers();
  // Evaluation, compression and training all reuse large buffers.
  diffq::keep_freed_memory();
  std::vector<std::string> args(argv + 1, argv + argc);
  return diffq::cli::run(args, std::cout, std::cerr);
}
