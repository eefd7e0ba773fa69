#pragma once
/// \file batchnorm.h
/// Re-estimating BatchNorm running statistics, e.g. for the quantized model.
///
/// Under a quantizer, BatchNorm behaves as follows:
/// - training steps run the model in train mode on the noisy (DiffQ) or
///   quantized (QAT, LSQ, Quant-Noise) weights, so BatchNorm normalises with
///   the statistics of the batch and updates its running statistics with
///   the activations those weights produce;
/// - `Quantizer::quantized_evaluation()` with the model in eval mode uses the
///   running statistics as they are (buffers are never quantized).
/// The running statistics thus describe the noisy/quantized training
/// forwards. To match them to the true quantized model exactly, recalibrate
/// inside an evaluation scope:
///
/// \code
///   {
///     auto scope = quantizer.quantized_evaluation();
///     diffq::recalibrate_batchnorm(net, calibration_batches);
///   }
///   auto state = quantizer.get_quantized_state();   // holds the new statistics
/// \endcode

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "diffq/model_ref.h"

namespace diffq {

/// Runs the model's forward pass on one batch (the output is ignored).
using BatchForward = std::function<void(const torch::Tensor& batch)>;

/// Resets the running statistics of every BatchNorm layer of `model` and
/// re-estimates them over `batches` as a cumulative average (the semantics
/// of `momentum=None`: after n batches, running_mean is the mean of the n
/// batch means and running_var the mean of the n unbiased batch variances;
/// `num_batches_tracked` counts the n batches). Runs `forward` on each batch
/// without gradients, on the weights the model currently holds (inside a
/// `quantized_evaluation()` scope: the quantized weights), with every
/// BatchNorm layer in train mode and every other module in eval mode
/// (dropout off). Afterwards each layer's momentum and every module's
/// train/eval flag are as before; on error the running statistics are put
/// back too.
///
/// BatchNorm layers are: for C++ frontend models, `BatchNorm1d/2d/3d` with
/// running statistics; for TorchScript models, submodules with buffers
/// `running_mean` and `running_var` (and optionally `num_batches_tracked`)
/// and either a float (or optional float) attribute `momentum`, set to 1/k
/// for batch k, or a class constant `momentum` (torch.nn.BatchNorm scripted
/// from Python), float in (0, 1] or None with `num_batches_tracked`: the
/// statistics are then zeroed before each batch and the batch statistics
/// read back from the update. A TorchScript submodule with running
/// statistics and neither is refused, naming it.
/// Returns the number of BatchNorm layers recalibrated (0: nothing is run).
/// Throws `diffq::Error` when `batches` is empty and the model has
/// BatchNorm layers.
int64_t recalibrate_batchnorm(const ModelRef& model, const std::vector<torch::Tensor>& batches,
                              const BatchForward& forward);

/// The same for a TorchScript model: the forward is `model.forward({batch})`.
int64_t recalibrate_batchnorm(torch::jit::Module& model, const std::vector<torch::Tensor>& batches);

/// The same for a C++ frontend model held by a `std::shared_ptr` or a module
/// holder (`TORCH_MODULE` types) whose `forward` takes one tensor.
template <typename Model>
auto recalibrate_batchnorm(Model& model, const std::vector<torch::Tensor>& batches)
    -> decltype(model->forward(std::declval<torch::Tensor>()), int64_t()) {
  return recalibrate_batchnorm(ModelRef(model), batches,
                               [&model](const torch::Tensor& batch) { model->forward(batch); });
}

}  // namespace diffq
