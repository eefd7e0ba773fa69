// Keeping freed memory in the process (see diffq/allocator.h).
#include "diffq/allocator.h"

#include <climits>  // first: defines __GLIBC__ on glibc

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

}  // namespace diffq
