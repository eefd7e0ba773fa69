// What an experiment run records (see run_record.h).
#include "run_record.h"

#include <filesystem>

#include "diffq/error.h"

namespace diffq {
namespace train {

void record_run(QuantizedState& state, const TrainConfig& c) {
  if (c.model_file.empty()) {
    for (const auto& kv : models::arch_options(c.model)) state.options[kv.first] = kv.second;
  } else {  // the architecture is the TorchScript file's: `eval --model-file` rebuilds it
    state.options["arch.task"] = c.model.task;
    state.options["arch.model"] = models::kScriptModel;
    state.options["arch.source"] = std::filesystem::path(c.model_file).filename().string();
    if (c.model.task == "kjv-lm") {
      state.options["arch.vocab"] = std::to_string(c.model.vocab);
      state.options["arch.context"] = std::to_string(c.model.context);
    }
  }
  if (c.model.task == "kjv-lm") state.options["data.vocab_size"] = std::to_string(c.data.vocab_size);
  state.options["run.method"] = c.method;
  state.options["run.config"] = to_json(c).dump();
}

TrainConfig recorded_config(const QuantizedState& state) {
  auto it = state.options.find("run.config");
  DIFFQ_CHECK(it != state.options.end(), "the model file has no 'run.config' option");
  auto j = nlohmann::json::parse(it->second, nullptr, false);
  DIFFQ_CHECK(!j.is_discarded(), "the model file's 'run.config' is not valid JSON");
  return config_from_json(j);
}

std::string identity_differences(const nlohmann::json& saved, const nlohmann::json& now, const std::string& label) {
  std::string diff;
  for (auto it = now.begin(); it != now.end(); ++it)
    if (!saved.contains(it.key()) || saved[it.key()] != it.value())
      diff += " " + it.key() + " (" + label + " " + (saved.contains(it.key()) ? saved[it.key()].dump() : "-") +
              ", now " + it.value().dump() + ")";
  return diff;
}

nlohmann::json metrics_options(const TrainConfig& c, bool lm) {
  nlohmann::json o = options_json(find_method(c.method), c.method_options);
  const nlohmann::json all = to_json(c);
  for (const char* key : {"lr", "weight_decay", "schedule", "clip", "augment", "coding", "width", "recalibrate"})
    o[key] = all[key];
  if (lm)
    for (const char* key : {"context", "dim", "layers", "vocab_size"}) o[key] = all[key];
  o["train_limit"] = all["train_limit"];
  o["test_limit"] = all["test_limit"];
  return o;
}

nlohmann::json size_metrics(const QuantizedState& state, uint64_t file_bytes) {
  const double fp32_mib = double(state.parameter_count()) * 4.0 / 1048576.0;
  return {{"fp32_mib", fp32_mib},
          {"true_mib", state.true_mib()},
          {"buffer_bytes", state.buffer_bits() / 8.0},
          {"file_bytes", file_bytes},
          {"compression", fp32_mib * 1048576.0 / double(file_bytes)},
          {"true_compression", fp32_mib / state.true_mib()},
          {"mean_bits", state.mean_bits()}};
}

nlohmann::json score_metrics(const nlohmann::json& score, const TaskData& data) {
  if (!data.lm) return {{"accuracy", score["accuracy"]}};
  return {{"perplexity", score["perplexity"]},
          {"test_tokens", score["tokens"]},
          {"test_unk_rate", data.test_unk_rate},
          {"vocab", data.vocab}};
}

}  // namespace train
}  // namespace diffq
