#pragma once
/// \file trainer.h
/// The experiments' trainer: `run_training(config)` trains a model of a task
/// with a compression method, checkpoints atomically, resumes exactly, and
/// writes the compact model file, metrics.json and log.jsonl.

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/models/models.h"
#include "diffq/quantized_state.h"
#include "diffq/train/methods.h"

namespace diffq {
namespace train {

/// Where the data of the tasks come from.
struct DataOptions {
  /// Fashion-MNIST directory (IDX .gz files).
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";
  /// KJV text in the `bible` output format; empty = run the `bible` command.
  std::string text_path;
  /// Language models: vocabulary cap (entries, <unk> and <eos> included).
  int64_t vocab_size = 10000;
  /// Training examples kept (images, or sequences of context+1 tokens); 0 = all.
  int64_t train_limit = 0;
  /// Test examples kept (images, or tokens of the test split); 0 = all.
  int64_t test_limit = 0;
};

/// Everything a training run depends on.
struct TrainConfig {
  /// Task and architecture (`model.task` is the task).
  models::ModelConfig model;
  /// Method name (see `methods()`).
  std::string method = "diffq";
  /// Method options.
  MethodOptions method_options;
  /// Data.
  DataOptions data;
  /// Epochs.
  int epochs = 3;
  /// Batch size (images or sequences).
  int64_t batch_size = 64;
  /// Learning rate of the model's weights (Adam).
  double lr = 1e-3;
  /// Weight decay of the model's weights (Adam, coupled).
  double weight_decay = 0.0;
  /// Learning-rate schedule: "cosine" (to 0 at the end) or "constant".
  std::string schedule = "cosine";
  /// Gradient clipping (max global norm of the weights' gradient; 0 = off).
  double clip = 0.0;
  /// Fashion-MNIST: random shifts of up to 2 pixels and horizontal flips.
  bool augment = false;
  /// Seed of everything: initialisation, data order, augmentation, noise.
  uint64_t seed = 0;
  /// Intra-op threads (1 makes runs bit-reproducible).
  int threads = 1;
  /// Output directory (created). Empty: nothing is written, no checkpoint.
  std::string out_dir;
  /// Continue from `out_dir`/checkpoint.pt when present.
  bool resume = false;
  /// Start over even if `out_dir` holds a previous run.
  bool overwrite = false;
  /// Checkpoint every this many steps (and at every epoch end); 0 = epoch ends only.
  int64_t checkpoint_every = 200;
  /// Payload coding of the model file: "none", "zstd", "rans" or "auto".
  std::string coding = "auto";
  /// Progress display: "auto" (bar on a terminal, lines otherwise), "bar",
  /// "plain" or "none".
  std::string progress = "auto";
  /// Stream of the progress display (default std::cerr).
  std::ostream* progress_stream = nullptr;
  /// Testing: stop (as if killed) right after this global step, once its
  /// checkpoint (if any) is written; 0 = never. The run returns `interrupted`.
  int64_t stop_after_step = 0;
};

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

/// Rebuilds the model described by a model file's `arch.*` options,
/// restores its weights from the file alone and evaluates it on the task's
/// test set.
EvalResult evaluate_file(const std::string& path, const DataOptions& data, int threads = 1);

/// Builds the model recorded in a state's `arch.*` options (weights restored).
std::shared_ptr<models::Model> model_from_state(const QuantizedState& state);

/// A float32 state of a model's parameters (method "float"; tied tensors
/// stored once with aliases).
QuantizedState float_state(const ModelRef& model);

/// Mean bit-width over the quantized (non-float) elements of a state
/// (32 when everything is float).
double mean_bits(const QuantizedState& state);

/// Post-training quantization of a TorchScript file. `bits` > 0: uniform
/// bits everywhere. Otherwise `budget` > 0: mean bits target; bits per tensor
/// in [min_bits, max_bits] allocated greedily by a sensitivity proxy (see
/// the .cpp and the README). Returns the state (also the per-tensor bits in
/// its options as `alloc.<name>`).
QuantizedState compress_torchscript(const std::string& script_path, int bits, double budget,
                                    int min_bits, int max_bits, double min_size);

/// Restores a model file into the TorchScript template and saves it.
void restore_torchscript(const std::string& model_file, const std::string& template_path,
                         const std::string& out_path);

}  // namespace train
}  // namespace diffq
