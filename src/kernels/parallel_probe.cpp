// The parallel-region probe (see parallel_probe.h).
#include "parallel_probe.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include <ATen/Parallel.h>

namespace diffq {
namespace kernels {

int parallel_region_threads() {
  std::mutex mutex;
  std::set<int> ids;
  std::atomic<int> started{0};
  const int expected = std::min(64, at::get_num_threads());
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ids.insert(at::get_thread_num());
    }
    // Hold this thread until every thread has a part, so one fast thread
    // cannot take them all (bounded: a missing thread only costs 1 s).
    started.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (started.load() < expected && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  });
  return static_cast<int>(ids.size());
}

}  // namespace kernels
}  // namespace diffq
