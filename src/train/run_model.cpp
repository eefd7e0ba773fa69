// The model of an experiment run (see run_model.h).
#include "run_model.h"

#include <torch/script.h>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/restore.h"
#include "diffq/train/experiment.h"
#include "seeds.h"

namespace diffq {
namespace train {

std::shared_ptr<torch::jit::Module> load_script_file(const std::string& path) {
  try {
    return std::make_shared<torch::jit::Module>(torch::jit::load(path));
  } catch (const std::exception& e) {
    throw Error("cannot load the TorchScript model '" + path + "': " + std::string(e.what()).substr(0, 300));
  }
}

int64_t count_parameters(const ModelRef& model) {
  std::vector<const void*> seen;
  int64_t n = 0;
  for (const auto& p : model.parameters()) {
    const void* key = p.tensor.unsafeGetTensorImpl();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    n += p.tensor.numel();
  }
  return n;
}

namespace {

RunModel script_model(const std::string& path) {
  auto script = load_script_file(path);
  return RunModel{model_handle(*script), nullptr, script};
}

RunModel zoo_model(std::shared_ptr<models::Model> model) {
  return RunModel{model_handle(model), model, nullptr};
}

}  // namespace

RunModel build_run_model(const TrainConfig& config) {
  if (!config.model_file.empty()) return script_model(config.model_file);
  torch::manual_seed(derive_seed(config.seed, 0, Stream::kInit));
  return zoo_model(models::make_model(config.model));
}

RunModel restored_model(const QuantizedState& state, const std::string& model_file) {
  const auto arch = state.options.find("arch.model");
  const bool from_script = arch != state.options.end() && arch->second == models::kScriptModel;
  if (model_file.empty()) {
    DIFFQ_CHECK(!from_script, "this model was trained from a TorchScript file (",
                state.options.count("arch.source") ? state.options.at("arch.source") : "?",
                "): pass it with --model-file to rebuild the architecture");
    auto model = models::make_model(models::model_config_from_options(state.options));
    restore_validated(*model, state);
    return zoo_model(model);
  }
  RunModel m = script_model(model_file);
  restore_validated(*m.script, state);
  return m;
}

}  // namespace train
}  // namespace diffq
