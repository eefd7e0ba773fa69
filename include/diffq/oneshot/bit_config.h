#pragma once
/// \file bit_config.h
/// Configurations of one-shot mixed precision as data: the layers as the
/// cost and the search see them, a bit-width per layer, their costs (BitOPs
/// and size) and their JSON form. Torch-free.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace diffq {
namespace oneshot {

/// Bit-widths of one layer: weights and input activations (0 = a float
/// input, counted as 32 bits in BitOPs).
struct LayerBits {
  /// Weight bits.
  int weight = 0;
  /// Input activation bits (0 = float).
  int activation = 0;
  /// Same bits.
  bool operator==(const LayerBits& other) const {
    return weight == other.weight && activation == other.activation;
  }
  /// Different bits.
  bool operator!=(const LayerBits& other) const { return !(*this == other); }
};

/// One quantized layer as the cost and the search see it.
struct LayerInfo {
  /// Layer name (the block holding it, e.g. "stage1_0.conv1").
  std::string name;
  /// Multiply-accumulates per example.
  int64_t macs = 0;
  /// Weight elements.
  int64_t weights = 0;
  /// Never searched (stem, classifier): always at `fixed_bits`.
  bool fixed = false;
  /// The bits of a fixed layer.
  LayerBits fixed_bits;
  /// Current weight candidates, ascending (searchable layers).
  std::vector<int> weight_candidates;
  /// Activation candidates, ascending ({0} for a layer without activation quantizer).
  std::vector<int> activation_candidates;
};

/// The layers of a model, in quantizer order.
using Layers = std::vector<LayerInfo>;

/// A configuration: one `LayerBits` per layer of a `Layers`, same order.
struct BitConfig {
  /// Bits per layer.
  std::vector<LayerBits> layers;
  /// Same bits everywhere.
  bool operator==(const BitConfig& other) const { return layers == other.layers; }
  /// Different somewhere.
  bool operator!=(const BitConfig& other) const { return !(*this == other); }
};

/// Σ weight bits · activation bits (0 → 32) · MACs over every layer.
double bitops(const Layers& layers, const BitConfig& config);
/// Σ weight bits · weights over every layer (the quantized weights' bits).
double size_bits(const Layers& layers, const BitConfig& config);

/// What a budget constrains.
enum class CostKind {
  /// `bitops`.
  kBitOps,
  /// `size_bits`.
  kSizeBits,
};
/// The cost of `config` of that kind.
double cost(const Layers& layers, const BitConfig& config, CostKind kind);
/// "bitops" or "size".
const char* cost_kind_name(CostKind kind);

/// Fixed layers at their bits, every searchable layer at (weight_bits,
/// activation_bits) (activation 0 for layers without activation
/// candidates). Throws `diffq::Error` naming a layer without that candidate.
BitConfig uniform_config(const Layers& layers, int weight_bits, int activation_bits);
/// Every searchable layer at its largest candidates.
BitConfig max_config(const Layers& layers);
/// Every searchable layer at its smallest candidates (fixed layers at their
/// bits): the cheapest configuration.
BitConfig min_config(const Layers& layers);
/// Throws `diffq::Error` naming the layer and the value unless `config` has
/// one entry per layer, fixed layers at their bits and the others among
/// their candidates.
void check_config(const Layers& layers, const BitConfig& config);

/// The configuration as JSON (checked first with `check_config`):
/// {"format": "diffq-bitconfig", "version": 1,
///  "layers": [{"name", "weight_bits", "activation_bits", "fixed"}, ...],
///  "bitops": ..., "size_bits": ...}. The costs are informative: the reader
/// ignores them.
nlohmann::json to_json(const Layers& layers, const BitConfig& config);
/// The configuration of `json` (written by `to_json`) for `layers`: every
/// layer by name in the same order. Throws `diffq::Error` naming the first
/// problem (not an object, wrong format or version, missing or mistyped
/// field, wrong layer count, unknown or misplaced layer, a "fixed" flag that
/// disagrees with the model, bits that are not candidates); never crashes
/// on hostile JSON.
BitConfig config_from_json(const Layers& layers, const nlohmann::json& json);
/// One compact line: "W[8 4 3 ...] A[f 5 4 ...]" (float inputs as "f").
std::string describe(const BitConfig& config);
/// `describe(config)` after checking that `config` has one entry per layer.
std::string describe(const Layers& layers, const BitConfig& config);

}  // namespace oneshot
}  // namespace diffq
