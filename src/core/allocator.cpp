// Keeping freed memory in the process (see diffq/allocator.h).
#include "diffq/allocator.h"

#include <climits>  // first: defines __GLIBC__ on glibc

#include <dlfcn.h>

#include <cstddef>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace diffq {

bool keep_freed_memory() {
#if defined(__GLIBC__)
  // Large blocks come from the heap (a block glibc cannot place there still
  // falls back to mmap), and a free top of the heap is never given back.
  const bool no_mmap = mallopt(M_MMAP_MAX, 0) == 1;
  const bool no_trim = mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
  return no_mmap && no_trim;
#else
  return false;
#endif
}

AllocatorInfo allocator_info() {
  AllocatorInfo info;
  info.name = "libc";
  // jemalloc's control entry point (unprefixed, as Debian builds it).
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  auto mallctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  if (!mallctl) return info;
  const char* version = nullptr;
  size_t size = sizeof version;
  if (mallctl("version", &version, &size, nullptr, 0) != 0 || !version) return info;
  info.name = "jemalloc";
  info.version = version;
  ptrdiff_t decay = 0;  // ssize_t in jemalloc's interface
  size = sizeof decay;
  if (mallctl("opt.dirty_decay_ms", &decay, &size, nullptr, 0) == 0) info.dirty_decay_ms = decay;
  size = sizeof decay;
  if (mallctl("opt.muzzy_decay_ms", &decay, &size, nullptr, 0) == 0) info.muzzy_decay_ms = decay;
  return info;
}

}  // namespace diffq
