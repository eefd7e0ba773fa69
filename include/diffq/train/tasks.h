#pragma once
/// \file tasks.h
/// The experiments' tasks: their data (loaded once per run), training
/// batches, loss and evaluation.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "diffq/models/models.h"
#include "diffq/train/config.h"
#include "diffq/train/model_handle.h"

namespace diffq {
namespace train {

/// The data of a task, in memory.
struct TaskData {
  /// True for a language-modelling task (tokens), false for images.
  bool lm = false;
  /// Images [N,1,28,28] (normalised) and labels [N] (int64).
  torch::Tensor train_x, train_y, test_x, test_y;
  /// Language: token ids of the splits (int64).
  torch::Tensor train_tokens, valid_tokens, test_tokens;
  /// Language: tokens per training sequence.
  int64_t context = 0;
  /// Language: vocabulary size.
  int64_t vocab = 0;
  /// Language: share of <unk> in the test split.
  double test_unk_rate = 0;
  /// Training examples (images, or sequences of context+1 tokens).
  int64_t train_examples() const;
  /// Test examples (images or tokens).
  int64_t test_examples() const;
};

/// Loads the data of `model.task` per `options` (and, for language tasks,
/// sets `model.vocab`). Throws `diffq::Error` naming an unreadable path.
TaskData load_task_data(models::ModelConfig& model, const DataOptions& options);

/// The training batch of the examples `index` (int64): inputs and targets,
/// images augmented (2-pixel shifts, flips) from `seed` when `augment`.
std::pair<torch::Tensor, torch::Tensor> task_batch(const TaskData& data, const torch::Tensor& index,
                                                   bool augment, uint64_t seed);

/// Mean cross-entropy of logits [..., C] against targets [...].
torch::Tensor task_loss(const torch::Tensor& logits, const torch::Tensor& targets);

/// Splits an evaluation over the processes of a data-parallel job: rank r
/// evaluates every `world_size`-th chunk of the split from chunk r, and
/// `sum` adds the counts of every rank.
struct EvaluationShard {
  /// This process's rank.
  int rank = 0;
  /// Number of processes.
  int world_size = 1;
  /// Sums values over the ranks (null for a single process).
  std::function<std::vector<double>(std::vector<double>)> sum;
};

/// Evaluates `model` as it is (the caller installs float or quantized
/// weights), in eval mode: images give {"accuracy"} (%) on the test set;
/// language gives {"loss", "perplexity", "tokens"} on `split` ("valid" or "test").
nlohmann::json evaluate_task(const ModelHandle& model, const TaskData& data, const std::string& split,
                             const EvaluationShard& shard = {});

}  // namespace train
}  // namespace diffq
