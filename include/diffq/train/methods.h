#pragma once
/// \file methods.h
/// The registry of compression methods of the training library. Adding a
/// method is one entry in src/train/methods.cpp: a name, a summary, the
/// options it reads, and a factory building its quantizer.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "diffq/diffq_quantizer.h"
#include "diffq/model_ref.h"
#include "diffq/quantizer.h"

namespace diffq {
namespace train {

/// The frozen fraction of target-size mode unless told otherwise (the last
/// half of the steps on the true quantized weights). Measured against 0.25
/// and 0 (docs/results/README.md, 3 seeds each): on the spec's CNN it lifts
/// DiffQ at the 2-bit size by 1.2 pt over no frozen phase and 0.3 pt over
/// 0.25, and leaves the 3- and 4-bit sizes within 0.05 pt; on the BatchNorm
/// ResNet it adds 0.09 pt at 4 bits and 0.21 pt at 2 bits over 0.25.
constexpr double kTargetFrozenFraction = 0.5;

/// Options of every method (each method reads the ones it lists). The
/// defaults are those of the quantizers' own options structs.
struct MethodOptions {
  /// ptq / qat / lsq / quant-noise: bit-width.
  int bits = 4;
  /// diffq: λ, the penalty on the model size in MiB.
  double penalty = 5.0;
  /// diffq: weights sharing one bit-width (0 = one per tensor).
  int64_t group_size = DiffQOptions().group_size();
  /// Learning rate of the quantizer's own parameters (DiffQ bits' logits,
  /// LSQ steps), in their own Adam optimizer. 0 = the method's default.
  double bits_lr = 0.0;
  /// diffq: lowest bit-width.
  double min_bits = DiffQOptions().min_bits();
  /// diffq: highest bit-width.
  double max_bits = DiffQOptions().max_bits();
  /// diffq: initial bit-width.
  double init_bits = DiffQOptions().init_bits();
  /// diffq: bits added at true quantization and in the size.
  double extra_bits = DiffQOptions().extra_bits();
  /// diffq: "bits" or "noise" parametrisation (`parametrization_name`).
  std::string param = parametrization_name(DiffQOptions().param());
  /// diffq: "gaussian" or "uniform" noise (`noise_kind_name`).
  std::string noise = noise_kind_name(DiffQOptions().noise());
  /// diffq: end at this true size in MiB (0 = off): λ (`penalty`, the
  /// starting value) becomes a Lagrange multiplier (`SizeController`), and
  /// the bits are shifted onto the target when they are frozen (or after
  /// the last step). Options `--opt target_rate=` (default 0.05) and
  /// `target_warmup=` (fraction of the steps, default 0.3).
  double target_mib = 0.0;
  /// diffq: the same with a target mean bit-width over the quantized
  /// weights (0 = off; exclusive with `target_mib`).
  double target_bits = 0.0;
  /// diffq: the last fraction of the steps trains on the TRUE quantized
  /// weights with the bits frozen (straight-through), in [0, 1); -1 (the
  /// default) = `kTargetFrozenFraction` with a target, 0 without.
  double frozen_fraction = -1.0;
  /// Discovery: tensors of at most floor(min_size·2^20/4) elements stay float.
  double min_size = DiscoveryOptions().min_size();
  /// Discovery: store the float leftovers as float16.
  bool float16 = DiscoveryOptions().float16();
  /// Discovery: fnmatch globs of parameters left in float.
  std::vector<std::string> exclude;
  /// Method-specific options given as `--opt key=value` (for methods added
  /// later without new command-line flags).
  std::map<std::string, std::string> extra;

  /// The frozen fraction in use (`frozen_fraction` with -1 resolved).
  double effective_frozen_fraction() const;
  /// `extra[key]` as a number, or `fallback` when absent (throws when not a number).
  double number(const std::string& key, double fallback) const;
  /// The discovery options these fields describe.
  DiscoveryOptions discovery() const;
};

/// Every field of `options` as JSON (numbers exact, `extra` as an object).
nlohmann::json to_json(const MethodOptions& options);
/// The inverse of `to_json`; absent fields keep their defaults, unknown
/// fields are refused with `diffq::Error`.
MethodOptions method_options_from_json(const nlohmann::json& json);

class StepStrategy;

/// A compression method.
struct MethodInfo {
  /// Command-line name ("diffq").
  std::string name;
  /// One line for `--help`.
  std::string summary;
  /// Names of the `MethodOptions` fields it reads (recorded in metrics.json).
  std::vector<std::string> options;
  /// Keys of `MethodOptions::extra` (`--opt key=value`) it reads; any other
  /// key is refused.
  std::vector<std::string> extra_options;
  /// Builds the quantizer; empty for the float baseline.
  std::function<std::unique_ptr<Quantizer>(const ModelRef&, const MethodOptions&, uint64_t seed)>
      make;
  /// Adds `penalty · model_size()` to the training loss.
  bool penalized = false;
  /// Default learning rate of the quantizer's own parameters given the
  /// model's learning rate (used when `bits_lr` is 0).
  std::function<double(double model_lr)> default_own_lr = [](double lr) { return lr; };
  /// The quantizer draws random numbers in training steps from a generator
  /// it owns: on resume, that many steps are replayed (without forward) so
  /// that its stream continues exactly. Otherwise the quantizer's step
  /// counter is set (`Quantizer::set_steps`).
  bool replay_steps_on_resume = false;
  /// Builds the method's step strategy (how a step's gradients are
  /// computed); empty = one forward and one backward (`SinglePassStep`).
  std::function<std::unique_ptr<StepStrategy>(const MethodOptions&, uint64_t seed)> make_step;
};

/// Every registered method, in display order.
const std::vector<MethodInfo>& methods();
/// The method called `name`; throws `diffq::Error` listing the known ones.
const MethodInfo& find_method(const std::string& name);
/// Checks `options` for `method`: every number finite and in its range,
/// every `extra` key one the method reads. Throws `diffq::Error` naming the
/// first bad option by its command-line flag, in plain words.
void check_method_options(const MethodInfo& method, const MethodOptions& options);
/// The options a method reads, as JSON (for metrics.json and the run identity).
nlohmann::json options_json(const MethodInfo& method, const MethodOptions& options);

}  // namespace train
}  // namespace diffq
