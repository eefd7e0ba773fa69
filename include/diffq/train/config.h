#pragma once
/// \file config.h
/// The configuration of an experiment run (`run_training`): task, model,
/// method, data and optimisation, with its one JSON form.

#include <cstdint>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/models/models.h"
#include "diffq/train/distributed.h"
#include "diffq/train/methods.h"

namespace diffq {
namespace train {

/// The most intra-op threads a run or an evaluation may ask for.
constexpr int kMaxThreads = 256;

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
  /// A TorchScript file to train instead of a built-in model (its forward
  /// maps the task's input to logits); empty = the built-in `model.name`.
  std::string model_file;
  /// A model file (a finished run's model.diffq, same architecture) whose
  /// weights and buffers start the training instead of a fresh
  /// initialisation; empty = none. Switchable BatchNorm layers start every
  /// bit pair from the BatchNorm the file's model ran (one-shot methods).
  std::string init;
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
  /// BatchNorm: before the model file is written, re-estimate the running
  /// statistics on the TRUE quantized weights over this many training
  /// batches (`recalibrate_batchnorm`); 0 = keep those of training.
  int64_t recalibrate = 0;
  /// Seed of everything: initialisation, data order, augmentation, noise.
  uint64_t seed = 0;
  /// Intra-op threads, 1..`kMaxThreads` (1 makes runs bit-reproducible).
  int threads = 1;
  /// Output directory (created). Empty: nothing is written, no checkpoint.
  std::string out_dir;
  /// Continue from `out_dir`/checkpoint.pt when present.
  bool resume = false;
  /// Start over even if `out_dir` holds a previous run.
  bool overwrite = false;
  /// Checkpoint every this many steps, at least 1 (and at every epoch end).
  int64_t checkpoint_every = 200;
  /// Payload coding of the model file: "none", "zstd", "rans" or "auto".
  std::string coding = "auto";
  /// Progress display: "auto" (bar on a terminal, lines otherwise), "bar",
  /// "plain" or "none".
  std::string progress = "auto";
  /// Stream of the progress display (default std::cerr).
  std::ostream* progress_stream = nullptr;
  /// Data-parallel training: this process's rank, the number of processes
  /// and where they meet (world size 1: a single process). Each process
  /// trains on `batch_size` examples per step; only rank 0 writes files.
  DistributedOptions distributed;
  /// Testing: stop (as if killed) right after this global step, once its
  /// checkpoint (if any) is written; 0 = never. The run returns `interrupted`.
  int64_t stop_after_step = 0;
};

/// The fields of `config` that define what is trained (task, model, method
/// and its options, data limits, optimisation, seed, coding), as one JSON
/// object with exact numbers. Where it runs (directories, threads,
/// checkpoint period, progress) is not part of it.
nlohmann::json to_json(const TrainConfig& config);
/// The inverse of `to_json`, over `defaults` (fields absent from `json`
/// keep their value there). Unknown fields are refused with `diffq::Error`.
TrainConfig config_from_json(const nlohmann::json& json, const TrainConfig& defaults = {});
/// The part of `to_json` a checkpoint must match to be resumed (everything
/// but the file coding; the method options restricted to those the method reads).
nlohmann::json run_identity(const TrainConfig& config);
/// Checks every option's range (the one place where run options are
/// validated; the tool relies on it); throws `diffq::Error` naming the first
/// bad one by its command-line flag, in plain words.
void check_config(const TrainConfig& config);

}  // namespace train
}  // namespace diffq
