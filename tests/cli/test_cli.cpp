// The command-line tool: every subcommand on tiny inputs, argument errors,
// unreadable data paths, and the exit status of the executable.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "diffq/format.h"
#include "diffq/models/models.h"
#include "diffq/train/methods.h"
#include "diffq/train/trainer.h"
#include "test_util_cli.h"

using cli_test::contains;
using cli_test::run;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> tiny_train(const std::string& out, const std::string& method,
                                    std::vector<std::string> more = {}) {
  std::vector<std::string> a = {"train", "--task", "fashion-mnist", "--model", "cnn", "--width", "0.25",
                                "--method", method, "--epochs", "1", "--batch-size", "32",
                                "--data-dir", cli_test::tiny_fashion(), "--out", out,
                                "--progress", "none"};
  if (method != "fp32") a.insert(a.end(), {"--min-size", "0.001"});  // options of the method only
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::string script_file(const std::string& dir) {
  torch::manual_seed(3);
  torch::jit::Module net("Net");
  net.register_parameter("w1", torch::randn({64, 32}), false);
  net.register_parameter("w2", torch::randn({32, 64}) * 0.01, false);
  net.register_parameter("b", torch::zeros({32}), false);
  net.define(R"JIT(
def forward(self, x):
    return torch.matmul(torch.tanh(torch.matmul(x, self.w1.t())), self.w2.t()) + self.b
)JIT");
  const std::string path = dir + "/net.pt";
  net.save(path);
  return path;
}

}  // namespace

TEST(Cli, HelpOfEverySubcommand) {
  auto r = run({"--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* sub : {"train", "eval", "inspect", "compress", "summarize", "list"}) {
    EXPECT_TRUE(contains(r.out, sub)) << sub;
    auto h = run({sub, "--help"});
    EXPECT_EQ(h.status, 0) << sub;
    EXPECT_TRUE(contains(h.out, "Usage")) << sub << ": " << h.out;
  }
  auto t = run({"train", "--help"});
  for (const char* opt : {"--penalty", "--group-size", "--bits", "--bits-lr", "--resume", "--epochs",
                          "--threads", "--seed", "--batch-size", "--out", "diffq:", "lsq:"})
    EXPECT_TRUE(contains(t.out, opt)) << opt;
}

TEST(Cli, ArgumentErrorsAreClearAndNonZero) {
  auto none = run({});
  EXPECT_NE(none.status, 0);
  EXPECT_TRUE(contains(none.err, "subcommand")) << none.err;

  auto unknown = run({"frobnicate"});
  EXPECT_NE(unknown.status, 0);

  auto method = run(tiny_train(cli_test::temp_dir("e1"), "nope"));
  EXPECT_NE(method.status, 0);
  EXPECT_TRUE(contains(method.err, "unknown method 'nope'")) << method.err;

  auto bits = run(tiny_train(cli_test::temp_dir("e2"), "qat"));
  EXPECT_NE(bits.status, 0);
  EXPECT_TRUE(contains(bits.err, "--bits N is required")) << bits.err;
  // Quant-Noise: the scalar modes need --bits, the block modes have none.
  auto scalar = run(tiny_train(cli_test::temp_dir("e2q"), "quant-noise"));
  EXPECT_NE(scalar.status, 0);
  EXPECT_TRUE(contains(scalar.err, "--bits N is required")) << scalar.err;
  const auto proxy_dir = cli_test::temp_dir("e2p");
  auto proxy = run(tiny_train(proxy_dir, "quant-noise", {"--opt", "qn_mode=proxy", "--opt", "p=0.2"}));
  EXPECT_EQ(proxy.status, 0) << proxy.err;
  auto ipq = run(tiny_train(cli_test::temp_dir("e2i"), "quant-noise",
                            {"--opt", "qn_mode=ipq", "--opt", "centroids=16", "--init", proxy_dir + "/model.diffq"}));
  EXPECT_EQ(ipq.status, 0) << ipq.err;

  auto model = run({"train", "--model", "resnet99", "--out", cli_test::temp_dir("e3")});
  EXPECT_NE(model.status, 0);
  EXPECT_TRUE(contains(model.err, "unknown model 'resnet99'")) << model.err;

  auto epochs = run({"train", "--epochs", "abc", "--out", cli_test::temp_dir("e4")});
  EXPECT_NE(epochs.status, 0);
  EXPECT_TRUE(contains(epochs.err, "--epochs")) << epochs.err;

  auto out = run({"train"});
  EXPECT_NE(out.status, 0);
  EXPECT_TRUE(contains(out.err, "--out")) << out.err;

  auto range = run(tiny_train(cli_test::temp_dir("e5"), "ptq", {"--bits", "40"}));
  EXPECT_NE(range.status, 0);
  EXPECT_TRUE(contains(range.err, "--bits")) << range.err;

  auto opt = run(tiny_train(cli_test::temp_dir("e6"), "diffq", {"--opt", "novalue"}));
  EXPECT_NE(opt.status, 0);
  EXPECT_TRUE(contains(opt.err, "key=value")) << opt.err;

  auto ev = run({"eval"});
  EXPECT_NE(ev.status, 0);
  auto both = run({"compress", "x.pt", "-o", "y", "--bits", "4", "--budget", "3"});
  EXPECT_NE(both.status, 0);
  EXPECT_TRUE(contains(both.err, "excludes")) << both.err;
}

TEST(Cli, UnreadableDatasetPathIsNamed) {
  auto r = run({"train", "--data-dir", "/nonexistent/fashion", "--out", cli_test::temp_dir("d1"),
                "--progress", "none"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "/nonexistent/fashion")) << r.err;

  auto t = run({"train", "--task", "kjv-lm", "--text", "/nonexistent/kjv.txt", "--out",
                cli_test::temp_dir("d2"), "--progress", "none"});
  EXPECT_EQ(t.status, 1);
  EXPECT_TRUE(contains(t.err, "/nonexistent/kjv.txt")) << t.err;

  auto e = run({"eval", "/nonexistent/model.diffq"});
  EXPECT_EQ(e.status, 1);
  EXPECT_TRUE(contains(e.err, "/nonexistent/model.diffq")) << e.err;
  auto i = run({"inspect", "/nonexistent/model.diffq"});
  EXPECT_EQ(i.status, 1);
  EXPECT_TRUE(contains(i.err, "/nonexistent/model.diffq")) << i.err;
}

TEST(Cli, TrainEvalInspectDiffQ) {
  const auto dir = cli_test::temp_dir("diffq");
  auto r = run(tiny_train(dir, "diffq", {"--penalty", "10", "--group-size", "8", "--json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto m = read_json(dir + "/metrics.json");
  for (const char* key : {"task", "model", "method", "params", "accuracy", "fp32_mib", "true_mib",
                          "file_bytes", "compression", "mean_bits", "epochs", "train_seconds", "options"})
    EXPECT_TRUE(m.contains(key)) << key;
  EXPECT_EQ(m["method"], "diffq");
  EXPECT_EQ(m["options"]["group_size"], 8);
  EXPECT_EQ(m["options"]["penalty"], 10.0);
  EXPECT_EQ(nlohmann::json::parse(r.out)["accuracy"], m["accuracy"]);
  EXPECT_EQ(m["file_bytes"].get<uint64_t>(), fs::file_size(dir + "/model.diffq"));
  EXPECT_NEAR(m["compression"].get<double>(),
              m["fp32_mib"].get<double>() * 1048576.0 / m["file_bytes"].get<double>(), 1e-9);
  EXPECT_LT(m["mean_bits"].get<double>(), 16.0);
  // One log line per epoch.
  std::ifstream log(dir + "/log.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("test_accuracy") && j.contains("mean_bits"));
    ++lines;
  }
  EXPECT_EQ(lines, 1);
  EXPECT_FALSE(fs::exists(dir + "/checkpoint.pt"));

  // eval restores from the file alone and gets the same accuracy.
  auto e = run({"eval", dir + "/model.diffq", "--data-dir", cli_test::tiny_fashion(), "--json"});
  ASSERT_EQ(e.status, 0) << e.err;
  const auto em = nlohmann::json::parse(e.out);
  EXPECT_EQ(em["accuracy"], m["accuracy"]);
  EXPECT_EQ(em["method"], "diffq");
  auto et = run({"eval", dir + "/model.diffq", "--data-dir", cli_test::tiny_fashion()});
  EXPECT_TRUE(contains(et.out, "test accuracy")) << et.out;

  auto ij = run({"inspect", dir + "/model.diffq", "--json"});
  ASSERT_EQ(ij.status, 0) << ij.err;
  const auto info = nlohmann::json::parse(ij.out);
  ASSERT_FALSE(info["tensors"].empty());
  for (const auto& t : info["tensors"])
    for (const char* key : {"name", "shape", "encoding", "bits_histogram", "stored_bytes"})
      EXPECT_TRUE(t.contains(key)) << key;
  EXPECT_EQ(info["file_bytes"], m["file_bytes"]);
  auto it = run({"inspect", dir + "/model.diffq"});
  EXPECT_TRUE(contains(it.out, "conv1.weight") && contains(it.out, "total:") && contains(it.out, "diffq"))
      << it.out;
  auto dat = run({"inspect", dir + "/model.diffq", "--dat"});
  EXPECT_TRUE(contains(dat.out, "# index mean_bits")) << dat.out;

  // A finished run is not silently replaced; --resume reports it.
  auto again = run(tiny_train(dir, "diffq"));
  EXPECT_EQ(again.status, 1);
  EXPECT_TRUE(contains(again.err, "--overwrite")) << again.err;
  auto resumed = run(tiny_train(dir, "diffq", {"--penalty", "10", "--group-size", "8", "--resume", "--json"}));
  EXPECT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(resumed.out)["accuracy"], m["accuracy"]);
}

TEST(Cli, EveryMethodTrains) {
  for (const auto& method : diffq::train::methods()) {
    if (method.name == "lsq-mixed") continue;  // needs a configuration file: OneShotCli.*
    const auto dir = cli_test::temp_dir("m_" + method.name);
    std::vector<std::string> more;
    if (method.name != "fp32" && method.name != "diffq" && method.name != "oneshot") more = {"--bits", "4"};
    auto r = run(tiny_train(dir, method.name, more));
    ASSERT_EQ(r.status, 0) << method.name << ": " << r.err;
    const auto m = read_json(dir + "/metrics.json");
    EXPECT_EQ(m["method"], method.name);
    if (method.name == "fp32") {
      EXPECT_DOUBLE_EQ(m["mean_bits"].get<double>(), 32.0);
      EXPECT_NEAR(m["true_mib"].get<double>(), m["fp32_mib"].get<double>(), 1e-12);
    } else if (method.name == "oneshot") {
      // Saved at the max path: searchable layers at 6 bits, first and last at 8.
      EXPECT_GE(m["mean_bits"].get<double>(), 6.0);
      EXPECT_LE(m["mean_bits"].get<double>(), 8.0);
    } else if (method.name != "diffq") {
      EXPECT_DOUBLE_EQ(m["mean_bits"].get<double>(), 4.0) << method.name;
      EXPECT_GT(m["compression"].get<double>(), 3.0) << method.name;
    }
    auto e = run({"eval", dir + "/model.diffq", "--data-dir", cli_test::tiny_fashion(), "--json"});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_EQ(nlohmann::json::parse(e.out)["accuracy"], m["accuracy"]) << method.name;
  }
}

TEST(Cli, EveryModelRunsForwardAndBackward) {
  for (const auto& task : diffq::models::task_names()) {
    for (const auto& name : diffq::models::model_names(task)) {
      diffq::models::ModelConfig c;
      c.task = task;
      c.name = name;
      c.vocab = 50;
      c.context = 8;
      c.dim = 16;
      auto model = diffq::models::make_model(c);
      // Only the BatchNorm ResNets (resnet20's default, the one-shot ResNet) have buffers.
      const bool oneshot = name == "oneshot-resnet";
      EXPECT_EQ(model->buffers().empty(), name != "resnet20" && !oneshot) << name;
      auto x = task == "kjv-lm" ? torch::randint(0, 50, {3, 8}, torch::kInt64) : torch::randn({3, 1, 28, 28});
      auto y = model->forward(x);
      if (task == "kjv-lm") EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 8, 50})) << name;
      else EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 10})) << name;
      y.sum().backward();
      for (const auto& p : model->named_parameters()) {
        // The one-shot ResNet runs in float with one BatchNorm of each
        // switchable set: its convolution and linear weights all learn.
        if (oneshot && p.key().find(".conv.weight") == std::string::npos &&
            p.key().find(".linear.weight") == std::string::npos)
          continue;
        EXPECT_TRUE(p.value().grad().defined()) << name << " " << p.key();
      }
    }
  }
  diffq::models::ModelConfig c;
  c.name = "resnet20";
  auto resnet = diffq::models::make_model(c);
  const auto n = diffq::models::count_parameters(*resnet);
  EXPECT_GT(n, 250000);
  EXPECT_LT(n, 300000);
}

TEST(Cli, LanguageModelOnTinyText) {
  const auto dir = cli_test::temp_dir("lm");
  const std::string text = std::string(DIFFQ_CLI_FIXTURES) + "/kjv_tiny.txt";
  for (const char* model : {"transformer", "lstm"}) {
    auto r = run({"train", "--task", "kjv-lm", "--model", model, "--text", text, "--context", "8",
                  "--dim", "16", "--layers", "1", "--epochs", "2", "--batch-size", "4", "--method", "diffq",
                  "--min-size", "0.0001", "--group-size", "4", "--out", dir + "/" + model, "--progress", "none"});
    ASSERT_EQ(r.status, 0) << r.err;
    const auto m = read_json(dir + "/" + model + "/metrics.json");
    EXPECT_TRUE(m.contains("perplexity"));
    EXPECT_GT(m["perplexity"].get<double>(), 1.0);
    auto e = run({"eval", dir + "/" + model + "/model.diffq", "--text", text, "--json"});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_NEAR(nlohmann::json::parse(e.out)["perplexity"].get<double>(), m["perplexity"].get<double>(), 1e-9);
  }
}

TEST(Cli, CompressAndRestoreTorchScript) {
  const auto dir = cli_test::temp_dir("compress");
  const auto pt = script_file(dir);
  auto u = run({"compress", pt, "-o", dir + "/u4.diffq", "--bits", "4", "--min-size", "0.001"});
  ASSERT_EQ(u.status, 0) << u.err;
  auto info = diffq::inspect(dir + "/u4.diffq");
  for (const auto& t : info.tensors)
    if (t.name != "b") EXPECT_EQ(t.bits_histogram[4], t.numel) << t.name;

  // Budget 3 bits: w2 (values 100x smaller) has a 10^4 times smaller squared
  // error per bit saved, so it loses bits first and w1 keeps more.
  auto b = run({"compress", pt, "-o", dir + "/b3.diffq", "--budget", "3", "--min-bits", "2",
                "--max-bits", "8", "--min-size", "0.001"});
  ASSERT_EQ(b.status, 0) << b.err;
  const auto state = diffq::load(dir + "/b3.diffq");
  int w1 = 0, w2 = 0;
  double bits = 0, n = 0;
  for (const auto& r : state.tensors) {
    if (r.encoding != diffq::Encoding::kUniform) continue;
    bits += r.bits * double(r.numel());
    n += double(r.numel());
    if (r.name == "w1") w1 = r.bits;
    if (r.name == "w2") w2 = r.bits;
  }
  EXPECT_LE(bits / n, 3.0 + 1e-9);
  EXPECT_GT(w1, w2);
  EXPECT_EQ(state.options.at("bits"), "mixed");

  // Reverse: back to TorchScript, with the de-quantized weights.
  auto back = run({"compress", "--restore", dir + "/u4.diffq", "--template", pt, "-o", dir + "/back.pt"});
  ASSERT_EQ(back.status, 0) << back.err;
  auto restored = torch::jit::load(dir + "/back.pt");
  const auto s4 = diffq::load(dir + "/u4.diffq");
  for (const auto& r : s4.tensors) {
    auto values = diffq::dequantize(r);
    auto t = restored.attr(r.name).toTensor().contiguous();
    ASSERT_EQ(size_t(t.numel()), values.size());
    EXPECT_TRUE(torch::equal(t, torch::tensor(values).view(t.sizes()))) << r.name;
  }
  auto x = torch::randn({2, 32});
  EXPECT_EQ(restored.forward({x}).toTensor().sizes(), (std::vector<int64_t>{2, 32}));

  auto missing = run({"compress", "--restore", dir + "/u4.diffq", "-o", dir + "/x.pt"});
  EXPECT_EQ(missing.status, 2);
  EXPECT_TRUE(contains(missing.err, "--template")) << missing.err;
  auto bad = run({"compress", "/nonexistent/net.pt", "-o", dir + "/x.diffq", "--bits", "4"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.err, "/nonexistent/net.pt")) << bad.err;
  auto nobits = run({"compress", pt, "-o", dir + "/x.diffq"});
  EXPECT_EQ(nobits.status, 2);
}

TEST(Cli, SummarizeAndList) {
  const auto dir = cli_test::temp_dir("summary");
  ASSERT_EQ(run(tiny_train(dir + "/runs/a", "fp32")).status, 0);
  ASSERT_EQ(run(tiny_train(dir + "/runs/b", "qat", {"--bits", "2"})).status, 0);
  auto s = run({"summarize", dir + "/runs", "--md", dir + "/t.md", "--dat", dir + "/t.dat", "--title", "T"});
  ASSERT_EQ(s.status, 0) << s.err;
  std::ifstream md(dir + "/t.md");
  std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(text, "## T") && contains(text, "qat 2b") && contains(text, "fp32")) << text;
  EXPECT_TRUE(fs::exists(dir + "/t.dat"));
  auto l = run({"list"});
  EXPECT_EQ(l.status, 0);
  EXPECT_TRUE(contains(l.out, "resnet20") && contains(l.out, "method diffq")) << l.out;
}

// With --threads > 1 the executable re-executes itself with the thread
// pools' wait settings the environment lacks (tools/thread_pools.h); a value
// the user set is kept; one thread, or DIFFQ_KEEP_THREAD_ENV=1, changes
// nothing. metrics.json records what the run had.
TEST(Cli, MoreThanOneThreadRunsWithSleepingThreadPools) {
  const auto dir = cli_test::temp_dir("thread_env");
  auto train = [&](const std::string& env, const std::string& name, int threads) {
    std::string command = "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_THREAD_TIMEOUT -u DIFFQ_KEEP_THREAD_ENV " +
                          env + " " + DIFFQ_TOOL;
    for (const auto& a : tiny_train(dir + "/" + name, "fp32", {"--threads", std::to_string(threads)})) {
      command += " '" + a + "'";
    }
    const int s = std::system((command + " >/dev/null 2>&1").c_str());
    EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 0) << command;
    return read_json(dir + "/" + name + "/metrics.json")["thread_environment"];
  };
  auto e = train("", "two", 2);
  EXPECT_EQ(e["GOMP_SPINCOUNT"], "3000");
  EXPECT_TRUE(e["OMP_WAIT_POLICY"].is_null());
  EXPECT_EQ(e["OPENBLAS_THREAD_TIMEOUT"], "4");
  e = train("OMP_WAIT_POLICY=PASSIVE", "user_policy", 2);  // the user's OpenMP setting replaces the spin count
  EXPECT_EQ(e["OMP_WAIT_POLICY"], "PASSIVE");
  EXPECT_TRUE(e["GOMP_SPINCOUNT"].is_null());
  EXPECT_EQ(e["OPENBLAS_THREAD_TIMEOUT"], "4");
  e = train("GOMP_SPINCOUNT=77", "user_spin", 2);
  EXPECT_EQ(e["GOMP_SPINCOUNT"], "77");
  e = train("", "one", 1);
  EXPECT_TRUE(e["GOMP_SPINCOUNT"].is_null());
  EXPECT_TRUE(e["OPENBLAS_THREAD_TIMEOUT"].is_null());
  e = train("DIFFQ_KEEP_THREAD_ENV=1", "kept", 2);
  EXPECT_TRUE(e["GOMP_SPINCOUNT"].is_null());
}

// The tool runs on jemalloc keeping freed pages (its peak memory follows the
// live tensors; diffq/allocator.h), and a user's MALLOC_CONF wins.
TEST(Cli, ToolRunsOnJemallocKeepingFreedPages) {
  const auto dir = cli_test::temp_dir("allocator");
  auto train = [&](const std::string& env, const std::string& name) {
    std::string command = "env -u MALLOC_CONF -u LD_PRELOAD " + env + " " + DIFFQ_TOOL;
    for (const auto& a : tiny_train(dir + "/" + name, "fp32", {})) command += " '" + a + "'";
    const int s = std::system((command + " >/dev/null 2>&1").c_str());
    EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 0) << command;
    return read_json(dir + "/" + name + "/metrics.json")["allocator"];
  };
  auto a = train("", "default");
#if DIFFQ_TOOL_JEMALLOC
  EXPECT_EQ(a["name"], "jemalloc");
  EXPECT_FALSE(a["version"].get<std::string>().empty());
  EXPECT_EQ(a["dirty_decay_ms"], -1);
  EXPECT_EQ(a["muzzy_decay_ms"], -1);
  a = train("MALLOC_CONF=dirty_decay_ms:1000", "user_value");
  EXPECT_EQ(a["name"], "jemalloc");
  EXPECT_EQ(a["dirty_decay_ms"], 1000);
  EXPECT_EQ(a["muzzy_decay_ms"], -1);
#else
  EXPECT_EQ(a["name"], "libc");  // built without jemalloc (sanitizer builds)
#endif
}

TEST(Cli, ExecutableExitStatus) {
  auto status = [](const std::string& args) {
    const int s = std::system((std::string(DIFFQ_TOOL) + " " + args + " >/dev/null 2>&1").c_str());
    return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  };
  EXPECT_EQ(status("--help"), 0);
  EXPECT_EQ(status("list"), 0);
  EXPECT_NE(status(""), 0);
  EXPECT_NE(status("train --method nope --out /tmp/x"), 0);
  EXPECT_EQ(status("inspect /nonexistent/file.diffq"), 1);
}
