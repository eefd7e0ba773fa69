// keep_freed_memory: large blocks come from the heap and stay there.
#include <gtest/gtest.h>

#include <cstdlib>  // first: defines __GLIBC__ on glibc
#include <cstring>

#include "diffq/allocator.h"

// This test program is not linked with jemalloc (the diffq tool is; its
// test is in test_cli).
TEST(Allocator, InfoNamesTheCAllocatorWhenJemallocIsAbsent) {
  if (std::getenv("LD_PRELOAD") && std::strstr(std::getenv("LD_PRELOAD"), "jemalloc")) GTEST_SKIP();
  const auto info = diffq::allocator_info();
  EXPECT_EQ(info.name, "libc");
  EXPECT_TRUE(info.version.empty());
  EXPECT_EQ(info.dirty_decay_ms, 0);
}

#if defined(__GLIBC__)
#include <malloc.h>

TEST(Allocator, LargeBlocksAreNotMappedAndFreedMemoryIsReused) {
  if (!diffq::keep_freed_memory()) GTEST_SKIP() << "the allocator ignores mallopt (sanitizer build)";
  constexpr size_t kBlock = size_t(96) << 20;  // above glibc's largest mmap threshold (32 MiB)
  const auto before = mallinfo2();
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const auto held = mallinfo2();
  EXPECT_EQ(held.hblks, before.hblks) << "the block was mapped with mmap";
  // In use in the heap (the heap itself need not grow: earlier tests in the
  // same process may have left enough free memory in it).
  EXPECT_GE(held.uordblks, before.uordblks + kBlock) << "the block is not in the heap";
  std::free(block);
  const auto freed = mallinfo2();
  EXPECT_EQ(freed.arena, held.arena) << "the heap was trimmed";
  char* again = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(mallinfo2().arena, held.arena) << "the second block did not reuse the first one's memory";
  std::free(again);
}
#endif
