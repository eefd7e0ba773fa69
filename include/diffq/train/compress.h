#pragma once
/// \file compress.h
/// Post-training quantization of TorchScript files (back to TorchScript:
/// `diffq::restore_to_torchscript`).

#include <string>

#include "diffq/quantized_state.h"

namespace diffq {
namespace train {

/// Options of `compress_torchscript`.
struct CompressOptions {
  /// > 0: uniform bits everywhere (1..16).
  int bits = 0;
  /// With `bits` 0: the mean bits target; bits per tensor in
  /// [min_bits, max_bits] allocated greedily (least squared quantization
  /// error added per bit saved).
  double budget = 0;
  /// Lowest bits per tensor of the budget allocation.
  int min_bits = 2;
  /// Highest bits per tensor of the budget allocation.
  int max_bits = 8;
  /// Tensors of at most floor(min_size·2^20/4) elements stay float.
  double min_size = 0.01;
};

/// Quantizes the TorchScript file at `script_path`. Returns the state (with
/// the per-tensor bits of a budget allocation in its options as `alloc.<name>`).
QuantizedState compress_torchscript(const std::string& script_path, const CompressOptions& options);

}  // namespace train
}  // namespace diffq
