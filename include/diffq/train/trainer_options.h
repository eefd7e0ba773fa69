#pragma once
/// \file trainer_options.h
/// Options of the training library's `Trainer`.

#include <cstdint>
#include <functional>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#include "diffq/train/methods.h"

namespace diffq {
namespace train {

/// Learning-rate schedule of the model's weights.
enum class Schedule {
  /// lr · (1 + cos(π · step / total_steps)) / 2: from lr to 0.
  kCosine,
  /// lr throughout.
  kConstant,
};

/// "cosine" or "constant".
const char* schedule_name(Schedule schedule);
/// The schedule called `name`; throws `diffq::Error`.
Schedule parse_schedule(const std::string& name);

/// outputs, targets -> scalar loss.
using LossFunction = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

/// Options of `Trainer`.
struct TrainerOptions {
  /// Compression method (`methods()`: fp32, ptq, qat, lsq, diffq, quant-noise).
  TORCH_ARG(std::string, method) = "diffq";
  /// The method's options (λ, group size, bits, ...).
  TORCH_ARG(MethodOptions, method_options) = {};
  /// Learning rate of the model's weights (Adam).
  TORCH_ARG(double, lr) = 1e-3;
  /// Weight decay of the model's weights (Adam, coupled).
  TORCH_ARG(double, weight_decay) = 0.0;
  /// Learning-rate schedule of the model's weights.
  TORCH_ARG(Schedule, schedule) = Schedule::kCosine;
  /// Steps of the whole training (the cosine schedule reaches 0 there);
  /// `fit` sets it from its epochs when 0.
  TORCH_ARG(int64_t, total_steps) = 0;
  /// Max global norm of the weights' gradient (0 = no clipping).
  TORCH_ARG(double, clip) = 0.0;
  /// Seed of the quantizer's noise and of the global generator during steps.
  TORCH_ARG(uint64_t, seed) = 0;
  /// The task loss (default: cross-entropy over the last dimension).
  TORCH_ARG(LossFunction, loss) = nullptr;
  /// Calls `diffq::keep_freed_memory()` (process-wide: the allocator keeps
  /// freed blocks for the next step instead of mapping them again; several
  /// times faster steps on large activations, same peak memory).
  TORCH_ARG(bool, keep_freed_memory) = true;
};

}  // namespace train
}  // namespace diffq
