#pragma once
/// \file models.h
/// The models of the experiments. resnet20 uses BatchNorm by default (its
/// running statistics are buffers, stored in the model file with the
/// parameters); `norm = "group"` gives the GroupNorm variant.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace diffq {
namespace models {

/// A model of the experiments: images [N,1,28,28] -> logits [N,10], or
/// tokens [N,T] (int64) -> logits [N,T,V].
struct Model : torch::nn::Module {
  /// Forward pass.
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

/// `ModelConfig::name` of a model trained from a TorchScript file.
constexpr const char* kScriptModel = "torchscript";

/// What a model is built from. Everything here is recorded in the model file
/// (options prefixed `arch.`), so `diffq eval` rebuilds the architecture.
struct ModelConfig {
  /// "fashion-mnist" or "kjv-lm".
  std::string task = "fashion-mnist";
  /// Model name (see `model_names`).
  std::string name = "cnn";
  /// Language models: vocabulary size.
  int64_t vocab = 0;
  /// Language models: context length (tokens).
  int64_t context = 32;
  /// Language models: embedding / model width.
  int64_t dim = 128;
  /// Language models: number of layers.
  int64_t layers = 2;
  /// Width multiplier of the vision models (1 = the documented sizes).
  double width = 1.0;
  /// resnet20 / mobilenet: "batch" (BatchNorm2d) or "group" (GroupNorm);
  /// empty = the model's default (batch for resnet20, group for mobilenet).
  std::string norm;
};

/// The model names of a task.
std::vector<std::string> model_names(const std::string& task);
/// A one-line description of a model.
std::string describe_model(const std::string& task, const std::string& name);
/// The tasks.
std::vector<std::string> task_names();
/// Builds a model (initialised from torch's global generator). Throws
/// `diffq::Error` for an unknown task or model.
std::shared_ptr<Model> make_model(const ModelConfig& config);
/// The architecture as model-file options (`arch.task`, `arch.model`,
/// `arch.width`, and for language models `arch.vocab`, `arch.context`,
/// `arch.dim`, `arch.layers`), numbers written exactly.
std::map<std::string, std::string> arch_options(const ModelConfig& config);
/// The inverse of `arch_options`; throws `diffq::Error` naming a missing or
/// malformed option (a file not written by the training library).
ModelConfig model_config_from_options(const std::map<std::string, std::string>& options);
/// The normalisation a model config resolves to ("batch", "group", or ""
/// for models without one); throws `diffq::Error` for a bad choice.
std::string norm_of(const ModelConfig& config);
/// Number of parameter elements (tied tensors counted once).
int64_t count_parameters(torch::nn::Module& model);

}  // namespace models
}  // namespace diffq
