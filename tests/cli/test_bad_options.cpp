// Bad options and inputs are refused in plain words, before any work: one
// line, no LibTorch backtrace, no 309-digit numbers.
#include <gtest/gtest.h>

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include "diffq/number_text.h"
#include "test_util_cli.h"
#include "test_util_process.h"

using namespace cli_test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> tiny(const std::string& out, std::vector<std::string> more) {
  std::vector<std::string> a = {"train", "--model", "cnn", "--width", "0.25", "--epochs", "1", "--batch-size", "32",
                                "--data-dir", tiny_fashion(), "--out", out, "--progress", "none"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// The command is refused with a message containing `words`: one line (two
// for a command-line error: CLI11 adds a pointer to --help).
void expect_refused(const std::vector<std::string>& args, const std::string& words) {
  const auto r = run(args);
  EXPECT_NE(r.status, 0) << words;
  EXPECT_TRUE(contains(r.err, words)) << "expected '" << words << "' in: " << r.err;
  EXPECT_FALSE(contains(r.err, "179769")) << r.err;
  EXPECT_FALSE(contains(r.err, "Exception raised from")) << r.err;
  EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  EXPECT_LE(r.err.size(), 400u) << r.err;
}

}  // namespace

TEST(BadOptions, TrainingOptionsAreCheckedInPlainWords) {
  const auto dir = temp_dir("bad_options");
  const auto out = dir + "/run";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--method", "lsq", "--bits", "4", "--bits-lr", "-1"}, "--bits-lr must be a positive learning rate"},
      {{"--method", "lsq", "--bits", "4", "--bits-lr", "0"}, "--bits-lr must be a positive learning rate"},
      {{"--method", "fp32", "--clip", "nan"}, "--clip must be a finite number"},
      {{"--method", "fp32", "--clip", "-1"}, "--clip must be zero (off) or a positive gradient norm"},
      {{"--method", "fp32", "--train-limit", "-1"}, "--train-limit must be zero (all) or a positive number"},
      {{"--method", "fp32", "--seed", "-1"}, "--seed must be zero or a positive integer"},
      {{"--method", "fp32", "--checkpoint-every", "0"}, "--checkpoint-every must be at least 1 step"},
      {{"--method", "fp32", "--checkpoint-every", "-1"}, "--checkpoint-every must be at least 1 step"},
      {{"--method", "diffq", "--opt", "unknownkey=1"}, "--method diffq has no option 'unknownkey'"},
      {{"--method", "quant-noise", "--bits", "4", "--opt", "p=x"}, "option p"},
      {{"--method", "diffq", "--bits", "4"}, "--bits does not apply to --method diffq"},
      {{"--method", "fp32", "--min-size", "0.01"}, "--min-size does not apply to --method fp32"},
      {{"--method", "diffq", "--penalty", "nan"}, "--penalty must be a finite number"},
      {{"--method", "fp32", "--weight-decay", "-1"}, "--weight-decay must be zero or positive"},
      {{"--method", "fp32", "--recalibrate", "-1"}, "--recalibrate must be zero or a positive number of batches"},
      {{"--method", "fp32", "--threads", "0"}, "--threads must be between 1 and 256"},
      {{"--method", "fp32", "--lr", "0"}, "--lr must be positive"},
      {{"--method", "qat", "--bits", "4", "--target-mib", "0.1"}, "--target-mib does not apply to --method qat"},
      {{"--method", "diffq", "--target-mib", "0.1", "--target-bits", "3"}, "exclude each other"},
      {{"--method", "diffq", "--target-bits", "1"}, "--target-bits must lie between --min-bits and --max-bits"},
      {{"--method", "diffq", "--frozen-fraction", "1"}, "--frozen-fraction must be in [0, 1)"},
      {{"--method", "diffq", "--target-mib", "1e-9"}, "is below what every group at min_bits gives"},
  };
  for (const auto& c : cases) {
    auto args = tiny(out, c.first);
    expect_refused(args, c.second);
    EXPECT_FALSE(fs::exists(out + "/log.jsonl")) << c.second;
  }
  expect_refused({"train", "--method", "fp32", "--data-dir", tiny_fashion(), "--out", ""}, "--out must name a directory");
  expect_refused({"train", "--method", "fp32", "--epochs", "0", "--data-dir", tiny_fashion(), "--out", out},
                 "--epochs must be at least 1, not 0");
}

// The seed is recorded as given (no wrap-around of negative numbers).
TEST(BadOptions, LargeSeedIsRecordedExactly) {
  const auto out = temp_dir("seed") + "/run";
  const auto r = run(tiny(out, {"--method", "fp32", "--seed", "18446744073709551615", "--json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["seed"].get<uint64_t>(), 18446744073709551615ull);
}

// Target-size mode through the CLI: the run ends at the size asked for, and
// metrics.json records the final λ.
TEST(TargetSize, TrainEndsAtTheSizeAskedFor) {
  const auto dir = temp_dir("target");
  // The target: the true size of QAT at 3 bits of the same model.
  const auto q = run(tiny(dir + "/qat3", {"--method", "qat", "--bits", "3", "--min-size", "0", "--json"}));
  ASSERT_EQ(q.status, 0) << q.err;
  const double target = nlohmann::json::parse(q.out)["true_mib"].get<double>();
  const auto r = run(tiny(dir + "/diffq", {"--method", "diffq", "--group-size", "2", "--min-size", "0",
                                           "--target-mib", diffq::format_number(target), "--json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto m = nlohmann::json::parse(r.out);
  EXPECT_LE(m["true_mib"].get<double>(), target);
  EXPECT_GE(m["true_mib"].get<double>(), 0.98 * target);
  EXPECT_TRUE(m.contains("final_penalty"));
  EXPECT_EQ(m["options"]["target_mib"].get<double>(), target);
}

// `compress` never writes over its own input; a broken TorchScript file is
// reported in one line without LibTorch's backtrace (unless --verbose).
TEST(BadOptions, CompressProtectsItsInputAndHidesBacktraces) {
  const auto dir = temp_dir("compress_self");
  torch::jit::Module net("Net");
  net.register_parameter("w", torch::randn({64, 64}), false);
  const auto pt = dir + "/m.pt";
  net.save(pt);
  const auto before = read_text(pt);
  const auto r = run({"compress", pt, "--bits", "4", "-o", pt});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.err, "is the input file")) << r.err;
  EXPECT_EQ(read_text(pt), before);
  write_bytes(dir + "/bad.pt", {'P', 'K', 3, 4, 0, 0, 0, 0});
  expect_refused({"compress", dir + "/bad.pt", "--bits", "4", "-o", dir + "/x.diffq"}, "cannot load the TorchScript");
  const auto verbose = run({"--verbose", "compress", dir + "/bad.pt", "--bits", "4", "-o", dir + "/x.diffq"});
  EXPECT_EQ(verbose.status, 1);
  EXPECT_GE(std::count(verbose.err.begin(), verbose.err.end(), '\n'), 1);
  expect_refused({"compress", dir + "/m.pt", "--budget", "0", "-o", dir + "/y.diffq"}, "give --bits N or --budget B");
}

// --text: a directory, an unknown book, an overflowing chapter or verse
// number are refused by name.
TEST(BadOptions, TextFileProblemsAreNamed) {
  const auto dir = temp_dir("bad_text");
  const auto lm = [&](const std::string& text) {
    return std::vector<std::string>{"train", "--task", "kjv-lm", "--method", "fp32", "--text", text, "--epochs", "1",
                                    "--out", dir + "/run", "--progress", "none"};
  };
  expect_refused(lm(dir), "is a directory, not a file");
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  expect_refused(lm(write("book.txt", "Ge1:1 In the beginning.\nFoo1:2 unknown.\n")), "unknown book 'Foo'");
  expect_refused(lm(write("verse.txt", "Ge1:99999999999999999999 In the beginning.\n")), "verse number");
  expect_refused(lm(write("chapter.txt", "Ge99999999999999999999:1 In the beginning.\n")), "chapter number");
  expect_refused(lm(write("zero.txt", "Ge1:0 In the beginning.\n")), "verse number '0' outside 1..176");
}
