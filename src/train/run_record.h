#pragma once
// What an experiment run records (private): the run's options in its model
// file and its metrics.json.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/quantized_state.h"
#include "diffq/train/config.h"
#include "diffq/train/tasks.h"

namespace diffq {
namespace train {

/// Adds to a state's options what `diffq eval` needs to rebuild and
/// evaluate the model (`arch.*`, `data.vocab_size`) and the run's
/// provenance (`run.method`, `run.config`: `to_json(config)`, exact).
void record_run(QuantizedState& state, const TrainConfig& config);

/// The run's configuration from a state written by `record_run`.
TrainConfig recorded_config(const QuantizedState& state);

/// The fields in which run identity `now` (`run_identity`) differs from
/// `saved`, as " key (<label> x, now y)" items; empty when they are equal.
std::string identity_differences(const nlohmann::json& saved, const nlohmann::json& now, const std::string& label);

/// The options block of metrics.json: the method's options, then the
/// optimisation, data and (language) architecture options.
nlohmann::json metrics_options(const TrainConfig& config, bool lm);

/// The size fields shared by metrics.json and `diffq eval`: fp32_mib,
/// true_mib, file_bytes, compression, true_compression, mean_bits.
nlohmann::json size_metrics(const QuantizedState& state, uint64_t file_bytes);

/// The task's score fields under their metrics.json names.
nlohmann::json score_metrics(const nlohmann::json& score, const TaskData& data);

}  // namespace train
}  // namespace diffq
