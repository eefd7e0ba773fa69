// Small helpers shared by the model file writer and reader.
#include <sys/resource.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <limits>

#include "format_internal.h"

namespace diffq {

uint64_t default_max_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  uint64_t total = pages > 0 && page_size > 0 ? uint64_t(pages) * uint64_t(page_size) : uint64_t{8} << 30;
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    total = std::min<uint64_t>(total, uint64_t(limit.rlim_cur));
  return std::max<uint64_t>(total / 2, uint64_t{1} << 20);
}

const char* entropy_coding_name(EntropyCoding coding) {
  switch (coding) {
    case EntropyCoding::kNone: return "none";
    case EntropyCoding::kZstd: return "zstd";
    case EntropyCoding::kRans: return "rans";
    case EntropyCoding::kAuto: return "auto";
  }
  return "unknown";
}

EntropyCoding parse_entropy_coding(const std::string& name) {
  std::string known;
  for (EntropyCoding c : {EntropyCoding::kNone, EntropyCoding::kZstd, EntropyCoding::kRans,
                          EntropyCoding::kAuto}) {
    if (name == entropy_coding_name(c)) return c;
    known += (known.empty() ? "" : ", ") + std::string(entropy_coding_name(c));
  }
  throw Error(detail::concat("unknown entropy coding '", name, "' (one of: ", known, ")"));
}

uint64_t model_fingerprint(const QuantizedState& state) {
  return model_fingerprint(state, kFormatVersion);
}

uint64_t model_fingerprint(const QuantizedState& state, uint32_t format_version) {
  const std::string text = detail::fingerprint_text(state, format_version);
  return XXH3_64bits(text.data(), text.size());
}

namespace detail {

uint64_t checked_add(uint64_t a, uint64_t b, const char* what) {
  DIFFQ_CHECK(a <= std::numeric_limits<uint64_t>::max() - b, "overflow computing ", what, " (",
              a, " + ", b, ")");
  return a + b;
}

uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  DIFFQ_CHECK(b == 0 || a <= std::numeric_limits<uint64_t>::max() / b, "overflow computing ",
              what, " (", a, " * ", b, ")");
  return a * b;
}

uint64_t align_up(uint64_t value) {
  return checked_add(value, kAlignment - 1, "an aligned offset") / kAlignment * kAlignment;
}

std::string to_hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

void MemoryBudget::charge(uint64_t bytes, const std::string& what) {
  used_ = checked_add(used_, bytes, "memory needed");
  DIFFQ_CHECK(limit_ == 0 || used_ <= limit_, "loading tensor '", what, "' needs more than the ",
              limit_, "-byte memory limit");
}

}  // namespace detail
}  // namespace diffq
