// The CLI on models with buffers: TorchScript models given with
// --model-file (both tasks), the BatchNorm variant of the built-in ResNet,
// and compress -> compress --restore into a freshly initialised template.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "bn_models.h"
#include "diffq/data/text.h"
#include "diffq/format.h"
#include "diffq/uniform_quantizer.h"
#include "test_util_cli.h"

using cli_test::contains;
using cli_test::run;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// The BatchNorm CNN for 28x28 images as a TorchScript file.
std::string bn_script(const std::string& dir, const std::string& name, uint64_t seed) {
  auto net = diffq_test::make_script_bn_cnn(seed, diffq_test::ScriptMomentum::kConstant, 28);
  const std::string path = dir + "/" + name;
  net.save(path);
  return path;
}

// A word-level language model as TorchScript: tied embedding -> tanh -> logits.
std::string lm_script(const std::string& dir, int64_t vocab) {
  torch::manual_seed(5);
  torch::jit::Module net("Lm");
  net.register_attribute("training", c10::BoolType::get(), true);
  net.register_parameter("embed", (torch::randn({vocab, 16}) * 0.1).requires_grad_(), false);
  net.register_parameter("mix", (torch::randn({16, 16}) * 0.1).requires_grad_(), false);
  net.define(R"JIT(
def forward(self, x):
    h = torch.tanh(torch.matmul(torch.embedding(self.embed, x), self.mix))
    return torch.matmul(h, self.embed.t())
)JIT");
  const std::string path = dir + "/lm.pt";
  net.save(path);
  return path;
}

std::vector<std::string> fashion_train(const std::string& out, const std::string& method,
                                       std::vector<std::string> more) {
  std::vector<std::string> a = {"train", "--task", "fashion-mnist", "--method", method, "--epochs", "1",
                                "--batch-size", "32", "--data-dir", cli_test::tiny_fashion(), "--out", out,
                                "--progress", "none"};
  if (method != "fp32") a.insert(a.end(), {"--min-size", "0.001"});  // options of the method only
  if (method == "diffq") a.insert(a.end(), {"--group-size", "8"});
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

}  // namespace

TEST(CliModels, TrainsAndEvaluatesATorchScriptBatchNormModel) {
  const auto dir = cli_test::temp_dir("script_bn");
  const auto pt = bn_script(dir, "bn.pt", 1);
  for (const std::string method : {"diffq", "qat"}) {
    SCOPED_TRACE(method);
    std::vector<std::string> more = {"--model-file", pt};
    if (method == "qat") more.insert(more.end(), {"--bits", "4"});
    auto r = run(fashion_train(dir + "/" + method, method, more));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto m = read_json(dir + "/" + method + "/metrics.json");
    EXPECT_GT(m["buffer_bytes"].get<double>(), 0);
    // eval rebuilds the architecture from the TorchScript file: same accuracy
    // as the run measured on its own restored copy.
    auto e = run({"eval", dir + "/" + method + "/model.diffq", "--model-file", pt, "--data-dir",
                  cli_test::tiny_fashion(), "--json"});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_EQ(nlohmann::json::parse(e.out)["accuracy"], m["accuracy"]);
    auto missing = run({"eval", dir + "/" + method + "/model.diffq", "--data-dir", cli_test::tiny_fashion()});
    EXPECT_EQ(missing.status, 1);
    EXPECT_TRUE(contains(missing.err, "--model-file")) << missing.err;
  }
  // The running statistics are in the file, as buffers.
  const auto state = diffq::load(dir + "/diffq/model.diffq");
  int buffers = 0;
  for (const auto& t : state.tensors)
    if (t.kind == diffq::RecordKind::kBuffer) {
      ++buffers;
      if (t.name == "bn1.num_batches_tracked") EXPECT_EQ(t.values_i64.at(0), 256 / 32);
    }
  EXPECT_EQ(buffers, 6);
  auto ins = run({"inspect", dir + "/diffq/model.diffq"});
  EXPECT_TRUE(contains(ins.out, "[buffer]")) << ins.out;
}

TEST(CliModels, TrainsATorchScriptLanguageModel) {
  const auto dir = cli_test::temp_dir("script_lm");
  const std::string text = std::string(DIFFQ_CLI_FIXTURES) + "/kjv_tiny.txt";
  const auto vocab = diffq::data::make_corpus(diffq::data::load_kjv(text), 10000).vocab.size();
  const auto pt = lm_script(dir, int64_t(vocab));
  auto r = run({"train", "--task", "kjv-lm", "--model-file", pt, "--text", text, "--context", "8", "--epochs", "2",
                "--batch-size", "4", "--method", "diffq", "--min-size", "0.0001", "--group-size", "4", "--out",
                dir + "/run", "--progress", "none", "--lr", "1e-2"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto m = read_json(dir + "/run/metrics.json");
  // The tiny text (9 training sequences, other books in the test split)
  // cannot teach much; the run must only produce a sane score.
  EXPECT_TRUE(std::isfinite(m["perplexity"].get<double>()));
  EXPECT_GT(m["perplexity"].get<double>(), 1.0);
  EXPECT_EQ(m["vocab"].get<int64_t>(), int64_t(vocab));
  auto e = run({"eval", dir + "/run/model.diffq", "--model-file", pt, "--text", text, "--json"});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["perplexity"], m["perplexity"]);
}

TEST(CliModels, BuiltInResNetHasBatchNormByDefault) {
  const auto dir = cli_test::temp_dir("resnet_bn");
  auto r = run(fashion_train(dir + "/bn", "diffq", {"--model", "resnet20", "--width", "0.25"}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto m = read_json(dir + "/bn/metrics.json");
  auto e = run({"eval", dir + "/bn/model.diffq", "--data-dir", cli_test::tiny_fashion(), "--json"});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["accuracy"], m["accuracy"]);
  const auto state = diffq::load(dir + "/bn/model.diffq");
  EXPECT_EQ(state.options.at("arch.norm"), "batch");
  bool running_mean = false;
  for (const auto& t : state.tensors) running_mean = running_mean || t.name == "stem_norm.running_mean";
  EXPECT_TRUE(running_mean);
  auto g = run(fashion_train(dir + "/gn", "fp32", {"--model", "resnet20", "--width", "0.25", "--norm", "group"}));
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(diffq::load(dir + "/gn/model.diffq").options.at("arch.norm"), "group");
  auto bad = run(fashion_train(dir + "/x", "fp32", {"--model", "cnn", "--norm", "batch"}));
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.err, "--norm")) << bad.err;
}

TEST(CliModels, RecalibrationReestimatesOnlyTheRunningStatistics) {
  const auto dir = cli_test::temp_dir("recalibrate");
  const std::vector<std::string> common = {"--model", "resnet20", "--width", "0.25", "--seed", "3"};
  auto plain = common, recal = common;
  recal.insert(recal.end(), {"--recalibrate", "4"});
  ASSERT_EQ(run(fashion_train(dir + "/plain", "qat", [&] { auto v = plain; v.insert(v.end(), {"--bits", "4"}); return v; }())).status, 0);
  auto r = run(fashion_train(dir + "/recal", "qat", [&] { auto v = recal; v.insert(v.end(), {"--bits", "4"}); return v; }()));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto m = read_json(dir + "/recal/metrics.json");
  EXPECT_EQ(m["recalibrated_layers"].get<int64_t>(), 21);  // stem + 9 blocks x 2 + 2 shortcuts
  auto e = run({"eval", dir + "/recal/model.diffq", "--data-dir", cli_test::tiny_fashion(), "--json"});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["accuracy"], m["accuracy"]);
  // Same training (same seed): same parameters; other running statistics.
  const auto a = diffq::load(dir + "/plain/model.diffq"), b = diffq::load(dir + "/recal/model.diffq");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& x = a.tensors[i];
    const auto& y = b.tensors[i];
    if (x.kind == diffq::RecordKind::kParameter) {
      EXPECT_EQ(x.levels, y.levels) << x.name;
      EXPECT_EQ(x.values_f32, y.values_f32) << x.name;
    } else if (x.name.find("running_mean") != std::string::npos) {
      EXPECT_NE(x.values_f32, y.values_f32) << x.name;
    }
  }
}

TEST(CliModels, CompressRestoreIntoAFreshTemplateReproducesTheQuantizedModel) {
  const auto dir = cli_test::temp_dir("compress_bn");
  // A trained-looking model: running statistics moved by a few batches.
  auto net = diffq_test::make_script_bn_cnn(1, diffq_test::ScriptMomentum::kConstant, 28);
  {
    torch::NoGradGuard no_grad;
    net.train();
    for (int i = 0; i < 5; ++i) net.forward({torch::randn({16, 1, 28, 28}) * 2 + 0.5});
  }
  net.save(dir + "/net.pt");
  bn_script(dir, "fresh.pt", 77);  // same architecture, other weights and statistics
  auto c = run({"compress", dir + "/net.pt", "-o", dir + "/net.diffq", "--bits", "8", "--min-size", "0.001"});
  ASSERT_EQ(c.status, 0) << c.err;
  auto back = run({"compress", "--restore", dir + "/net.diffq", "--template", dir + "/fresh.pt", "-o",
                   dir + "/out.pt"});
  ASSERT_EQ(back.status, 0) << back.err;
  auto restored = torch::jit::load(dir + "/out.pt");
  restored.eval();
  net.eval();
  diffq::UniformQuantizer q(net, diffq::UniformOptions().bits(8).discovery(diffq::DiscoveryOptions().min_size(0.001)));
  auto scope = q.quantized_evaluation();
  const auto x = torch::randn({8, 1, 28, 28});
  const auto expected = net.forward({x}).toTensor();
  EXPECT_EQ((restored.forward({x}).toTensor() - expected).abs().max().item<double>(), 0.0);
}
