// Corrupt, truncated and hostile files are rejected with diffq::Error
// naming the problem; never a crash nor another exception type.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "diffq/error.h"
#include "diffq/format.h"
#include "state_factory.h"

namespace {

using diffq::EntropyCoding;
using namespace diffq_test;

// mixed_state: every encoding, aliases, float and integer buffers, per-channel.
std::vector<uint8_t> small_file(EntropyCoding coding) {
  return diffq::serialize(mixed_state(3), diffq::SaveOptions().entropy_coding(coding).creation_time(0));
}





class Corruption : public testing::TestWithParam<EntropyCoding> {};

TEST_P(Corruption, EveryTruncationIsRejected) {
  const auto bytes = small_file(GetParam());
  ASSERT_EQ(load_error(bytes), "");
  // A version-2 file with buffers, integer and per-channel records.
  ASSERT_EQ(bytes[8], 2);
  const std::string header = header_of(bytes).dump();
  for (const char* feature : {"\"kind\":\"buffer\"", "\"encoding\":\"integer\"",
                              "\"encoding\":\"per_channel\"", "\"dtype\":\"bool\""}) {
    ASSERT_NE(header.find(feature), std::string::npos) << feature;
  }
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    const std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + cut);
    ASSERT_NE(load_error(truncated), "") << "truncated to " << cut << " bytes";
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_NE(load_error(longer).find("unexpected bytes"), std::string::npos);
}

TEST_P(Corruption, EveryFlippedByteIsRejected) {
  const auto bytes = small_file(GetParam());
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      auto bad = bytes;
      bad[at] ^= mask;
      ASSERT_NE(load_error(bad), "") << "byte " << at << " ^ " << int(mask);
    }
  }
}

TEST_P(Corruption, WithoutChecksumsFlipsLoadOrFailCleanly) {
  const auto bytes = small_file(GetParam());
  const auto options = diffq::LoadOptions().verify_checksums(false).max_memory(1 << 24);
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (uint8_t mask : {0x01, 0x10, 0xff}) {
      auto bad = bytes;
      bad[at] ^= mask;
      load_error(bad, options);  // fails the test on a foreign exception
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodings, Corruption,
                         testing::Values(EntropyCoding::kNone, EntropyCoding::kZstd,
                                         EntropyCoding::kRans),
                         [](const testing::TestParamInfo<EntropyCoding>& info) {
                           return std::string(diffq::entropy_coding_name(info.param));
                         });

TEST(CorruptionMessages, NameTheProblem) {
  const auto bytes = small_file(EntropyCoding::kNone);
  EXPECT_NE(load_error({bytes.begin(), bytes.begin() + 20}).find("truncated at offset 20"),
            std::string::npos);
  std::vector<uint8_t> junk(100, 'x');
  EXPECT_NE(load_error(junk).find("bad magic"), std::string::npos);

  auto newer = bytes;
  newer[8] = 3;
  EXPECT_NE(load_error(newer).find("format version 3 is newer than supported 2"), std::string::npos);
  auto zero = bytes;
  zero[8] = 0;
  EXPECT_NE(load_error(zero).find("invalid format version 0"), std::string::npos);

  auto payload = bytes;
  const auto header = header_of(bytes);
  const uint64_t offset = header["tensors"][1]["offset"].get<uint64_t>();
  payload[offset] ^= 1;
  EXPECT_NE(load_error(payload).find("checksum mismatch in tensor 'layers.0.bias'"),
            std::string::npos);

  auto head = bytes;
  head[50] ^= 1;
  EXPECT_NE(load_error(head).find("checksum mismatch in the header"), std::string::npos);

  const auto unknown = edit_header(bytes, "\"encoding\":\"uniform\"", "\"encoding\":\"unifork\"");
  EXPECT_NE(load_error(unknown).find("unknown encoding 'unifork'"), std::string::npos);

  const auto coding = edit_header(bytes, "\"coding\":\"none\"", "\"coding\":\"lzma\"");
  EXPECT_NE(load_error(coding).find("unknown coding 'lzma'"), std::string::npos);
}

TEST(CorruptionMessages, OverlapsAndHolesAreRefused) {
  const auto bytes = small_file(EntropyCoding::kNone);
  const auto header = header_of(bytes);
  const uint64_t offset = header["tensors"][2]["offset"].get<uint64_t>();
  const std::string from = "\"offset\":" + std::to_string(offset);
  const std::string earlier = "\"offset\":" + std::to_string(offset - 64);
  const std::string later = "\"offset\":" + std::to_string(offset + 64);
  ASSERT_EQ(from.size(), earlier.size());
  ASSERT_EQ(from.size(), later.size());
  EXPECT_NE(load_error(edit_header(bytes, from, earlier)).find("overlaps"), std::string::npos);
  EXPECT_NE(load_error(edit_header(bytes, from, later)).find("hole"), std::string::npos);
}

TEST(CorruptionMessages, InconsistentParametersAreRefused) {
  const auto bytes = small_file(EntropyCoding::kNone);
  // 5-bit uniform levels claimed as 9-bit: raw length no longer matches.
  const auto wider = edit_header(bytes, "\"bits\":5", "\"bits\":9");
  EXPECT_NE(load_error(wider), "");
  const auto shape = edit_header(bytes, "[3,3]", "[3,4]");
  EXPECT_NE(load_error(shape), "");
  const auto name = edit_header(bytes, "\"name\":\"conv.weight\"", "\"name\":\"norm.weight\"");
  EXPECT_NE(load_error(name).find("appears twice"), std::string::npos);
}

TEST(CorruptionMessages, MemoryLimitIsEnforced) {
  const auto bytes = small_file(EntropyCoding::kZstd);
  EXPECT_EQ(load_error(bytes, diffq::LoadOptions().max_memory(1 << 20)), "");
  EXPECT_NE(load_error(bytes, diffq::LoadOptions().max_memory(16)).find("memory limit"),
            std::string::npos);
}

}  // namespace
