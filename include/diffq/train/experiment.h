#pragma once
/// \file experiment.h
/// The experiments' runner: `run_training(config)` trains a model of a task
/// with a compression method, checkpoints atomically, resumes exactly, and
/// writes the compact model file, metrics.json and log.jsonl.

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/float_state.h"
#include "diffq/model_ref.h"
#include "diffq/models/models.h"
#include "diffq/quantized_state.h"
#include "diffq/train/config.h"

namespace diffq {
namespace train {

/// File name, in a one-shot run's directory, of the coupled network (a
/// trainer checkpoint kept after the run) that `diffq search` reads.
constexpr const char* kCoupledFile = "coupled.pt";

/// What a run produced.
struct TrainResult {
  /// The metrics (also written as metrics.json).
  nlohmann::json metrics;
  /// The quantized (or float) state of the final model.
  QuantizedState state;
  /// True when the run stopped early (signal or `stop_after_step`).
  bool interrupted = false;
};

/// Trains per `config`. Throws `diffq::Error` for bad options, unreadable
/// data (naming the path) or a checkpoint of a different configuration.
TrainResult run_training(const TrainConfig& config);

/// Asks running trainings to stop at the next step boundary, after writing a
/// checkpoint (async-signal-safe; installed on SIGINT/SIGTERM by the tool).
void request_stop();

/// The result of evaluating a model file.
struct EvalResult {
  /// Metrics: task, model, method, accuracy or perplexity, sizes.
  nlohmann::json metrics;
};

/// Rebuilds the model described by a model file's `arch.*` options (or,
/// given `model_file`, the TorchScript model of that file: required for a
/// model trained from one), restores its weights and buffers from the file
/// alone (read and validated once) and evaluates it on the task's test set.
EvalResult evaluate_file(const std::string& path, const DataOptions& data, int threads = 1,
                         const std::string& model_file = "");

/// Builds the model recorded in a state's `arch.*` options (weights restored).
std::shared_ptr<models::Model> model_from_state(const QuantizedState& state);

}  // namespace train
}  // namespace diffq
