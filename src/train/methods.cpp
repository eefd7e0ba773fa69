// The registry of compression methods. To add a method, add one entry to
// `registry()` below (and, if it needs options of its own, read them from
// `MethodOptions::extra` via `number()` or add a field to MethodOptions).
#include "diffq/train/methods.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <type_traits>

#include "diffq/quant_noise.h"

#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/lsq_quantizer.h"
#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/train/oneshot_step.h"
#include "diffq/number_text.h"
#include "diffq/uniform_quantizer.h"
#include "json_fields.h"

namespace diffq {
namespace train {

namespace {

DiscoveryOptions discovery(const MethodOptions& o) { return o.discovery(); }

// Every field of MethodOptions but `extra`, by name: the one list that JSON
// writing, reading and the per-method option lists use.
template <typename Options, typename Visit>
void for_each_field(Options& o, Visit&& visit) {
  visit("bits", o.bits);
  visit("penalty", o.penalty);
  visit("group_size", o.group_size);
  visit("bits_lr", o.bits_lr);
  visit("min_bits", o.min_bits);
  visit("max_bits", o.max_bits);
  visit("init_bits", o.init_bits);
  visit("extra_bits", o.extra_bits);
  visit("param", o.param);
  visit("noise", o.noise);
  visit("target_mib", o.target_mib);
  visit("target_bits", o.target_bits);
  visit("frozen_fraction", o.frozen_fraction);
  visit("min_size", o.min_size);
  visit("float16", o.float16);
  visit("exclude", o.exclude);
}

// The options every quantizing method reads (discovery), after its own.
std::vector<std::string> with_discovery(std::vector<std::string> own) {
  for (const char* d : {"min_size", "float16", "exclude"}) own.push_back(d);
  return own;
}

MethodInfo method(std::string name, std::string summary, std::vector<std::string> options = {}) {
  MethodInfo m;
  m.name = std::move(name);
  m.summary = std::move(summary);
  m.options = std::move(options);
  return m;
}

MethodInfo uniform_method(bool qat) {
  auto m = qat ? method("qat", "quantization-aware training, uniform --bits, straight-through estimator",
                        with_discovery({"bits"}))
               : method("ptq", "train in float, then uniform min/max quantization to --bits", with_discovery({"bits"}));
  m.make = [qat](const ModelRef& model, const MethodOptions& o, uint64_t) {
    return std::unique_ptr<Quantizer>(
        new UniformQuantizer(model, UniformOptions().bits(o.bits).qat(qat).discovery(discovery(o))));
  };
  return m;
}

MethodInfo lsq_method() {
  auto m = method("lsq", "learned step size quantization (LSQ) at --bits", with_discovery({"bits", "bits_lr"}));
  m.make = [](const ModelRef& model, const MethodOptions& o, uint64_t) {
    return std::unique_ptr<Quantizer>(new LSQQuantizer(model, LSQOptions().bits(o.bits).discovery(discovery(o))));
  };
  return m;
}

MethodInfo diffq_method() {
  auto m = method("diffq", "DiffQ: pseudo quantization noise, learned bits per group, size penalty --penalty",
                  with_discovery({"penalty", "group_size", "bits_lr", "min_bits", "max_bits", "init_bits",
                                  "extra_bits", "param", "noise", "target_mib", "target_bits", "frozen_fraction"}));
  m.extra_options = {"target_rate", "target_warmup"};
  m.penalized = true;  // its noise is a function of the step: set_steps() on resume
  m.default_own_lr = [](double) { return 1e-2; };
  m.make = [](const ModelRef& model, const MethodOptions& o, uint64_t seed) {
    return std::unique_ptr<Quantizer>(new DiffQuantizer(
        model, DiffQOptions()
                   .group_size(o.group_size)
                   .min_bits(o.min_bits)
                   .max_bits(o.max_bits)
                   .init_bits(o.init_bits)
                   .extra_bits(o.extra_bits)
                   .param(parse_parametrization(o.param))
                   .noise(parse_noise_kind(o.noise))
                   .seed(seed * 0x9E3779B97F4A7C15ull + 0x5eed)
                   .discovery(discovery(o))));
  };
  return m;
}

std::unique_ptr<Quantizer> make_quant_noise(const ModelRef& model, const MethodOptions& o, uint64_t seed) {
  const auto it = o.extra.find("qn_mode");
  QuantNoiseMode mode;
  if (it != o.extra.end()) {
    mode = parse_quant_noise_mode(it->second);
  } else {
    DIFFQ_CHECK(o.bits == 4 || o.bits == 8, "quant-noise's scalar modes take --bits 4 or 8, not ", o.bits,
                " (or choose --opt qn_mode=proxy|ipq)");
    mode = o.bits == 4 ? QuantNoiseMode::kScalarInt4 : QuantNoiseMode::kScalarInt8;
  }
  auto options = QuantNoiseOptions()
                     .mode(mode)
                     .p(o.number("p", mode == QuantNoiseMode::kIPQ ? 0.1 : 0.5))
                     .block_size(static_cast<int64_t>(o.number("block_size", 8)))
                     .num_centroids(static_cast<int64_t>(o.number("centroids", 256)))
                     .seed(seed)
                     .discovery(discovery(o));
  auto q = std::make_unique<QuantNoiseQuantizer>(model, options);
  if (mode == QuantNoiseMode::kIPQ) q->quantize_stage({"*"});  // the centroids are in parameters()
  return q;
}

MethodInfo quant_noise_method() {
  auto m = method("quant-noise",
                  "Quant-Noise: scalar int4/int8 noise (--bits 4|8), or --opt qn_mode=proxy|ipq; --opt p=, "
                  "block_size=, centroids= (iPQ: one stage, k-means on the weights at the start)",
                  with_discovery({"bits", "bits_lr"}));
  m.extra_options = {"qn_mode", "p", "block_size", "centroids"};
  m.replay_steps_on_resume = true;  // its ranges are refreshed on a schedule of steps it keeps
  m.make = make_quant_noise;
  return m;
}

MethodInfo oneshot_method() {
  auto m = method("oneshot",
                  "one-shot mixed precision (weight-coupled LSQ over candidate bit-widths, max path + K random "
                  "paths, distillation, IDM, bit-width scheduler); --opt paths=, idm=, kd=, clip_value=, "
                  "scheduler=0|1, steps_per_epoch=",
                  with_discovery({"bits_lr"}));
  m.extra_options = {"paths", "idm", "kd", "clip_value", "scheduler", "steps_per_epoch"};
  // Adam moves a parameter by about its learning rate per step whatever the
  // gradient's scale: the weight steps (0.003 for an 8-bit stem) need a
  // learning rate far below the weights'.
  m.default_own_lr = [](double lr) { return lr / 100; };
  m.make = [](const ModelRef& model, const MethodOptions& o, uint64_t) {
    auto d = discovery(o);
    // Every conv and linear weight, however small, unless told otherwise.
    if (o.min_size == DiscoveryOptions().min_size()) d.min_size(0);
    return std::unique_ptr<Quantizer>(new oneshot::OneShotQuantizer(model, oneshot::OneShotOptions().discovery(d)));
  };
  m.make_step = [](const MethodOptions& o, uint64_t seed) {
    const double paths = o.number("paths", 3), steps_per_epoch = o.number("steps_per_epoch", 0);
    const double scheduler = o.number("scheduler", 1);
    DIFFQ_CHECK(paths >= 0 && paths <= 64 && paths == std::floor(paths), "--opt paths must be a whole number in 0..64, not ", paths);
    DIFFQ_CHECK(steps_per_epoch >= 0 && steps_per_epoch == std::floor(steps_per_epoch),
                "--opt steps_per_epoch must be a whole number >= 0, not ", steps_per_epoch);
    DIFFQ_CHECK(scheduler == 0 || scheduler == 1, "--opt scheduler must be 0 or 1, not ", scheduler);
    auto options = OneShotStepOptions()
                       .random_paths(static_cast<int64_t>(paths))
                       .distortion(o.number("idm", 0.01))
                       .distillation(o.number("kd", 0.5))
                       .clip_value(o.number("clip_value", 1.0))
                       .scheduler(scheduler == 1)
                       .steps_per_epoch(static_cast<int64_t>(steps_per_epoch))
                       .seed(seed);
    DIFFQ_CHECK(options.distortion() >= 0 && std::isfinite(options.distortion()), "--opt idm must be >= 0");
    DIFFQ_CHECK(options.distillation() >= 0 && options.distillation() <= 1, "--opt kd must be in [0, 1]");
    DIFFQ_CHECK(options.clip_value() >= 0 && std::isfinite(options.clip_value()), "--opt clip_value must be >= 0");
    return std::unique_ptr<StepStrategy>(new OneShotStep(options));
  };
  return m;
}

MethodInfo lsq_mixed_method() {
  auto m = method("lsq-mixed",
                  "LSQ quantization-aware training of one mixed-precision configuration (--opt config=FILE.json, "
                  "as written by `diffq search`), with the one-shot quantizer's modules",
                  with_discovery({"bits_lr"}));
  m.extra_options = {"config"};
  m.default_own_lr = [](double lr) { return lr / 100; };  // as oneshot
  m.make = [](const ModelRef& model, const MethodOptions& o, uint64_t) {
    const auto it = o.extra.find("config");
    DIFFQ_CHECK(it != o.extra.end(), "lsq-mixed needs --opt config=FILE.json (a configuration written by `diffq search`)");
    std::ifstream in(it->second);
    DIFFQ_CHECK(in.good(), "cannot read the configuration '", it->second, "'");
    const auto json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    DIFFQ_CHECK(!json.is_discarded(), "the configuration '", it->second, "' is not valid JSON");
    auto d = discovery(o);
    if (o.min_size == DiscoveryOptions().min_size()) d.min_size(0);
    auto q = std::make_unique<oneshot::OneShotQuantizer>(model, oneshot::OneShotOptions().discovery(d));
    oneshot::BitConfig config;
    try {
      config = oneshot::config_from_json(q->layers(), json);
    } catch (const Error& e) {
      throw Error("the configuration '" + it->second + "': " + e.what());
    }
    for (size_t i : q->searchable_layers()) q->set_weight_candidates(i, {config.layers[i].weight});
    q->set_config(config);
    return std::unique_ptr<Quantizer>(std::move(q));
  };
  return m;
}

std::vector<MethodInfo> registry() {
  return {method("fp32", "float32 baseline, no quantization"), uniform_method(false), uniform_method(true),
          lsq_method(), diffq_method(), quant_noise_method(), oneshot_method(), lsq_mixed_method()};
}

}  // namespace

double MethodOptions::number(const std::string& key, double fallback) const {
  auto it = extra.find(key);
  if (it == extra.end()) return fallback;
  return parse_number(it->second, "option " + key);
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

double MethodOptions::effective_frozen_fraction() const {
  if (frozen_fraction >= 0) return frozen_fraction;
  return target_mib > 0 || target_bits > 0 ? kTargetFrozenFraction : 0.0;
}

DiscoveryOptions MethodOptions::discovery() const {
  return DiscoveryOptions().min_size(min_size).float16(float16).exclude(exclude);
}

nlohmann::json to_json(const MethodOptions& o) {
  nlohmann::json j = nlohmann::json::object();
  write_fields(j, o, [](const auto& obj, auto&& visit) { for_each_field(obj, visit); });
  j["extra"] = o.extra;
  return j;
}

MethodOptions method_options_from_json(const nlohmann::json& j) {
  MethodOptions o;
  read_fields(
      j, o, [](auto& obj, auto&& visit) { for_each_field(obj, visit); },
      [&](const std::string& key, const nlohmann::json& value) {
        if (key != "extra") return false;
        o.extra = value.get<std::map<std::string, std::string>>();
        return true;
      },
      "method option");
  return o;
}

void check_method_options(const MethodInfo& method, const MethodOptions& o) {
  const auto finite = [](const char* flag, double v) {
    DIFFQ_CHECK(std::isfinite(v), flag, " must be a finite number, not ", v);
  };
  DIFFQ_CHECK(o.bits >= 1 && o.bits <= 16, "--bits must be between 1 and 16, not ", o.bits);
  finite("--penalty", o.penalty);
  DIFFQ_CHECK(o.penalty >= 0, "--penalty must be zero or positive, not ", o.penalty);
  DIFFQ_CHECK(o.group_size >= 0, "--group-size must be zero (one bit-width per tensor) or positive, not ",
              o.group_size);
  finite("--bits-lr", o.bits_lr);
  DIFFQ_CHECK(o.bits_lr >= 0, "--bits-lr must be positive, not ", o.bits_lr);
  for (const auto& b : {std::make_pair("--min-bits", o.min_bits), std::make_pair("--max-bits", o.max_bits),
                        std::make_pair("--init-bits", o.init_bits), std::make_pair("--extra-bits", o.extra_bits)}) {
    finite(b.first, b.second);
    DIFFQ_CHECK(b.second >= 0 && b.second <= 16, b.first, " must be between 0 and 16, not ", b.second);
  }
  finite("--target-mib", o.target_mib);
  finite("--target-bits", o.target_bits);
  DIFFQ_CHECK(o.target_mib >= 0, "--target-mib must be zero (off) or a positive size, not ", o.target_mib);
  DIFFQ_CHECK(o.target_bits >= 0, "--target-bits must be zero (off) or a positive mean bit-width, not ",
              o.target_bits);
  DIFFQ_CHECK(!(o.target_mib > 0 && o.target_bits > 0), "--target-mib and --target-bits exclude each other");
  DIFFQ_CHECK(o.target_bits == 0 || (o.target_bits >= o.min_bits && o.target_bits <= o.max_bits + o.extra_bits),
              "--target-bits must lie between --min-bits and --max-bits (", o.min_bits, "..", o.max_bits, "), not ",
              o.target_bits);
  finite("--frozen-fraction", o.frozen_fraction);
  DIFFQ_CHECK((o.frozen_fraction >= 0 && o.frozen_fraction < 1) || o.frozen_fraction == -1,
              "--frozen-fraction must be in [0, 1) (or -1: ", kTargetFrozenFraction,
              " with a target, 0 without), not ", o.frozen_fraction);
  DIFFQ_CHECK(o.number("target_rate", 0.05) > 0, "--opt target_rate must be positive");
  const double warm = o.number("target_warmup", 0.3);
  DIFFQ_CHECK(warm >= 0 && warm <= 1, "--opt target_warmup must be a fraction of the steps in [0, 1], not ", warm);
  finite("--min-size", o.min_size);
  DIFFQ_CHECK(o.min_size >= 0, "--min-size must be zero or positive, not ", o.min_size);
  parse_parametrization(o.param);
  parse_noise_kind(o.noise);
  for (const auto& kv : o.extra) {
    const auto& known = method.extra_options;
    if (std::find(known.begin(), known.end(), kv.first) != known.end()) {
      if (kv.first == "qn_mode") parse_quant_noise_mode(kv.second);
      else if (kv.first == "config") DIFFQ_CHECK(!kv.second.empty(), "--opt config needs a file name");
      else finite(("--opt " + kv.first).c_str(), o.number(kv.first, 0));
      continue;
    }
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw Error("--opt " + kv.first + "=" + kv.second + ": --method " + method.name + " has no option '" +
                kv.first + "'" + (list.empty() ? " (it takes no --opt)" : " (it takes: " + list + ")"));
  }
}

nlohmann::json options_json(const MethodInfo& method, const MethodOptions& o) {
  const nlohmann::json all = to_json(o);
  nlohmann::json j = nlohmann::json::object();
  for (const auto& key : method.options) j[key] = all.at(key);
  for (const auto& kv : o.extra) j[kv.first] = kv.second;
  return j;
}

}  // namespace train
}  // namespace diffq
