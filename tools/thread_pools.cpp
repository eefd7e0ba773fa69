// Re-execution with the thread pools' wait settings (see thread_pools.h).
#include "thread_pools.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace diffq {
namespace cli {

namespace {

// The value of --threads on the command line (last one wins), 0 if absent
// or not a number.
long requested_threads(int argc, char** argv) {
  long threads = 0;
  for (int i = 1; i < argc; ++i) {
    const char* value = nullptr;
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) value = argv[i + 1];
    else if (std::strncmp(argv[i], "--threads=", 10) == 0) value = argv[i] + 10;
    if (!value) continue;
    char* end = nullptr;
    const long n = std::strtol(value, &end, 10);
    threads = (end != value && *end == 0) ? n : 0;
  }
  return threads;
}

}  // namespace

void use_sleeping_thread_pools(int argc, char** argv) {
  const char* keep = std::getenv("DIFFQ_KEEP_THREAD_ENV");
  if (keep && std::strcmp(keep, "1") == 0) return;
  if (requested_threads(argc, argv) <= 1) return;
  // libgomp's wait: a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
  const bool gomp_set = std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr;
  const bool openblas_set = std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr;
  if (gomp_set && openblas_set) return;
  if (!gomp_set) ::setenv("GOMP_SPINCOUNT", "3000", /*overwrite=*/0);
  if (!openblas_set) ::setenv("OPENBLAS_THREAD_TIMEOUT", "4", /*overwrite=*/0);
  // The re-executed program finds both set and goes on; if exec fails this
  // one goes on with the pools as they are.
  ::execv("/proc/self/exe", argv);
}

}  // namespace cli
}  // namespace diffq
