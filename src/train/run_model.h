#pragma once
// The model of an experiment run (private): a built-in model of the zoo or a
// TorchScript file, kept alive with the handle the trainer uses.
#include <memory>
#include <string>

#include "diffq/models/models.h"
#include "diffq/quantized_state.h"
#include "diffq/train/config.h"
#include "diffq/train/model_handle.h"

namespace torch {
namespace jit {
struct Module;
}  // namespace jit
}  // namespace torch

namespace diffq {
namespace train {

/// A model and its handle.
struct RunModel {
  /// What the trainer and the evaluation use.
  ModelHandle handle;
  /// The built-in model (null for a TorchScript one).
  std::shared_ptr<models::Model> zoo;
  /// The TorchScript module (null for a built-in one).
  std::shared_ptr<torch::jit::Module> script;
};

/// Parameter elements of a model (tied tensors once).
int64_t count_parameters(const ModelRef& model);

/// Loads a TorchScript file; throws `diffq::Error` naming it.
std::shared_ptr<torch::jit::Module> load_script_file(const std::string& path);

/// The model of `config`: the TorchScript `model_file` (its own weights), or
/// the built-in model, initialised from the run's seed.
RunModel build_run_model(const TrainConfig& config);

/// Refuses (`diffq::Error`), before any model is built, `arch.*` options of
/// a model file that describe a model larger than the file: a built-in
/// model of `config` has at least a known number of parameter elements (from
/// its width, vocabulary, width and layers), which must not exceed those the
/// file holds.
void check_arch_fits_file(const models::ModelConfig& config, const QuantizedState& state);

/// A fresh model of `state`'s architecture with `state` restored (a state
/// already validated, as `load` and `serialize` do): the
/// TorchScript `model_file` when given (required for a file trained from
/// one), else the built-in model its `arch.*` options describe (checked by
/// `check_arch_fits_file` first).
RunModel restored_model(const QuantizedState& state, const std::string& model_file);

}  // namespace train
}  // namespace diffq
