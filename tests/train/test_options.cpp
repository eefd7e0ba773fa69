// Options round trips: text <-> numbers exactly, method options and run
// configurations through JSON, and options stored in model files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include <torch/torch.h>

#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/number_text.h"
#include "diffq/quant_noise.h"
#include "diffq/train/trainer.h"
#include "test_util_cli.h"

using namespace diffq;

namespace {

// The awkward values of the issue: six decimals would store them wrong.
const std::vector<double> kAwkward = {1e-7, 0.0001234567, 1.0 / 3.0, 2.0 / 3.0 * 1e-300, 123456789.123456789};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST(NumberText, RoundTripsBitForBit) {
  for (double v : kAwkward) {
    for (double s : {v, -v}) {
      EXPECT_TRUE(same_bits(parse_number(format_number(s), "x"), s)) << format_number(s);
    }
  }
  EXPECT_EQ(format_number(0.1), "0.1");
  EXPECT_EQ(format_number(5), "5");
  EXPECT_TRUE(std::isnan(parse_number(format_number(std::nan("")), "x")));
  EXPECT_THROW(parse_number("1.5x", "penalty"), Error);
  EXPECT_THROW(parse_number("", "penalty"), Error);
  EXPECT_EQ(parse_integer("-42", "n"), -42);
  EXPECT_THROW(parse_integer("99999999999999999999", "n"), Error);
  EXPECT_THROW(parse_integer("4.0", "n"), Error);
}

TEST(OptionsInModelFile, QuantizerOptionsRoundTripExactly) {
  const auto dir = cli_test::temp_dir("options_file");
  torch::nn::Linear layer(64, 64);
  {
    QuantNoiseQuantizer q(layer, QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8).p(1.0 / 3.0)
                                     .discovery(DiscoveryOptions().min_size(0.0001234567)));
    save(q.get_quantized_state(), dir + "/qn.diffq");
  }
  const auto qn = load(dir + "/qn.diffq");
  EXPECT_TRUE(same_bits(parse_number(qn.options.at("p"), "p"), 1.0 / 3.0)) << qn.options.at("p");
  EXPECT_TRUE(same_bits(parse_number(qn.options.at("min_size"), "min_size"), 0.0001234567));
  {
    DiffQuantizer q(layer, DiffQOptions().discovery(DiscoveryOptions().min_size(1e-7)));
    save(q.get_quantized_state(), dir + "/dq.diffq");
  }
  const auto dq = load(dir + "/dq.diffq");
  EXPECT_TRUE(same_bits(parse_number(dq.options.at("min_size"), "min_size"), 1e-7)) << dq.options.at("min_size");
  EXPECT_EQ(parse_noise_kind(dq.options.at("noise")), NoiseKind::kGaussian);
  EXPECT_EQ(parse_parametrization(dq.options.at("param")), Parametrization::kBits);
}

TEST(OptionsInModelFile, RunConfigurationRoundTripsThroughTheModelFile) {
  const auto dir = cli_test::temp_dir("run_config");
  train::TrainConfig c;
  c.model.width = 1.0 / 3.0;
  c.method = "diffq";
  c.method_options.penalty = 1e-7;
  c.method_options.min_size = 0.0001234567;
  c.method_options.bits_lr = 1.0 / 3.0 * 1e-2;
  c.method_options.group_size = 0;  // width 1/3 gives odd channel counts
  c.weight_decay = 1e-7;
  c.clip = 0.0001234567;
  c.lr = 1.0 / 3.0 * 1e-2;
  c.data.fashion_dir = cli_test::tiny_fashion();
  c.data.train_limit = 64;
  c.data.test_limit = 32;
  c.epochs = 1;
  c.batch_size = 32;
  c.progress = "none";
  c.out_dir = dir + "/run";
  train::run_training(c);
  const auto state = load(dir + "/run/model.diffq");
  const auto back = train::config_from_json(nlohmann::json::parse(state.options.at("run.config")));
  EXPECT_TRUE(same_bits(back.method_options.penalty, 1e-7));
  EXPECT_TRUE(same_bits(back.method_options.min_size, 0.0001234567));
  EXPECT_TRUE(same_bits(back.method_options.bits_lr, 1.0 / 3.0 * 1e-2));
  EXPECT_TRUE(same_bits(back.weight_decay, 1e-7));
  EXPECT_TRUE(same_bits(back.clip, 0.0001234567));
  EXPECT_TRUE(same_bits(back.lr, 1.0 / 3.0 * 1e-2));
  EXPECT_TRUE(same_bits(back.model.width, 1.0 / 3.0));
  EXPECT_TRUE(same_bits(parse_number(state.options.at("arch.width"), "w"), 1.0 / 3.0));
  EXPECT_EQ(train::to_json(back), train::to_json(c));
  // The quantizer's own record of min_size is exact too.
  EXPECT_TRUE(same_bits(parse_number(state.options.at("min_size"), "min_size"), 0.0001234567));
}

TEST(RunConfiguration, JsonRoundTripAndRefusals) {
  train::TrainConfig c;
  c.method = "quant-noise";
  c.method_options.bits = 8;
  c.method_options.exclude = {"fc*", "*.bias"};
  c.method_options.extra = {{"p", "0.25"}};
  c.seed = 18446744073709551615ull;
  for (double v : kAwkward) {
    c.method_options.penalty = v;
    c.lr = v;
    const auto j = train::to_json(c);
    const auto back = train::config_from_json(nlohmann::json::parse(j.dump()));
    EXPECT_EQ(train::to_json(back), j);
    EXPECT_TRUE(same_bits(back.lr, v));
    EXPECT_EQ(back.seed, c.seed);
    EXPECT_EQ(back.method_options.exclude, c.method_options.exclude);
    EXPECT_EQ(back.method_options.extra, c.method_options.extra);
  }
  EXPECT_THROW(train::config_from_json({{"learning_rate", 1}}), Error);
  EXPECT_THROW(train::config_from_json({{"lr", "fast"}}), Error);
  EXPECT_THROW(train::method_options_from_json({{"bitz", 3}}), Error);
  // The method's options as recorded in metrics.json are those it reads.
  const auto o = train::options_json(train::find_method("qat"), c.method_options);
  EXPECT_TRUE(o.contains("bits") && o.contains("min_size") && !o.contains("penalty"));
}

TEST(EnumNames, EveryNameParsesBack) {
  for (auto e : {Encoding::kFloat32, Encoding::kFloat16, Encoding::kUniform, Encoding::kDiffQGroups, Encoding::kLSQ,
                 Encoding::kProductQuantized, Encoding::kInteger, Encoding::kPerChannelUniform})
    EXPECT_EQ(parse_encoding(encoding_name(e)), e);
  for (auto c : {EntropyCoding::kNone, EntropyCoding::kZstd, EntropyCoding::kRans, EntropyCoding::kAuto})
    EXPECT_EQ(parse_entropy_coding(entropy_coding_name(c)), c);
  for (auto m : {QuantNoiseMode::kProxyDrop, QuantNoiseMode::kScalarInt4, QuantNoiseMode::kScalarInt8, QuantNoiseMode::kIPQ})
    EXPECT_EQ(parse_quant_noise_mode(quant_noise_mode_name(m)), m);
  EXPECT_EQ(parse_quant_noise_mode("proxy"), QuantNoiseMode::kProxyDrop);
  for (auto d : {DType::kFloat32, DType::kInt64, DType::kBool}) EXPECT_EQ(parse_dtype(dtype_name(d)), d);
  try {
    parse_entropy_coding("gzip");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("none, zstd, rans, auto"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_noise_kind("laplace"), Error);
  EXPECT_THROW(parse_parametrization("logits"), Error);
}
