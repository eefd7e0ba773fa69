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
  auto& list = out["layers"] = nlohmann::json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    list.push_back({{"name", layers[i].name},
                    {"weight_bits", config.layers[i].weight},
                    {"activation_bits", config.layers[i].activation},
                    {"fixed", layers[i].fixed}});
  }
  out["bitops"] = bitops(layers, config);
  out["size_bits"] = size_bits(layers, config);
  return out;
}

namespace {

// The index of the layer called `name`, or layers.size().
size_t find_layer(const Layers& layers, const std::string& name) {
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].name == name) return i;
  return layers.size();
}

// A whole number of bits in [0, 32] from `entry[key]` (an object).
int bits_field(const nlohmann::json& entry, const char* key, const std::string& layer) {
  const auto it = entry.find(key);
  DIFFQ_CHECK(it != entry.end(), "layer '", layer, "': \"", key, "\" is missing");
  DIFFQ_CHECK(it->is_number_integer(), "layer '", layer, "': \"", key, "\" is not a whole number (", it->type_name(),
              ")");
  // Unsigned values beyond int64 are out of range as well.
  const bool in_range = it->is_number_unsigned() ? it->get<uint64_t>() <= 32
                                                 : (it->get<int64_t>() >= 0 && it->get<int64_t>() <= 32);
  DIFFQ_CHECK(in_range, "layer '", layer, "': ", key, " ", it->dump(), " is out of range (0 to 32)");
  return static_cast<int>(it->get<int64_t>());
}

}  // namespace

BitConfig config_from_json(const Layers& layers, const nlohmann::json& json) {
  DIFFQ_CHECK(json.is_object(), "a bit configuration is a JSON object, not ", json.type_name());
  const auto format = json.find("format");
  DIFFQ_CHECK(format != json.end() && format->is_string() && *format == "diffq-bitconfig",
              "not a bit configuration (\"format\": \"diffq-bitconfig\" is missing)");
  const auto version = json.find("version");
  DIFFQ_CHECK(version != json.end() && version->is_number_integer() && *version == 1,
              "unsupported bit configuration version ", version == json.end() ? std::string("(none)") : version->dump(),
              " (this library reads version 1)");
  const auto list_it = json.find("layers");
  DIFFQ_CHECK(list_it != json.end() && list_it->is_array(), "the bit configuration has no \"layers\" list");
  const auto& list = *list_it;
  DIFFQ_CHECK(list.size() == layers.size(), "the bit configuration has ", list.size(), " layers, the model ",
              layers.size());
  BitConfig config;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& entry = list[i];
    DIFFQ_CHECK(entry.is_object(), "layer ", i, " of the bit configuration is not an object");
    const auto name_it = entry.find("name");
    DIFFQ_CHECK(name_it != entry.end() && name_it->is_string(), "layer ", i,
                " of the bit configuration has no \"name\" string");
    const auto name = name_it->get<std::string>();
    if (name != layers[i].name) {
      const size_t elsewhere = find_layer(layers, name);
      DIFFQ_CHECK(elsewhere < layers.size(), "unknown layer '", name, "' (entry ", i,
                  " of the bit configuration; the model's layer there is '", layers[i].name, "')");
      DIFFQ_CHECK(false, "layer '", name, "' is entry ", i, " of the bit configuration but layer ", elsewhere,
                  " of the model (the order must match; the model's layer ", i, " is '", layers[i].name, "')");
    }
    const auto fixed = entry.find("fixed");
    if (fixed != entry.end()) {
      DIFFQ_CHECK(fixed->is_boolean(), "layer '", name, "': \"fixed\" is not true or false");
      DIFFQ_CHECK(fixed->get<bool>() == layers[i].fixed, "layer '", name, "' is ",
                  layers[i].fixed ? "fixed" : "searchable", " in the model, not in the bit configuration");
    }
    LayerBits bits;
    bits.weight = bits_field(entry, "weight_bits", name);
    bits.activation = bits_field(entry, "activation_bits", name);
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

std::string describe(const Layers& layers, const BitConfig& config) {
  check_sizes(layers, config);
  return describe(config);
}

}  // namespace oneshot
}  // namespace diffq
