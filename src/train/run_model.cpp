// The model of an experiment run (see run_model.h).
#include "run_model.h"

#include <cmath>

#include <torch/script.h>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/regular_file.h"
#include "diffq/restore.h"
#include "diffq/train/experiment.h"
#include "seeds.h"
#include "torch_message.h"

namespace diffq {
namespace train {

std::shared_ptr<torch::jit::Module> load_script_file(const std::string& path) {
  require_regular_file(path, "the TorchScript model");
  try {
    return std::make_shared<torch::jit::Module>(torch::jit::load(path));
  } catch (const std::exception& e) {
    throw Error("cannot load the TorchScript model '" + path + "': " + torch_message(e));
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

namespace {

// Starts `model` (built from `config`) from the model file `config.init`.
void initialise_from(const RunModel& model, const TrainConfig& config) {
  const std::string& path = config.init;
  require_regular_file(path, "the initial model (--init)");
  const auto state = load(path);
  if (model.script) {
    restore_validated(*model.script, state);
    return;
  }
  const auto file = models::model_config_from_options(state.options);
  DIFFQ_CHECK(file.task == config.model.task && file.name == config.model.name && file.width == config.model.width,
              "the initial model '", path, "' is a ", file.task, " ", file.name, " of width ", file.width,
              "; this run trains a ", config.model.task, " ", config.model.name, " of width ", config.model.width);
  restore_validated(*model.zoo, state);
  // Every bit pair's BatchNorm starts from the one the file's model ran.
  for (const auto& m : model.zoo->modules(true))
    if (auto bn = std::dynamic_pointer_cast<oneshot::SwitchableBatchNorm2dImpl>(m)) bn->copy_selected_to_all();
}

}  // namespace

RunModel build_run_model(const TrainConfig& config) {
  RunModel model = [&] {
    if (!config.model_file.empty()) return script_model(config.model_file);
    torch::manual_seed(derive_seed(config.seed, 0, Stream::kInit));
    return zoo_model(models::make_model(config.model));
  }();
  if (!config.init.empty()) initialise_from(model, config);
  return model;
}

void check_arch_fits_file(const models::ModelConfig& c, const QuantizedState& state) {
  double held = 0;
  for (const auto& r : state.tensors)
    if (r.kind == RecordKind::kParameter) held += double(r.numel());
  double least = 0;  // a lower bound of the model's parameter elements
  if (c.task == "kjv-lm") {
    DIFFQ_CHECK(c.vocab >= 2 && c.context >= 1 && c.dim >= 4 && c.layers >= 1, "the model file's arch.* options (vocab ",
                c.vocab, ", context ", c.context, ", dim ", c.dim, ", layers ", c.layers, ") are not a language model");
    least = double(c.vocab) * double(c.dim) + double(c.layers) * double(c.dim) * double(c.dim);
    if (c.name == "transformer") least += double(c.context) * double(c.dim);
  } else {
    DIFFQ_CHECK(std::isfinite(c.width) && c.width > 0, "the model file's arch.width ", c.width, " is not a positive width");
    if (c.width > 1) {
      // Every tensor has a channel dimension of at least width/2 times its
      // size at width 1 (rounding), the others do not shrink.
      models::ModelConfig unit = c;
      unit.width = 1;
      least = double(models::count_parameters(*models::make_model(unit))) * c.width / 2;
    }
  }
  DIFFQ_CHECK(least <= held, "the model file's arch.* options describe a ", c.name, " of at least ", least,
              " parameters but the file holds ", held, ": not building it (the file is corrupt or was edited)");
}

RunModel restored_model(const QuantizedState& state, const std::string& model_file) {
  const auto arch = state.options.find("arch.model");
  const bool from_script = arch != state.options.end() && arch->second == models::kScriptModel;
  if (model_file.empty()) {
    DIFFQ_CHECK(!from_script, "this model was trained from a TorchScript file (",
                state.options.count("arch.source") ? state.options.at("arch.source") : "?",
                "): pass it with --model-file to rebuild the architecture");
    const auto config = models::model_config_from_options(state.options);
    check_arch_fits_file(config, state);
    auto model = models::make_model(config);
    restore_validated(*model, state);
    oneshot::apply_stored_config(*model, state.options);  // bits of a one-shot model's layers
    return zoo_model(model);
  }
  RunModel m = script_model(model_file);
  restore_validated(*m.script, state);
  return m;
}

}  // namespace train
}  // namespace diffq
