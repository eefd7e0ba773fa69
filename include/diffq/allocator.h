#pragma once
/// \file allocator.h
/// Keeping freed memory in the process for reuse (torch-free).
///
/// Training allocates and frees the same large buffers (activations, im2col
/// workspaces, gradients) at every step. With its default settings glibc's
/// allocator serves each buffer above its mmap threshold (at most 32 MiB)
/// with a fresh `mmap` and returns it with `munmap`, and trims the heap
/// whenever its top is free: every step then pays the kernel to map and
/// zero the same pages again. Measured on the spec's CNN (10 000 test
/// images, one thread), evaluation took 18.5 s with the default settings
/// and 3.95 s with freed memory kept, at the same peak RSS (396 vs 407 MB).

///
/// Peak memory depends on the allocator too: glibc's heap keeps the holes
/// a freed block leaves between live ones resident, and a training step
/// that frees and allocates blocks of several sizes in another order than
/// plain training (a quantizer's installed weights, per-group tensors) can
/// leave tens of MiB of them. jemalloc (size classes, no such holes) puts
/// the peak RSS at the peak of the live tensors; the `diffq` tool is linked
/// with it (docs/benchmarks/README.md has the measurements). A program
/// linked with the library can do the same (link `-ljemalloc`, or run with
/// `LD_PRELOAD=libjemalloc.so.2`; `MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`
/// keeps freed pages, as `keep_freed_memory` does for glibc).

#include <cstdint>
#include <string>

namespace diffq {

/// The C library allocator this process runs on.
struct AllocatorInfo {
  /// "jemalloc" when jemalloc serves malloc (linked or preloaded), else
  /// "libc" (the C library's own).
  std::string name;
  /// jemalloc's version string; empty for the C library's allocator.
  std::string version;
  /// jemalloc's decay times (ms) of freed dirty and muzzy pages; -1 = never
  /// returned to the system. 0 for the C library's allocator.
  int64_t dirty_decay_ms = 0;
  int64_t muzzy_decay_ms = 0;
};

/// Reads which allocator serves `malloc` in this process (jemalloc is found
/// by its `mallctl` entry point at run time: no link dependency).
AllocatorInfo allocator_info();

/// Makes the C library's allocator keep freed memory for reuse: no `mmap`
/// for large blocks and no trimming of the heap. Process-wide and
/// idempotent; peak memory is unchanged (a block freed is reused, not
/// returned). Returns true when applied (glibc), false on C libraries
/// without these settings. `Trainer` calls it unless
/// `TrainerOptions::keep_freed_memory(false)`.
bool keep_freed_memory();

}  // namespace diffq
