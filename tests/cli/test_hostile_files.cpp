// Small hostile model files (generated here) end `inspect` and `eval` with a
// refusal, before any large allocation: their peak memory stays within 50 MB
// of the same command on a normal small file (measured on the tool as a
// child process).
#include <gtest/gtest.h>

#include <random>

#include "diffq/error.h"
#include "diffq/format.h"
#include "test_util_cli.h"
#include "test_util_process.h"

using namespace cli_test;

namespace {

constexpr long kSlackKb = 50 * 1024;

// A state of one uniform 4-bit record of 4096 random levels.
diffq::QuantizedState small_uniform() {
  diffq::QuantizedState s;
  s.method = "uniform";
  diffq::TensorRecord r;
  r.name = "w";
  r.shape = {4096};
  r.encoding = diffq::Encoding::kUniform;
  r.bits = 4;
  r.min = -1.f;
  r.max = 1.f;
  std::mt19937 rng(5);
  for (int i = 0; i < 4096; ++i) r.levels.push_back(uint16_t(rng() % 16));
  s.tensors.push_back(r);
  return s;
}

// `parts` with tensor 0's shape set to `shape` (raw length and fingerprint to match).
void reshape(FileParts& parts, std::vector<int64_t> shape, uint64_t raw_length) {
  auto& t = parts.header["tensors"][0];
  t["shape"] = shape;
  t["raw_length"] = raw_length;
  diffq::QuantizedState s;
  diffq::TensorRecord r;
  r.name = t["name"];
  r.shape = shape;
  r.dtype = diffq::parse_dtype(t["dtype"]);
  r.kind = diffq::parse_record_kind(t["kind"]);
  s.tensors.push_back(r);
  parts.header["fingerprint"]["xxh3"] = hex16(diffq::model_fingerprint(s));
  uint64_t elements = 1;
  for (auto d : shape) elements *= uint64_t(d);
  parts.header["fingerprint"]["elements"] = elements;
}

// A tiny model file trained here (the "normal small file").
const std::string& normal_file() {
  static std::string path;
  if (!path.empty()) return path;
  const auto dir = temp_dir("hostile_normal");
  auto r = run({"train", "--model", "cnn", "--width", "0.25", "--method", "qat", "--bits", "4", "--epochs", "1",
                "--batch-size", "64", "--data-dir", tiny_fashion(), "--out", dir + "/run", "--progress", "none",
                "--coding", "rans"});
  EXPECT_EQ(r.status, 0) << r.err;
  path = dir + "/run/model.diffq";
  return path;
}

struct Measured {
  Ended ended;
  std::string err;
};

Measured measure(const std::vector<std::string>& args, const std::string& name) {
  const auto dir = temp_dir("hostile_run_" + name);
  auto child = spawn(args, dir, name);
  Measured m{wait_for(child, 120), ""};
  m.err = read_text(child.err_path);
  return m;
}

// `inspect` and `eval` of `file` are refused (message containing `why`)
// within 50 MB of their peak on the normal file.
void expect_refused_cheaply(const std::string& file, const std::string& why) {
  const auto inspect_normal = measure({"inspect", normal_file()}, "inspect_normal");
  ASSERT_EQ(inspect_normal.ended.status, 0) << inspect_normal.err;
  const auto eval_normal = measure({"eval", normal_file(), "--data-dir", tiny_fashion()}, "eval_normal");
  ASSERT_EQ(eval_normal.ended.status, 0) << eval_normal.err;
  const auto inspect = measure({"inspect", file}, "inspect_hostile");
  EXPECT_TRUE(inspect.ended.ended);
  EXPECT_EQ(inspect.ended.status, 1) << inspect.err;
  EXPECT_TRUE(contains(inspect.err, why)) << inspect.err;
  EXPECT_LE(inspect.ended.max_rss_kb, inspect_normal.ended.max_rss_kb + kSlackKb);
  const auto eval = measure({"eval", file, "--data-dir", tiny_fashion()}, "eval_hostile");
  EXPECT_TRUE(eval.ended.ended);
  EXPECT_EQ(eval.ended.status, 1) << eval.err;
  EXPECT_TRUE(contains(eval.err, why)) << eval.err;
  EXPECT_LE(eval.ended.max_rss_kb, eval_normal.ended.max_rss_kb + kSlackKb);
  std::printf("peak RSS (kB): inspect %ld (normal %ld), eval %ld (normal %ld)\n", inspect.ended.max_rss_kb,
              inspect_normal.ended.max_rss_kb, eval.ended.max_rss_kb, eval_normal.ended.max_rss_kb);
}

}  // namespace

// The rebuilding helper itself: an unedited file comes back loadable.
TEST(HostileFiles, RebuiltUneditedFileLoads) {
  const auto bytes = diffq::serialize(small_uniform(), diffq::SaveOptions().entropy_coding(diffq::EntropyCoding::kRans));
  const auto again = put_together(take_apart(bytes));
  EXPECT_NO_THROW(diffq::load_from_memory(again.data(), again.size()));
}

// A 4096-value rANS stream whose header claims a [2^30] tensor.
TEST(HostileFiles, RansStreamClaimingAGigaTensor) {
  auto parts = take_apart(
      diffq::serialize(small_uniform(), diffq::SaveOptions().entropy_coding(diffq::EntropyCoding::kRans)));
  ASSERT_EQ(parts.header["tensors"][0]["coding"], "rans");
  reshape(parts, {int64_t{1} << 30}, uint64_t{1} << 29);
  const auto file = temp_dir("hostile_rans") + "/m.diffq";
  write_bytes(file, put_together(parts));
  EXPECT_LT(std::filesystem::file_size(file), 16384u);
  expect_refused_cheaply(file, "can hold at most");
}

// A zstd record of raw length 2^31 whose payload is a 4-byte garbage frame.
TEST(HostileFiles, ZstdRecordClaimingTwoGigabytes) {
  diffq::QuantizedState s;
  s.method = "float";
  diffq::TensorRecord r;
  r.name = "w";
  r.shape = {1000};
  r.values_f32.assign(1000, 0.5f);
  s.tensors.push_back(r);
  auto parts = take_apart(diffq::serialize(s, diffq::SaveOptions().entropy_coding(diffq::EntropyCoding::kZstd)));
  ASSERT_EQ(parts.header["tensors"][0]["coding"], "zstd");
  reshape(parts, {int64_t{1} << 29}, uint64_t{1} << 31);
  parts.payloads[0] = {0x12, 0x34, 0x56, 0x78};
  const auto file = temp_dir("hostile_zstd") + "/m.diffq";
  write_bytes(file, put_together(parts));
  expect_refused_cheaply(file, "zstd");
}

// `arch.width` edited to 64 and 1e9: `eval` refuses before building the model.
TEST(HostileFiles, ArchitectureLargerThanTheFile) {
  for (const std::string width : {"64", "1e9"}) {
    auto parts = take_apart(read_bytes(normal_file()));
    parts.header["options"]["arch.width"] = width;
    const auto file = temp_dir("hostile_arch") + "/m.diffq";
    write_bytes(file, put_together(parts));
    const auto inspect = measure({"inspect", file}, "inspect_arch");
    EXPECT_EQ(inspect.ended.status, 0) << inspect.err;  // a valid file: described
    const auto eval_normal = measure({"eval", normal_file(), "--data-dir", tiny_fashion()}, "eval_normal");
    const auto eval = measure({"eval", file, "--data-dir", tiny_fashion()}, "eval_arch");
    EXPECT_EQ(eval.ended.status, 1) << eval.err;
    EXPECT_TRUE(contains(eval.err, "arch.* options describe")) << eval.err;
    EXPECT_EQ(eval.err.find('\n'), eval.err.size() - 1) << "one line: " << eval.err;
    EXPECT_LE(eval.ended.max_rss_kb, eval_normal.ended.max_rss_kb + kSlackKb) << width;
  }
}

// A memory cap below what a file decodes to is refused by name.
TEST(HostileFiles, MemoryCapRefusesBeforeDecoding) {
  const auto bytes = diffq::serialize(small_uniform());
  EXPECT_NO_THROW(diffq::load_from_memory(bytes.data(), bytes.size(), diffq::LoadOptions().max_memory(1 << 20)));
  try {
    diffq::load_from_memory(bytes.data(), bytes.size(), diffq::LoadOptions().max_memory(1000));
    FAIL() << "loaded over the cap";
  } catch (const diffq::Error& e) {
    EXPECT_TRUE(contains(e.what(), "memory limit")) << e.what();
  }
  EXPECT_GT(diffq::default_max_memory(), uint64_t{1} << 20);
  EXPECT_EQ(diffq::LoadOptions().max_memory(), diffq::default_max_memory());
}
