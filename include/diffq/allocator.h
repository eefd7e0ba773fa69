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

namespace diffq {

/// Makes the C library's allocator keep freed memory for reuse: no `mmap`
/// for large blocks and no trimming of the heap. Process-wide and
/// idempotent; peak memory is unchanged (a block freed is reused, not
/// returned). Returns true when applied (glibc), false on C libraries
/// without these settings. `Trainer` calls it unless
/// `TrainerOptions::keep_freed_memory(false)`.
bool keep_freed_memory();

}  // namespace diffq
