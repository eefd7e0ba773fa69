#pragma once
/// \file search_model.h
/// The search of one-shot mixed precision on a trained coupled network:
/// scoring configurations on held-out batches (BatchNorm on batch
/// statistics, running statistics untouched), recalibrating the chosen
/// configuration's BatchNorm statistics, and measuring accuracy.
///
/// \code
///   std::vector<diffq::oneshot::LabeledBatch> held_out = ...;   // one per round, reused cyclically
///   auto forward = [&](const torch::Tensor& x) { return net->forward(x); };
///   diffq::oneshot::SearchOptions o;
///   o.budget = diffq::oneshot::bitops(quantizer.layers(), ...);
///   auto found = diffq::oneshot::search_model(*net, quantizer, forward, held_out, o);
///   quantizer.set_config(found.config);
///   diffq::oneshot::recalibrate_selected_batchnorm(*net, quantizer, forward, calibration_inputs);
/// \endcode

#include <functional>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/oneshot/search.h"

namespace diffq {
namespace oneshot {

/// Inputs and labels of a batch.
struct LabeledBatch {
  /// Inputs.
  torch::Tensor inputs;
  /// Class labels (int64).
  torch::Tensor targets;
};

/// The model's forward pass.
using Forward = std::function<torch::Tensor(const torch::Tensor&)>;

/// The error in [0, 1] (`metric`: top-1 or soft) of the current
/// configuration on `batch`, on the true quantized weights, with BatchNorm normalising by the batch's own
/// statistics (every running statistic and counter is left as it was) and
/// every other module in eval mode. The model's modes are restored.
double batch_statistics_error(torch::nn::Module& model, OneShotQuantizer& quantizer, const Forward& forward,
                              const LabeledBatch& batch, HeldOutError metric = HeldOutError::kSoft);

/// `search` over the quantizer's layers: round i scores its configurations
/// with `batch_statistics_error(..., metric)` on
/// `held_out[i % held_out.size()]` (the final check's rounds too). The
/// quantizer's configuration is restored afterwards. Needs one forward of
/// the model before (the layers' MACs).
SearchResult search_model(torch::nn::Module& model, OneShotQuantizer& quantizer, const Forward& forward,
                          const std::vector<LabeledBatch>& held_out, const SearchOptions& options,
                          HeldOutError metric = HeldOutError::kSoft);

/// Re-estimates the running statistics of the BatchNorm layers the current
/// configuration selects (and of plain BatchNorm layers), on the true
/// quantized weights: reset, then a cumulative average over `inputs` (no
/// momentum), every other module in eval mode. The other configurations'
/// BatchNorm layers are untouched. Returns the BatchNorm layers recalibrated.
int64_t recalibrate_selected_batchnorm(torch::nn::Module& model, OneShotQuantizer& quantizer,
                                       const Forward& forward, const std::vector<torch::Tensor>& inputs);

}  // namespace oneshot
}  // namespace diffq
