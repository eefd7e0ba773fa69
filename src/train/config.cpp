// The run configuration's one JSON form (see include/diffq/train/config.h).
#include "diffq/train/config.h"

#include <type_traits>

#include "diffq/error.h"
#include "diffq/format.h"
#include "json_fields.h"

namespace diffq {
namespace train {

namespace {

// Every field of TrainConfig that defines what is trained, by name: the one
// list that JSON writing and reading use. (`options` is handled apart.)
template <typename Config, typename Visit>
void for_each_field(Config& c, Visit&& visit) {
  visit("task", c.model.task);
  visit("model", c.model.name);
  visit("width", c.model.width);
  visit("norm", c.model.norm);
  visit("context", c.model.context);
  visit("dim", c.model.dim);
  visit("layers", c.model.layers);
  visit("model_file", c.model_file);
  visit("method", c.method);
  visit("vocab_size", c.data.vocab_size);
  visit("train_limit", c.data.train_limit);
  visit("test_limit", c.data.test_limit);
  visit("epochs", c.epochs);
  visit("batch_size", c.batch_size);
  visit("lr", c.lr);
  visit("weight_decay", c.weight_decay);
  visit("schedule", c.schedule);
  visit("clip", c.clip);
  visit("augment", c.augment);
  visit("recalibrate", c.recalibrate);
  visit("seed", c.seed);
  visit("coding", c.coding);
}

}  // namespace

nlohmann::json to_json(const TrainConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  write_fields(j, c, [](const auto& obj, auto&& visit) { for_each_field(obj, visit); });
  j["options"] = to_json(c.method_options);
  return j;
}

TrainConfig config_from_json(const nlohmann::json& j, const TrainConfig& defaults) {
  TrainConfig c = defaults;
  read_fields(
      j, c, [](auto& obj, auto&& visit) { for_each_field(obj, visit); },
      [&](const std::string& key, const nlohmann::json& value) {
        if (key != "options") return false;
        c.method_options = method_options_from_json(value);
        return true;
      },
      "run option");
  return c;
}

nlohmann::json run_identity(const TrainConfig& c) {
  nlohmann::json j = to_json(c);
  j.erase("coding");
  j["options"] = options_json(find_method(c.method), c.method_options);
  return j;
}

void check_config(const TrainConfig& c) {
  find_method(c.method);
  DIFFQ_CHECK(c.epochs >= 1, "--epochs must be at least 1");
  DIFFQ_CHECK(c.batch_size >= 1, "--batch-size must be at least 1");
  DIFFQ_CHECK(c.threads >= 1, "--threads must be at least 1");
  DIFFQ_CHECK(c.lr > 0, "--lr must be positive");
  DIFFQ_CHECK(c.recalibrate >= 0, "--recalibrate must be >= 0 batches, not ", c.recalibrate);
  DIFFQ_CHECK(c.schedule == "cosine" || c.schedule == "constant",
              "--schedule must be cosine or constant");
  DIFFQ_CHECK(c.method_options.bits >= 1 && c.method_options.bits <= 16, "--bits must be in 1..16");
  parse_entropy_coding(c.coding);
  check_distributed_options(c.distributed);
  parse_parametrization(c.method_options.param);
  parse_noise_kind(c.method_options.noise);
}

}  // namespace train
}  // namespace diffq
