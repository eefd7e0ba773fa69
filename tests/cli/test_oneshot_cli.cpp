// The one-shot workflow through the tool: float pretraining, coupled
// training from it (--init), `diffq search` (budgets within [0.9·B, B],
// model files that `diffq eval` restores to the same accuracy, reruns
// identical), and `lsq-mixed` training of a searched configuration.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "diffq/oneshot/bit_config.h"
#include "test_util_cli.h"

using cli_test::contains;
using cli_test::run;

namespace {

std::vector<std::string> train_args(const std::string& out, const std::string& method,
                                    std::vector<std::string> more = {}) {
  std::vector<std::string> a = {"train", "--model", "oneshot-resnet", "--width", "0.5", "--method", method,
                                "--epochs", "1", "--batch-size", "32", "--train-limit", "192",
                                "--data-dir", cli_test::tiny_fashion(), "--out", out, "--progress", "none"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<std::string> search_args(const std::string& run_dir, const std::string& out) {
  return {"search", run_dir, "--budget-bitops", "W3A3", "--budget-mib", "W4A4", "--uniform", "--batch-size", "32",
          "--held-out-batches", "2", "--calibration-batches", "2", "--data-dir", cli_test::tiny_fashion(),
          "--out", out, "--json"};
}

}  // namespace

TEST(OneShotCli, PretrainCoupledTrainingSearchEvalAndMixedRetraining) {
  const auto root = cli_test::temp_dir("oneshot");
  const auto fp32 = root + "/fp32", coupled = root + "/coupled";
  auto a = run(train_args(fp32, "fp32"));
  ASSERT_EQ(a.status, 0) << a.err;
  auto b = run(train_args(coupled, "oneshot", {"--init", fp32 + "/model.diffq", "--opt", "paths=2"}));
  ASSERT_EQ(b.status, 0) << b.err;
  ASSERT_TRUE(std::filesystem::exists(coupled + "/coupled.pt"));
  const auto m = read_json(coupled + "/metrics.json");
  auto e = run({"eval", coupled + "/model.diffq", "--data-dir", cli_test::tiny_fashion(), "--json"});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["accuracy"], m["accuracy"]);

  auto s = run(search_args(coupled, root + "/search"));
  ASSERT_EQ(s.status, 0) << s.err;
  const auto points = nlohmann::json::parse(s.out);
  ASSERT_EQ(points.size(), 7u);  // W2A2..W6A6, one BitOPs budget, one size budget
  std::map<std::string, nlohmann::json> by_label;
  for (const auto& p : points) by_label[p["label"].get<std::string>()] = p;
  const double w3a3 = by_label.at("W3A3")["bitops"].get<double>();
  const auto& searched = by_label.at("bitops=W3A3");
  EXPECT_LE(searched["bitops"].get<double>(), w3a3);
  EXPECT_GE(searched["bitops"].get<double>(), 0.9 * w3a3);
  const double w4 = by_label.at("W4A4")["weight_mib"].get<double>();
  const auto& sized = by_label.at("mib=W4A4");
  EXPECT_LE(sized["weight_mib"].get<double>(), w4 * (1 + 1e-12));
  EXPECT_GE(sized["weight_mib"].get<double>(), 0.9 * w4);
  // Each point's model file is an ordinary model file: eval restores it
  // (bits, BatchNorm choice, recalibrated statistics) to the same accuracy.
  for (const auto& p : points) {
    auto pe = run({"eval", p["model_file"].get<std::string>(), "--data-dir", cli_test::tiny_fashion(), "--json"});
    ASSERT_EQ(pe.status, 0) << pe.err;
    EXPECT_NEAR(nlohmann::json::parse(pe.out)["accuracy"].get<double>(), p["accuracy"].get<double>(), 1e-9)
        << p["label"];
  }
  // The final check compared the searched configuration with uniform W3A3
  // (the only uniform one within [0.9·B, B]) on held-out rounds.
  EXPECT_EQ(searched["uniform_bits"], 3);
  EXPECT_GE(searched["searched_error"].get<double>(), 0.0);
  EXPECT_GE(searched["uniform_error"].get<double>(), 0.0);
  EXPECT_EQ(searched["uniform_kept"].get<bool>(),
            searched["uniform_error"].get<double>() < searched["searched_error"].get<double>());
  if (searched["uniform_kept"].get<bool>()) EXPECT_EQ(searched["config"], by_label.at("W3A3")["config"]);
  EXPECT_EQ(by_label.at("W3A3")["uniform_bits"], 0);  // read-outs: no check
  // The curve's data and its gnuplot script, which draws it.
  ASSERT_TRUE(std::filesystem::exists(root + "/search/curve.gnuplot"));
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0) {
    const auto command = "cd '" + root + "/search' && gnuplot curve.gnuplot";
    ASSERT_EQ(std::system(command.c_str()), 0);
    EXPECT_GT(std::filesystem::file_size(root + "/search/curve.svg"), 1000u);
  }
  auto inspect = run({"inspect", by_label.at("W3A3")["model_file"].get<std::string>()});
  ASSERT_EQ(inspect.status, 0) << inspect.err;
  // Rerunning gives the same configurations and accuracies (one thread).
  auto again = run(search_args(coupled, root + "/search2"));
  ASSERT_EQ(again.status, 0) << again.err;
  const auto points2 = nlohmann::json::parse(again.out);
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_EQ(points2[i]["config"], points[i]["config"]);
    EXPECT_EQ(points2[i]["accuracy"], points[i]["accuracy"]);
  }
  // The searched configuration trained separately (lsq-mixed) from the same float model.
  const auto mixed = root + "/mixed";
  auto t = run(train_args(mixed, "lsq-mixed",
                          {"--init", fp32 + "/model.diffq", "--opt", "config=" + searched["config_file"].get<std::string>()}));
  ASSERT_EQ(t.status, 0) << t.err;
  const auto mm = read_json(mixed + "/metrics.json");
  auto me = run({"eval", mixed + "/model.diffq", "--data-dir", cli_test::tiny_fashion(), "--json"});
  ASSERT_EQ(me.status, 0) << me.err;
  EXPECT_EQ(nlohmann::json::parse(me.out)["accuracy"], mm["accuracy"]);
}

TEST(OneShotCli, RefusalsNameTheProblem) {
  const auto root = cli_test::temp_dir("oneshot_refusals");
  auto a = run(train_args(root + "/fp32", "fp32"));
  ASSERT_EQ(a.status, 0) << a.err;
  auto s = run({"search", root + "/fp32", "--uniform", "--data-dir", cli_test::tiny_fashion()});
  EXPECT_NE(s.status, 0);
  EXPECT_TRUE(contains(s.err, "coupled.pt")) << s.err;
  auto none = run({"search", root + "/fp32"});
  EXPECT_NE(none.status, 0);
  auto metric = run({"search", root + "/fp32", "--uniform", "--metric", "top5"});
  EXPECT_NE(metric.status, 0);
  EXPECT_TRUE(contains(metric.err, "top5")) << metric.err;
  auto rounds = run({"search", root + "/fp32", "--uniform", "--compare-rounds", "-1"});
  EXPECT_NE(rounds.status, 0);
  EXPECT_TRUE(contains(rounds.err, "compare-rounds")) << rounds.err;
  auto mixed = run(train_args(root + "/mixed", "lsq-mixed"));
  EXPECT_NE(mixed.status, 0);
  EXPECT_TRUE(contains(mixed.err, "--opt config=")) << mixed.err;
  auto wrong_init = run(train_args(root + "/bad", "oneshot", {"--init", root + "/missing.diffq"}));
  EXPECT_NE(wrong_init.status, 0);
  EXPECT_TRUE(contains(wrong_init.err, "missing.diffq")) << wrong_init.err;
}
