// Format version 2: buffers (record kind), integer dtypes and the integer
// encoding, per-channel uniform records; their round trips under every
// coding, size accounting, and the errors that name the tensor and problem.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/error.h"
#include "diffq/format.h"
#include "state_factory.h"
#include "v1_fixture.h"

namespace {

using diffq::DType;
using diffq::EntropyCoding;
using diffq::Encoding;
using diffq::QuantizedState;
using diffq::RecordKind;
using namespace diffq_test;

const EntropyCoding kCodings[] = {EntropyCoding::kNone, EntropyCoding::kZstd,
                                  EntropyCoding::kRans, EntropyCoding::kAuto};
const DType kIntegerDtypes[] = {DType::kInt64, DType::kInt32, DType::kInt16,
                                DType::kInt8,  DType::kUInt8, DType::kBool};

void expect_round_trip(const QuantizedState& state) {
  for (EntropyCoding coding : kCodings) {
    SCOPED_TRACE(std::string("coding ") + diffq::entropy_coding_name(coding));
    const auto bytes = diffq::serialize(state, diffq::SaveOptions().entropy_coding(coding));
    ASSERT_EQ(bytes[8], 2);
    expect_identical(state, diffq::load_from_memory(bytes.data(), bytes.size()));
  }
}


std::string save_error(const QuantizedState& state) {
  try {
    diffq::serialize(state);
    return "";
  } catch (const diffq::Error& e) {
    return e.what();
  }
}





QuantizedState single(diffq::TensorRecord record) {
  QuantizedState state;
  state.method = "test";
  state.tensors.push_back(std::move(record));
  return state;
}

TEST(FormatV2, BuffersOfEveryFloatDtypeRoundTrip) {
  std::mt19937 rng(21);
  QuantizedState state;
  state.method = "float";
  for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat64}) {
    state.tensors.push_back(as_buffer(float32_record(std::string("f32_") + diffq::dtype_name(dtype), {3, 5}, rng)));
    state.tensors.back().dtype = dtype;
  }
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    state.tensors.push_back(as_buffer(float16_record(std::string("f16_") + diffq::dtype_name(dtype), {7}, rng)));
    state.tensors.back().dtype = dtype;
  }
  state.tensors.push_back(as_buffer(float32_record("scalar", {}, rng)));
  state.tensors.push_back(as_buffer(float16_record("empty", {0, 2}, rng)));
  state.tensors.push_back(float32_record("weight", {4}, rng));  // a parameter among buffers
  expect_round_trip(state);
}

TEST(FormatV2, IntegerBuffersOfEveryDtypeRoundTripExactly) {
  std::mt19937 rng(22);
  for (DType dtype : kIntegerDtypes) {
    SCOPED_TRACE(diffq::dtype_name(dtype));
    QuantizedState state;
    state.method = "int";
    state.tensors.push_back(as_buffer(integer_record("a", {3, 5}, dtype, rng)));
    state.tensors.push_back(as_buffer(integer_record("s", {}, dtype, rng)));
    state.tensors.push_back(as_buffer(integer_record("e", {0}, dtype, rng)));
    state.tensors.push_back(integer_record("big", {1000}, dtype, rng));  // integer parameter
    expect_round_trip(state);
    // Stored at the dtype's own width.
    const auto bytes = diffq::serialize(state);
    const auto header = header_of(bytes);
    EXPECT_EQ(header["tensors"][0]["raw_length"].get<uint64_t>(),
              15u * static_cast<uint64_t>(diffq::integer_width(dtype)));
    EXPECT_EQ(header["tensors"][0]["kind"], "buffer");
    EXPECT_EQ(header["tensors"][3]["kind"], "parameter");
  }
}

TEST(FormatV2, IntegerValuesAreLittleEndianTwosComplement) {
  diffq::TensorRecord r;
  r.name = "v";
  r.shape = {3};
  r.dtype = DType::kInt16;
  r.encoding = Encoding::kInteger;
  r.values_i64 = {-2, 258, 0};
  const auto bytes = diffq::serialize(single(r));
  const auto offset = header_of(bytes)["tensors"][0]["offset"].get<uint64_t>();
  const uint8_t expected[6] = {0xfe, 0xff, 0x02, 0x01, 0x00, 0x00};
  EXPECT_EQ(std::memcmp(bytes.data() + offset, expected, 6), 0);
}

TEST(FormatV2, PerChannelRecordsRoundTripAtEveryBitWidth) {
  std::mt19937 rng(23);
  for (int bits = 1; bits <= 16; ++bits) {
    SCOPED_TRACE(testing::Message() << bits << " bits");
    QuantizedState state;
    state.method = "quant_noise";
    state.tensors.push_back(per_channel_record("w", {5, 7}, bits, rng));
    state.tensors.push_back(per_channel_record("conv", {3, 2, 3, 3}, bits, rng));
    state.tensors.push_back(per_channel_record("row", {1, 33}, bits, rng));
    state.tensors.push_back(per_channel_record("vec", {6}, bits, rng));
    state.tensors.push_back(per_channel_record("scalar", {}, bits, rng));
    state.tensors.push_back(per_channel_record("none", {0, 4}, bits, rng));
    state.tensors.push_back(per_channel_record("hollow", {3, 0}, bits, rng));
    state.tensors.push_back(as_buffer(per_channel_record("buf", {2, 2}, bits, rng)));
    expect_round_trip(state);
  }
}

TEST(FormatV2, MixedStateRoundTripsAndRecordsKinds) {
  const QuantizedState state = mixed_state(24);
  expect_round_trip(state);
  const auto header = header_of(diffq::serialize(state));
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    EXPECT_EQ(header["tensors"][i]["kind"], diffq::record_kind_name(state.tensors[i].kind));
  }
}

TEST(FormatV2, InspectExplainsEveryByte) {
  const QuantizedState state = mixed_state(25);
  for (EntropyCoding coding : kCodings) {
    const auto bytes = diffq::serialize(state, diffq::SaveOptions().entropy_coding(coding));
    const diffq::FileInfo info = diffq::inspect_memory(bytes.data(), bytes.size());
    EXPECT_EQ(info.format_version, 2u);
    EXPECT_EQ(info.file_bytes, bytes.size());
    EXPECT_EQ(info.header_bytes + info.padding_bytes + info.parameter_bytes + info.buffer_bytes,
              info.file_bytes);
    EXPECT_EQ(info.parameter_bytes + info.buffer_bytes, info.total_stored_bytes);
    EXPECT_GT(info.buffer_bytes, 0u);
    EXPECT_DOUBLE_EQ(info.true_bits, state.true_bits());
    EXPECT_DOUBLE_EQ(info.buffer_true_bits, state.buffer_bits());
    uint64_t buffer_bytes = 0;
    int64_t buffer_elements = 0;
    for (size_t i = 0; i < info.tensors.size(); ++i) {
      const auto& t = info.tensors[i];
      EXPECT_EQ(t.kind, state.tensors[i].kind) << t.name;
      EXPECT_DOUBLE_EQ(t.true_bits, state.tensors[i].true_bits()) << t.name;
      if (t.kind == RecordKind::kBuffer) {
        buffer_bytes += t.stored_bytes;
        buffer_elements += t.numel;
      }
      if (t.encoding == Encoding::kPerChannelUniform) {
        EXPECT_EQ(t.bits_histogram[state.tensors[i].bits], t.numel);
      }
    }
    EXPECT_EQ(buffer_bytes, info.buffer_bytes);
    EXPECT_EQ(buffer_elements, info.buffer_elements);
  }
}

TEST(FormatV2, FingerprintIncludesTheKindSinceVersion2) {
  const QuantizedState a = mixed_state(26);
  QuantizedState b = a;
  b.tensors[1].kind = RecordKind::kBuffer;
  EXPECT_NE(diffq::model_fingerprint(a), diffq::model_fingerprint(b));
  EXPECT_EQ(diffq::model_fingerprint(a, 1), diffq::model_fingerprint(b, 1));
  EXPECT_EQ(diffq::model_fingerprint(a), diffq::model_fingerprint(a, 2));
  EXPECT_THROW(diffq::model_fingerprint(a, 3), diffq::Error);
  // A file whose kind was changed no longer matches its fingerprint.
  std::mt19937 rng(1);
  const auto bytes = diffq::serialize(single(float32_record("x", {2}, rng)));
  const auto changed = edit_header(bytes, "\"kind\":\"parameter\"", "\"kind\":   \"buffer\"");
  EXPECT_NE(load_error(changed).find("model fingerprint mismatch"), std::string::npos)
      << load_error(changed);
}

TEST(FormatV2, MemoryLimitCountsDecodedIntegersAndRanges) {
  std::mt19937 rng(30);
  QuantizedState state;
  state.method = "test";
  state.tensors.push_back(as_buffer(integer_record("codes", {1000}, DType::kInt8, rng)));
  const auto bytes = diffq::serialize(state);  // 1000 payload bytes, 8000 decoded
  EXPECT_EQ(load_error(bytes, diffq::LoadOptions().max_memory(8000)), "");
  EXPECT_NE(load_error(bytes, diffq::LoadOptions().max_memory(4000)).find("memory limit"),
            std::string::npos);
  const auto ranges = diffq::serialize(single(per_channel_record("w", {500, 1}, 1, rng)));
  EXPECT_NE(load_error(ranges, diffq::LoadOptions().max_memory(3000)).find("memory limit"),
            std::string::npos);
}

// ------------------------------------------------------------ errors

TEST(FormatV2Errors, WriterRefusesIntegersOutsideTheirDtype) {
  std::mt19937 rng(27);
  diffq::TensorRecord r = integer_record("counts", {4}, DType::kInt8, rng);
  r.values_i64[2] = 300;
  EXPECT_NE(save_error(single(r)).find("tensor 'counts': value 300 at index 2 does not fit in int8"),
            std::string::npos)
      << save_error(single(r));
  diffq::TensorRecord flag = integer_record("flag", {2}, DType::kBool, rng);
  flag.values_i64[0] = -1;
  EXPECT_NE(save_error(single(flag)).find("does not fit in bool"), std::string::npos);
  diffq::TensorRecord floaty = float32_record("n", {1}, rng);
  floaty.dtype = DType::kInt64;
  EXPECT_NE(save_error(single(floaty)).find("tensor 'n': dtype int64 needs the integer encoding"),
            std::string::npos);
  diffq::TensorRecord wrong = integer_record("w", {1}, DType::kInt32, rng);
  wrong.dtype = DType::kFloat32;
  EXPECT_NE(save_error(single(wrong)).find("tensor 'w': integer payload for dtype float32"),
            std::string::npos);
}

TEST(FormatV2Errors, WriterRefusesWrongChannelCountsAndRanges) {
  std::mt19937 rng(28);
  diffq::TensorRecord r = per_channel_record("fc.weight", {4, 3}, 4, rng);
  r.channel_min.pop_back();
  r.channel_max.pop_back();
  EXPECT_NE(save_error(single(r)).find("tensor 'fc.weight': channel ranges has 3 entries, expected 4"),
            std::string::npos)
      << save_error(single(r));
  diffq::TensorRecord uneven = per_channel_record("u", {4, 3}, 4, rng);
  uneven.channel_max.pop_back();
  EXPECT_NE(save_error(single(uneven)).find("4 channel minima but 3 channel maxima"), std::string::npos);
  diffq::TensorRecord inverted = per_channel_record("i", {2, 3}, 4, rng);
  inverted.channel_min[1] = inverted.channel_max[1] + 1.f;
  EXPECT_NE(save_error(single(inverted)).find("tensor 'i': invalid range of channel 1"), std::string::npos);
  diffq::TensorRecord infinite = per_channel_record("f", {2, 3}, 4, rng);
  infinite.channel_max[0] = std::numeric_limits<float>::infinity();
  EXPECT_NE(save_error(single(infinite)).find("invalid range of channel 0"), std::string::npos);
  diffq::TensorRecord level = per_channel_record("l", {2, 3}, 4, rng);
  level.levels[5] = 16;
  EXPECT_NE(save_error(single(level)).find("tensor 'l': level 16 at index 5 does not fit on 4 bits"),
            std::string::npos);
}

TEST(FormatV2Errors, ReaderNamesTheTensorAndTheProblem) {
  std::mt19937 rng(29);
  QuantizedState state;
  state.method = "test";
  state.tensors.push_back(per_channel_record("fc.weight", {4, 3}, 5, rng));
  state.tensors.push_back(as_buffer(integer_record("flags", {3}, DType::kBool, rng)));
  const auto bytes = diffq::serialize(state);

  const auto kind = edit_header(bytes, "\"kind\":\"buffer\"", "\"kind\":\"buffex\"");
  EXPECT_NE(load_error(kind).find("tensor 'flags': unknown record kind 'buffex' (one of: parameter, buffer)"),
            std::string::npos)
      << load_error(kind);

  const auto channels = edit_header(bytes, "\"channels\":4", "\"channels\":3");
  EXPECT_NE(load_error(channels).find("tensor 'fc.weight': has 3 channel ranges, expected 4"),
            std::string::npos)
      << load_error(channels);

  const auto dtype = edit_header(bytes, "\"dtype\":\"bool\"", "\"dtype\":\"int8\"");
  // Same width and values that fit: only the architecture identity differs.
  EXPECT_NE(load_error(dtype).find("model fingerprint mismatch"), std::string::npos) << load_error(dtype);

  const auto mixed = edit_header(bytes, "\"dtype\":\"bool\",\"encoding\":\"integer\"",
                                 "\"dtype\":\"bool\",\"encoding\":\"float16\"");
  EXPECT_NE(load_error(mixed).find("tensor 'flags': dtype 'bool' cannot be stored with encoding 'float16'"),
            std::string::npos)
      << load_error(mixed);

  // A bool byte other than 0/1 (payload checksums off to reach the check).
  auto bad_bool = bytes;
  const auto header = header_of(bytes);
  bad_bool[header["tensors"][1]["offset"].get<uint64_t>() + 1] = 2;
  const auto unchecked = diffq::LoadOptions().verify_checksums(false);
  EXPECT_NE(load_error(bad_bool, unchecked).find("tensor 'flags': value 2 at index 1 does not fit in bool"),
            std::string::npos)
      << load_error(bad_bool, unchecked);
  EXPECT_NE(load_error(bad_bool).find("checksum mismatch in tensor 'flags'"), std::string::npos);

  // An integer payload whose raw length is not n x width.
  const std::string raw = "\"raw_length\":" + std::to_string(header["tensors"][1]["raw_length"].get<uint64_t>());
  const auto length = edit_header(bytes, raw + ",\"shape\":[3]", raw + ",\"shape\":[2]");
  EXPECT_NE(load_error(length).find("tensor 'flags': raw_length 3 does not match its shape and parameters (2 bytes)"),
            std::string::npos)
      << load_error(length);

  // rANS does not apply to integer payloads.
  const auto rans = edit_header(bytes, "\"coding\":\"none\",\"dtype\":\"bool\"",
                                "\"coding\":\"rans\",\"dtype\":\"bool\"");
  EXPECT_NE(load_error(rans).find("tensor 'flags': coding 'rans' does not apply to encoding 'integer'"),
            std::string::npos)
      << load_error(rans);
}

TEST(FormatV2Errors, Version1FilesCannotUseVersion2Features) {
  std::vector<uint8_t> bytes;
  {
    const std::string path = std::string(DIFFQ_FIXTURE_DIR) + "/" + v1_fixture_name(EntropyCoding::kNone);
    std::FILE* in = std::fopen(path.c_str(), "rb");
    ASSERT_NE(in, nullptr);
    int c;
    while ((c = std::fgetc(in)) != EOF) bytes.push_back(static_cast<uint8_t>(c));
    std::fclose(in);
  }
  ASSERT_EQ(load_error(bytes), "");
  const auto integer = edit_header(bytes, "\"dtype\":\"float64\"", "\"dtype\":  \"int64\"");
  EXPECT_NE(load_error(integer).find("tensor 'scale': dtype 'int64' needs format version 2 (file has version 1)"),
            std::string::npos)
      << load_error(integer);
  const auto encoding = edit_header(bytes, "\"encoding\":\"uniform\"", "\"encoding\":\"integer\"");
  EXPECT_NE(load_error(encoding).find("tensor 'conv.weight': encoding 'integer' needs format version 2"),
            std::string::npos)
      << load_error(encoding);
  // The same file claiming version 2 lacks the record kinds.
  auto claimed = bytes;
  claimed[8] = 2;
  claimed = edit_header(claimed, "\"format_version\":1", "\"format_version\":2");
  EXPECT_NE(load_error(claimed).find("tensor 'layers.0.weight' has no field 'kind'"), std::string::npos)
      << load_error(claimed);
}

}  // namespace
