// The registry of compression methods. To add a method, add one entry to
// `registry()` below (and, if it needs options of its own, read them from
// `MethodOptions::extra` via `number()` or add a field to MethodOptions).
#include "diffq/train/methods.h"

#include "diffq/quant_noise.h"

#include <cstdlib>

#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/lsq_quantizer.h"
#include "diffq/uniform_quantizer.h"

namespace diffq {
namespace train {

namespace {

DiscoveryOptions discovery(const MethodOptions& o) {
  DiscoveryOptions d;
  d.min_size(o.min_size);
  d.float16(o.float16);
  d.exclude(o.exclude);
  return d;
}

std::vector<MethodInfo> registry() {
  const std::vector<std::string> disc = {"min_size", "float16", "exclude"};
  auto with = [&](std::vector<std::string> v) {
    v.insert(v.end(), disc.begin(), disc.end());
    return v;
  };
  std::vector<MethodInfo> r;

  MethodInfo fp32;
  fp32.name = "fp32";
  fp32.summary = "float32 baseline, no quantization";
  r.push_back(fp32);

  MethodInfo ptq;
  ptq.name = "ptq";
  ptq.summary = "train in float, then uniform min/max quantization to --bits";
  ptq.options = with({"bits"});
  ptq.make = [](const ModelRef& m, const MethodOptions& o, uint64_t) {
    return std::unique_ptr<Quantizer>(new UniformQuantizer(
        m, UniformOptions().bits(o.bits).qat(false).discovery(discovery(o))));
  };
  r.push_back(ptq);

  MethodInfo qat;
  qat.name = "qat";
  qat.summary = "quantization-aware training, uniform --bits, straight-through estimator";
  qat.options = with({"bits"});
  qat.make = [](const ModelRef& m, const MethodOptions& o, uint64_t) {
    return std::unique_ptr<Quantizer>(new UniformQuantizer(
        m, UniformOptions().bits(o.bits).qat(true).discovery(discovery(o))));
  };
  r.push_back(qat);

  MethodInfo lsq;
  lsq.name = "lsq";
  lsq.summary = "learned step size quantization (LSQ) at --bits";
  lsq.options = with({"bits", "bits_lr"});
  lsq.make = [](const ModelRef& m, const MethodOptions& o, uint64_t) {
    return std::unique_ptr<Quantizer>(
        new LSQQuantizer(m, LSQOptions().bits(o.bits).discovery(discovery(o))));
  };
  r.push_back(lsq);

  MethodInfo dq;
  dq.name = "diffq";
  dq.summary = "DiffQ: pseudo quantization noise, learned bits per group, size penalty --penalty";
  dq.options = with({"penalty", "group_size", "bits_lr", "min_bits", "max_bits", "init_bits",
                     "extra_bits", "param", "noise"});
  dq.penalized = true;  // its noise is a function of the step: set_steps() on resume
  dq.default_own_lr = [](double) { return 1e-2; };
  dq.make = [](const ModelRef& m, const MethodOptions& o, uint64_t seed) {
    DIFFQ_CHECK(o.param == "bits" || o.param == "noise", "--param must be bits or noise, not '",
                o.param, "'");
    DIFFQ_CHECK(o.noise == "gaussian" || o.noise == "uniform",
                "--noise must be gaussian or uniform, not '", o.noise, "'");
    return std::unique_ptr<Quantizer>(new DiffQuantizer(
        m, DiffQOptions()
               .group_size(o.group_size)
               .min_bits(o.min_bits)
               .max_bits(o.max_bits)
               .init_bits(o.init_bits)
               .extra_bits(o.extra_bits)
               .param(o.param == "bits" ? Parametrization::kBits : Parametrization::kNoise)
               .noise(o.noise == "gaussian" ? NoiseKind::kGaussian : NoiseKind::kUniform)
               .seed(seed * 0x9E3779B97F4A7C15ull + 0x5eed)
               .discovery(discovery(o))));
  };
  r.push_back(dq);

  MethodInfo qn;
  qn.name = "quant-noise";
  qn.summary =
      "Quant-Noise: scalar int4/int8 noise (--bits 4|8), or --opt qn_mode=proxy|ipq; --opt p=, "
      "block_size=, centroids= (iPQ: one stage, k-means on the weights at the start)";
  qn.options = with({"bits", "bits_lr"});
  qn.replay_steps_on_resume = true;  // Bernoulli masks come from a generator it owns
  qn.make = [](const ModelRef& m, const MethodOptions& o, uint64_t seed) {
    const auto it = o.extra.find("qn_mode");
    std::string mode;
    if (it != o.extra.end()) {
      mode = it->second;
    } else {
      DIFFQ_CHECK(o.bits == 4 || o.bits == 8, "quant-noise's scalar modes take --bits 4 or 8, not ",
                  o.bits, " (or choose --opt qn_mode=proxy|ipq)");
      mode = o.bits == 4 ? "int4" : "int8";
    }
    DIFFQ_CHECK(mode == "int4" || mode == "int8" || mode == "proxy" || mode == "ipq",
                "qn_mode must be int4, int8, proxy or ipq, not '", mode, "'");
    auto options = QuantNoiseOptions()
                       .mode(mode == "int4"    ? QuantNoiseMode::kScalarInt4
                             : mode == "ipq"   ? QuantNoiseMode::kIPQ
                             : mode == "proxy" ? QuantNoiseMode::kProxyDrop
                                               : QuantNoiseMode::kScalarInt8)
                       .p(o.number("p", mode == "ipq" ? 0.1 : 0.5))
                       .block_size(static_cast<int64_t>(o.number("block_size", 8)))
                       .num_centroids(static_cast<int64_t>(o.number("centroids", 256)))
                       .seed(seed)
                       .discovery(discovery(o));
    auto q = std::make_unique<QuantNoiseQuantizer>(m, options);
    if (mode == "ipq") q->quantize_stage({"*"});  // the centroids are in parameters()
    return std::unique_ptr<Quantizer>(std::move(q));
  };
  r.push_back(qn);

  return r;
}

}  // namespace

double MethodOptions::number(const std::string& key, double fallback) const {
  auto it = extra.find(key);
  if (it == extra.end()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  DIFFQ_CHECK(end && *end == '\0' && !it->second.empty(), "option ", key, "=", it->second,
              " is not a number");
  return v;
}

const std::vector<MethodInfo>& methods() {
  static const std::vector<MethodInfo> all = registry();
  return all;
}

const MethodInfo& find_method(const std::string& name) {
  std::string known;
  for (const auto& m : methods()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  throw Error("unknown method '" + name + "' (one of: " + known + ")");
}

nlohmann::json options_json(const MethodInfo& method, const MethodOptions& o) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& key : method.options) {
    if (key == "bits") j[key] = o.bits;
    else if (key == "penalty") j[key] = o.penalty;
    else if (key == "group_size") j[key] = o.group_size;
    else if (key == "bits_lr") j[key] = o.bits_lr;
    else if (key == "min_bits") j[key] = o.min_bits;
    else if (key == "max_bits") j[key] = o.max_bits;
    else if (key == "init_bits") j[key] = o.init_bits;
    else if (key == "extra_bits") j[key] = o.extra_bits;
    else if (key == "param") j[key] = o.param;
    else if (key == "noise") j[key] = o.noise;
    else if (key == "min_size") j[key] = o.min_size;
    else if (key == "float16") j[key] = o.float16;
    else if (key == "exclude") j[key] = o.exclude;
  }
  for (const auto& kv : o.extra) j[kv.first] = kv.second;
  return j;
}

}  // namespace train
}  // namespace diffq
