// Declared sizes are checked against what the stored bytes can decode to,
// before anything is allocated: rANS stream capacities, zstd frames, the
// default memory cap, non-regular files.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <random>

#include "diffq/entropy.h"
#include "diffq/error.h"
#include "diffq/format.h"
#include "state_factory.h"

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const diffq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// The capacity bound never refuses a real stream: skewed, uniform, tiny,
// two-symbol and 16-bit alphabets.
TEST(FormatBounds, RansCapacityHoldsEveryRealStream) {
  std::mt19937 rng(11);
  for (int bits : {1, 2, 4, 8, 12, 16}) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{100000}}) {
      for (int skew : {0, 1, 2}) {
        std::vector<uint16_t> v(n);
        for (auto& x : v) {
          const uint32_t r = rng();
          x = uint16_t(skew == 0 ? r % (1u << bits) : skew == 1 ? (r % 1000 == 0 ? 1 : 0) : (r % 3 == 0) & 1);
        }
        const auto coded = diffq::rans_encode(v.data(), v.size(), bits);
        size_t stream_size = 0;
        const uint64_t capacity = diffq::rans_capacity(coded.data(), coded.size(), stream_size);
        EXPECT_GE(capacity, n) << bits << " bits, " << n << " values, skew " << skew;
        EXPECT_EQ(stream_size, coded.size());
      }
    }
  }
}

// A one-symbol stream holds any count (its values cost nothing); a uniform
// 4-bit stream of 4096 values cannot hold 2^30.
TEST(FormatBounds, RansCapacityOfDegenerateAndDenseStreams) {
  std::vector<uint16_t> zeros(1000, 0);
  auto coded = diffq::rans_encode(zeros.data(), zeros.size(), 4);
  size_t size = 0;
  EXPECT_EQ(diffq::rans_capacity(coded.data(), coded.size(), size), UINT64_MAX);
  std::vector<uint16_t> dense(4096);
  for (size_t i = 0; i < dense.size(); ++i) dense[i] = uint16_t(i % 16);
  coded = diffq::rans_encode(dense.data(), dense.size(), 4);
  const uint64_t capacity = diffq::rans_capacity(coded.data(), coded.size(), size);
  EXPECT_GE(capacity, 4096u);
  EXPECT_LT(capacity, 8192u);
}

// zstd frames are checked before the output is allocated.
TEST(FormatBounds, ZstdFrameIsCheckedBeforeAllocation) {
  std::vector<uint8_t> data(4000, 7);
  const auto frame = diffq::zstd_compress(data.data(), data.size(), 3);
  EXPECT_NO_THROW(diffq::zstd_check_frame(frame.data(), frame.size(), 4000));
  EXPECT_NE(error_of([&] { diffq::zstd_check_frame(frame.data(), frame.size(), uint64_t{1} << 31); }).find("declares"),
            std::string::npos);
  const uint8_t garbage[4] = {0x12, 0x34, 0x56, 0x78};
  EXPECT_NE(error_of([&] { diffq::zstd_check_frame(garbage, 4, uint64_t{1} << 31); }).find("not a valid frame"),
            std::string::npos);
}

// A file's rANS record whose shape claims more values than its streams can
// hold is refused even without a memory cap.
TEST(FormatBounds, OversizedRansRecordIsRefusedWithoutACap) {
  diffq::QuantizedState s;
  s.method = "uniform";
  diffq::TensorRecord r;
  r.name = "w";
  r.shape = {4096};
  r.encoding = diffq::Encoding::kUniform;
  r.bits = 4;
  r.min = -1.f;
  r.max = 1.f;
  for (int i = 0; i < 4096; ++i) r.levels.push_back(uint16_t(i * 7 % 16));
  s.tensors.push_back(r);
  auto bytes = diffq::serialize(s, diffq::SaveOptions().entropy_coding(diffq::EntropyCoding::kRans));
  // Same-length edits: 4096 elements -> 8192 (raw length 2048 -> 4096 bytes).
  bytes = diffq_test::edit_header(bytes, "[4096]", "[8192]");
  bytes = diffq_test::edit_header(bytes, "\"raw_length\":2048", "\"raw_length\":4096");
  const auto message = diffq_test::load_error(bytes, diffq::LoadOptions().max_memory(0));
  EXPECT_NE(message.find("can hold at most"), std::string::npos) << message;
}

// Non-regular files are refused without being opened (a FIFO would block).
TEST(FormatBounds, NonRegularFilesAreRefused) {
  const std::string fifo = ::testing::TempDir() + "/diffq_bounds_fifo_" + std::to_string(::getpid());
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(error_of([&] { diffq::load(fifo); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { diffq::inspect(fifo); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { diffq::load(::testing::TempDir()); }).find("is a directory"), std::string::npos);
  ::unlink(fifo.c_str());
}

// The default cap is a fraction of the machine's memory, lowered by `ulimit -v`.
TEST(FormatBounds, DefaultMemoryCap) {
  const uint64_t cap = diffq::default_max_memory();
  EXPECT_GE(cap, uint64_t{1} << 20);
  EXPECT_LE(cap, uint64_t(::sysconf(_SC_PHYS_PAGES)) * uint64_t(::sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(diffq::LoadOptions().max_memory(), cap);
}
