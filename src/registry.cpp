// Process-wide registry of tensors owned by live quantizers.
#include "registry.h"

#include <mutex>
#include <unordered_set>

#include "diffq/error.h"

namespace diffq {
namespace detail {
namespace {
std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::unordered_set<const void*>& registry() {
  static std::unordered_set<const void*> set;
  return set;
}
}  // namespace

void claim_tensors(const std::vector<const void*>& tensors, const std::vector<std::string>& names) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& set = registry();
  for (size_t i = 0; i < tensors.size(); ++i) {
    DIFFQ_CHECK(set.count(tensors[i]) == 0, "parameter '", names[i],
                "' is already handled by another quantizer: a model takes one quantizer "
                "(destroy the first one before creating another)");
  }
  set.insert(tensors.begin(), tensors.end());
}

void release_tensors(const std::vector<const void*>& tensors) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (const void* t : tensors) registry().erase(t);
}

}  // namespace detail
}  // namespace diffq
