// The diffq tool runs on jemalloc (linked when DIFFQ_JEMALLOC is on): its
// peak memory follows the live tensors, where glibc's heap keeps the holes
// that freed blocks leave (diffq/allocator.h, docs/benchmarks/README.md).
// jemalloc reads this string at its start; freed pages are kept for reuse
// (never returned to the system), as diffq::keep_freed_memory() does for
// glibc: a training step reuses the same blocks without page faults.
// MALLOC_CONF in the environment still overrides it.
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
}
