// Configurations of one-shot mixed precision: costs, checks, JSON.
#include "diffq/oneshot/bit_config.h"

#include <algorithm>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

namespace {

void check_sizes(const Layers& layers, const BitConfig& config) {
  DIFFQ_CHECK(config.layers.size() == layers.size(), "the configuration has ", config.layers.size(),
              " layers, the model ", layers.size());
}

bool contains(const std::vector<int>& values, int v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

}  // namespace

double bitops(const Layers& layers, const BitConfig& config) {
  check_sizes(layers, config);
  double total = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& b = config.layers[i];
    total += double(b.weight) * double(b.activation == 0 ? 32 : b.activation) * double(layers[i].macs);
  }
  return total;
}

double size_bits(const Layers& layers, const BitConfig& config) {
  check_sizes(layers, config);
  double total = 0;
  for (size_t i = 0; i < layers.size(); ++i) total += double(config.layers[i].weight) * double(layers[i].weights);
  return total;
}

double cost(const Layers& layers, const BitConfig& config, CostKind kind) {
  return kind == CostKind::kBitOps ? bitops(layers, config) : size_bits(layers, config);
}

const char* cost_kind_name(CostKind kind) { return kind == CostKind::kBitOps ? "bitops" : "size"; }

BitConfig uniform_config(const Layers& layers, int weight_bits, int activation_bits) {
  BitConfig c;
  for (const auto& l : layers) {
    if (l.fixed) {
      c.layers.push_back(l.fixed_bits);
      continue;
    }
    DIFFQ_CHECK(contains(l.weight_candidates, weight_bits), "layer '", l.name, "' has no weight bit-width ",
                weight_bits);
    const bool has_activation = !(l.activation_candidates.size() == 1 && l.activation_candidates[0] == 0);
    DIFFQ_CHECK(!has_activation || contains(l.activation_candidates, activation_bits), "layer '", l.name,
                "' has no activation bit-width ", activation_bits);
    c.layers.push_back({weight_bits, has_activation ? activation_bits : 0});
  }
  return c;
}

BitConfig max_config(const Layers& layers) {
  BitConfig c;
  for (const auto& l : layers) {
    DIFFQ_CHECK(l.fixed || (!l.weight_candidates.empty() && !l.activation_candidates.empty()), "layer '", l.name,
                "' has no candidates");
    c.layers.push_back(l.fixed ? l.fixed_bits : LayerBits{l.weight_candidates.back(), l.activation_candidates.back()});
  }
  return c;
}

BitConfig min_config(const Layers& layers) {
  BitConfig c;
  for (const auto& l : layers) {
    DIFFQ_CHECK(l.fixed || (!l.weight_candidates.empty() && !l.activation_candidates.empty()), "layer '", l.name,
                "' has no candidates");
    c.layers.push_back(l.fixed ? l.fixed_bits
                               : LayerBits{l.weight_candidates.front(), l.activation_candidates.front()});
  }
  return c;
}

void check_config(const Layers& layers, const BitConfig& config) {
  check_sizes(layers, config);
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    const auto& b = config.layers[i];
    if (l.fixed) {
      DIFFQ_CHECK(b == l.fixed_bits, "layer '", l.name, "' is fixed at W", l.fixed_bits.weight, "A",
                  l.fixed_bits.activation, ", not W", b.weight, "A", b.activation);
      continue;
    }
    DIFFQ_CHECK(contains(l.weight_candidates, b.weight), "layer '", l.name, "' cannot run at ", b.weight,
                " weight bits");
    DIFFQ_CHECK(contains(l.activation_candidates, b.activation), "layer '", l.name, "' cannot run at ",
                b.activation, " activation bits");
  }
}

nlohmann::json to_json(const Layers& layers, const BitConfig& config) {
  check_config(layers, config);
  nlohmann::json out;
  out["format"] = "diffq-bitconfig";
  out["version"] = 1;
  out["cost"] = {{"bitops", bitops(layers, config)}, {"size_bits", size_bits(layers, config)}};
  auto& list = out["layers"] = nlohmann::json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    list.push_back({{"name", layers[i].name},
                    {"weight_bits", config.layers[i].weight},
                    {"activation_bits", config.layers[i].activation},
                    {"fixed", layers[i].fixed}});
  }
  return out;
}

BitConfig config_from_json(const Layers& layers, const nlohmann::json& json) {
  DIFFQ_CHECK(json.is_object(), "a bit configuration is a JSON object");
  DIFFQ_CHECK(json.contains("format") && json["format"].is_string() && json["format"] == "diffq-bitconfig",
              "not a bit configuration (\"format\": \"diffq-bitconfig\" is missing)");
  DIFFQ_CHECK(json.contains("version") && json["version"].is_number_integer() && json["version"] == 1,
              "unsupported bit configuration version (this library reads version 1)");
  DIFFQ_CHECK(json.contains("layers") && json["layers"].is_array(), "the bit configuration has no \"layers\" list");
  const auto& list = json["layers"];
  DIFFQ_CHECK(list.size() == layers.size(), "the bit configuration has ", list.size(), " layers, the model ",
              layers.size());
  BitConfig config;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& entry = list[i];
    DIFFQ_CHECK(entry.is_object(), "layer ", i, " of the bit configuration is not an object");
    DIFFQ_CHECK(entry.contains("name") && entry["name"].is_string(), "layer ", i, " has no name");
    const auto name = entry["name"].get<std::string>();
    DIFFQ_CHECK(name == layers[i].name, "layer ", i, " of the bit configuration is '", name, "', the model's is '",
                layers[i].name, "'");
    LayerBits bits;
    for (const char* key : {"weight_bits", "activation_bits"}) {
      DIFFQ_CHECK(entry.contains(key) && entry[key].is_number_integer(), "layer '", name, "': \"", key,
                  "\" is missing or not a whole number");
      const auto value = entry[key].get<int64_t>();
      DIFFQ_CHECK(value >= 0 && value <= 32, "layer '", name, "': ", key, " ", value, " is out of range");
      (std::string(key) == "weight_bits" ? bits.weight : bits.activation) = static_cast<int>(value);
    }
    config.layers.push_back(bits);
  }
  check_config(layers, config);
  return config;
}

std::string describe(const BitConfig& config) {
  std::string w = "W[", a = "A[";
  for (size_t i = 0; i < config.layers.size(); ++i) {
    w += (i ? " " : "") + std::to_string(config.layers[i].weight);
    a += (i ? " " : "") + (config.layers[i].activation ? std::to_string(config.layers[i].activation) : std::string("f"));
  }
  return w + "] " + a + "]";
}

}  // namespace oneshot
}  // namespace diffq
