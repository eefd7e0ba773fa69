// One-shot mixed precision, pure logic: costs, configurations and their
// JSON form, the greedy search on toy tables, the bit-width scheduler.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "diffq/error.h"
#include "diffq/oneshot/bit_config.h"
#include "diffq/oneshot/schedule.h"
#include "diffq/oneshot/search.h"

namespace {

using namespace diffq::oneshot;

// Runs `body`, expecting a diffq::Error whose message contains every `parts`.
template <typename Body>
void expect_error(Body body, const std::vector<std::string>& parts) {
  try {
    body();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.front() << "'";
  } catch (const diffq::Error& e) {
    for (const auto& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "'" << part << "' not in: " << e.what();
  }
}

LayerInfo searchable(const std::string& name, int64_t macs, int64_t weights) {
  LayerInfo l;
  l.name = name;
  l.macs = macs;
  l.weights = weights;
  l.weight_candidates = {2, 3, 4, 5, 6};
  l.activation_candidates = {2, 3, 4, 5, 6};
  return l;
}

// A fixed stem (W8, float input), `n` searchable layers, a fixed W8A8 classifier.
Layers toy_layers(int n) {
  Layers layers;
  LayerInfo stem;
  stem.name = "stem";
  stem.macs = 100;
  stem.weights = 10;
  stem.fixed = true;
  stem.fixed_bits = {8, 0};
  layers.push_back(stem);
  for (int i = 0; i < n; ++i) layers.push_back(searchable("l" + std::to_string(i), 1000 * (i + 1), 50 * (i + 1)));
  LayerInfo head = stem;
  head.name = "head";
  head.macs = 20;
  head.weights = 20;
  head.fixed_bits = {8, 8};
  layers.push_back(head);
  return layers;
}

// ---------------------------------------------------------------- configurations

TEST(BitConfig, BitOpsAndSizeByHandCountAFloatInputAs32Bits) {
  const auto layers = toy_layers(1);  // stem, l0 (1000 MACs, 50 weights), head
  const BitConfig c{{{8, 0}, {3, 4}, {8, 8}}};
  EXPECT_DOUBLE_EQ(bitops(layers, c), 8 * 32 * 100 + 3 * 4 * 1000 + 8 * 8 * 20);
  EXPECT_DOUBLE_EQ(size_bits(layers, c), 8 * 10 + 3 * 50 + 8 * 20);
  EXPECT_DOUBLE_EQ(cost(layers, c, CostKind::kBitOps), 25600 + 12000 + 1280);
  EXPECT_DOUBLE_EQ(cost(layers, c, CostKind::kSizeBits), 390);
  // A searchable layer with a float input (activation 0) counts 32 bits too.
  EXPECT_DOUBLE_EQ(bitops(layers, BitConfig{{{8, 0}, {3, 0}, {8, 8}}}), 25600 + 3 * 32 * 1000 + 1280);
  EXPECT_THROW(bitops(layers, BitConfig{{{8, 0}}}), diffq::Error);
  EXPECT_THROW(size_bits(layers, BitConfig{{{8, 0}}}), diffq::Error);
}

TEST(BitConfig, UniformMaxAndMinConfigurationsKeepFixedLayersAtTheirBits) {
  auto layers = toy_layers(2);
  EXPECT_EQ(uniform_config(layers, 4, 3), (BitConfig{{{8, 0}, {4, 3}, {4, 3}, {8, 8}}}));
  EXPECT_EQ(max_config(layers), (BitConfig{{{8, 0}, {6, 6}, {6, 6}, {8, 8}}}));
  EXPECT_EQ(min_config(layers), (BitConfig{{{8, 0}, {2, 2}, {2, 2}, {8, 8}}}));
  layers[2].weight_candidates = {3, 4, 5, 6};  // a depthwise layer: no 2
  EXPECT_EQ(max_config(layers), (BitConfig{{{8, 0}, {6, 6}, {6, 6}, {8, 8}}}));
  EXPECT_EQ(min_config(layers), (BitConfig{{{8, 0}, {2, 2}, {3, 2}, {8, 8}}}));
  expect_error([&] { uniform_config(layers, 2, 4); }, {"'l1'", "weight bit-width 2"});
  expect_error([&] { uniform_config(layers, 4, 7); }, {"'l0'", "activation bit-width 7"});
}

TEST(BitConfig, CheckNamesTheLayerAndTheValue) {
  const auto layers = toy_layers(2);
  check_config(layers, BitConfig{{{8, 0}, {3, 4}, {5, 2}, {8, 8}}});
  auto check = [&](const BitConfig& c) { return [&layers, c] { check_config(layers, c); }; };
  expect_error(check(BitConfig{{{8, 0}, {3, 4}, {5, 2}}}), {"3 layers", "4"});
  expect_error(check(BitConfig{{{4, 0}, {3, 4}, {5, 2}, {8, 8}}}), {"'stem' is fixed at W8A0", "not W4A0"});
  expect_error(check(BitConfig{{{8, 0}, {3, 4}, {5, 2}, {8, 4}}}), {"'head'", "W8A8", "not W8A4"});
  expect_error(check(BitConfig{{{8, 0}, {7, 4}, {5, 2}, {8, 8}}}), {"'l0' cannot run at 7 weight"});
  expect_error(check(BitConfig{{{8, 0}, {3, 4}, {5, 1}, {8, 8}}}), {"'l1' cannot run at 1 activation"});
}

TEST(BitConfig, DescribeIsOneCompactLine) {
  const auto layers = toy_layers(2);
  const BitConfig c{{{8, 0}, {3, 4}, {5, 2}, {8, 8}}};
  EXPECT_EQ(describe(layers, c), "W[8 3 5 8] A[f 4 2 8]");
  EXPECT_EQ(describe(c), describe(layers, c));
  EXPECT_THROW(describe(toy_layers(3), c), diffq::Error);
}

TEST(BitConfig, JsonRoundTripIsExact) {
  const auto layers = toy_layers(3);
  const BitConfig c{{{8, 0}, {3, 4}, {5, 2}, {2, 6}, {8, 8}}};
  const auto json = to_json(layers, c);
  EXPECT_EQ(json["format"], "diffq-bitconfig");
  EXPECT_EQ(json["version"], 1);
  ASSERT_EQ(json["layers"].size(), layers.size());
  EXPECT_EQ(json["layers"][1]["name"], "l0");
  EXPECT_EQ(json["layers"][1]["weight_bits"], 3);
  EXPECT_EQ(json["layers"][1]["activation_bits"], 4);
  EXPECT_EQ(json["layers"][0]["fixed"], true);
  EXPECT_EQ(json["layers"][1]["fixed"], false);
  EXPECT_DOUBLE_EQ(json["bitops"].get<double>(), bitops(layers, c));
  EXPECT_DOUBLE_EQ(json["size_bits"].get<double>(), size_bits(layers, c));
  const auto back = config_from_json(layers, nlohmann::json::parse(json.dump()));
  EXPECT_EQ(back, c);
  EXPECT_EQ(to_json(layers, back).dump(), json.dump());  // byte-identical text
  // The costs are informative only, and "fixed" is optional.
  auto lean = json;
  lean.erase("bitops");
  lean.erase("size_bits");
  for (auto& l : lean["layers"]) l.erase("fixed");
  EXPECT_EQ(config_from_json(layers, lean), c);
  // Writing an invalid configuration is refused.
  EXPECT_THROW(to_json(layers, BitConfig{{{8, 0}, {7, 4}, {5, 2}, {2, 6}, {8, 8}}}), diffq::Error);
}

TEST(BitConfig, JsonRefusalsNameTheProblem) {
  const auto layers = toy_layers(3);
  const BitConfig c{{{8, 0}, {3, 4}, {5, 2}, {2, 6}, {8, 8}}};
  const auto json = to_json(layers, c);
  auto refused = [&](const nlohmann::json& j, std::vector<std::string> parts) {
    expect_error([&] { config_from_json(layers, j); }, parts);
  };
  refused(nlohmann::json::array(), {"JSON object"});
  refused(nlohmann::json("text"), {"JSON object"});
  refused(nlohmann::json(), {"JSON object"});
  auto j = json;
  j["format"] = "other";
  refused(j, {"format"});
  j.erase("format");
  refused(j, {"format"});
  j = json;
  j["version"] = 2;
  refused(j, {"version 2"});
  j["version"] = "1";
  refused(j, {"version"});
  j = json;
  j["layers"].erase(1);
  refused(j, {"4 layers", "the model 5"});
  j = json;
  j["layers"].push_back(j["layers"][1]);
  refused(j, {"6 layers"});
  j = json;
  j["layers"][2]["name"] = "l9";
  refused(j, {"unknown layer 'l9'", "'l1'"});
  j = json;
  std::swap(j["layers"][1], j["layers"][2]);
  refused(j, {"'l1' is entry 1", "layer 2 of the model", "order"});
  j = json;
  j["layers"][2]["weight_bits"] = 3.5;
  refused(j, {"'l1'", "weight_bits", "not a whole number"});
  j = json;
  j["layers"][2]["activation_bits"] = "4";
  refused(j, {"'l1'", "activation_bits", "not a whole number"});
  j = json;
  j["layers"][2]["activation_bits"] = true;
  refused(j, {"activation_bits", "not a whole number"});
  j = json;
  j["layers"][2].erase("weight_bits");
  refused(j, {"'l1'", "\"weight_bits\" is missing"});
  j = json;
  j["layers"][2]["weight_bits"] = 7;
  refused(j, {"'l1' cannot run at 7 weight"});
  j = json;
  j["layers"][2]["weight_bits"] = -100000000000LL;
  refused(j, {"out of range"});
  j = json;
  j["layers"][2]["weight_bits"] = std::numeric_limits<uint64_t>::max();
  refused(j, {"out of range"});
  j = json;
  j["layers"][0]["weight_bits"] = 4;
  refused(j, {"'stem' is fixed"});
  j = json;
  j["layers"][0]["fixed"] = false;
  refused(j, {"'stem' is fixed in the model"});
  j = json;
  j["layers"][1]["fixed"] = "no";
  refused(j, {"\"fixed\" is not true or false"});
  j = json;
  j["layers"] = 3;
  refused(j, {"\"layers\" list"});
  j.erase("layers");
  refused(j, {"\"layers\" list"});
  j = json;
  j["layers"][3] = 5;
  refused(j, {"layer 3", "not an object"});
  j = json;
  j["layers"][3]["name"] = nlohmann::json::array();
  refused(j, {"layer 3", "no \"name\""});
  // Every field replaced by every kind of JSON value: an error, never a crash.
  const std::vector<nlohmann::json> hostile{nullptr, true, -1, 1u << 31, 1e308, "x", nlohmann::json::array({1}),
                                            nlohmann::json::object({{"a", 1}})};
  int refusals = 0;
  for (const auto& value : hostile) {
    for (const char* top : {"format", "version", "layers"}) {
      j = json;
      j[top] = value;
      EXPECT_THROW(config_from_json(layers, j), diffq::Error) << top << " = " << value.dump();
      ++refusals;
    }
    for (const char* field : {"name", "weight_bits", "activation_bits", "fixed"}) {
      j = json;
      j["layers"][1][field] = value;
      EXPECT_THROW(config_from_json(layers, j), diffq::Error) << field << " = " << value.dump();
      ++refusals;
    }
  }
  EXPECT_EQ(refusals, 56);
}

// ---------------------------------------------------------------- search

// A toy network whose held-out error is a known function of the bits:
// error = 0.2 + Σ sensitivity_i · (1/w_i + 1/(2·a_i)) over searchable layers.
struct Toy {
  Layers layers;
  std::vector<double> sensitivity;
  std::vector<std::pair<int64_t, BitConfig>> calls;  // (iteration, config) of every evaluation
  double error(const BitConfig& c, int64_t iteration) {
    calls.push_back({iteration, c});
    double e = 0.2;
    for (size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].fixed) continue;
      e += sensitivity[i] * (1.0 / c.layers[i].weight + 0.5 / c.layers[i].activation);
    }
    return std::min(1.0, e);
  }
};

// Stem, four searchable layers of equal MACs (sensitivity decides), head.
Toy make_toy() {
  Toy toy;
  toy.layers = toy_layers(4);
  for (auto& l : toy.layers) l.macs = l.fixed ? l.macs : 1000;
  toy.sensitivity = {0, 0.08, 0.005, 0.04, 0.0025, 0};
  return toy;
}

SearchResult run_toy(Toy& toy, const SearchOptions& options) {
  return search(
      toy.layers, [&](const BitConfig& c, int64_t it) { return toy.error(c, it); },
      [&](const BitConfig& c) { return cost(toy.layers, c, options.cost); }, options);
}

// The configuration after the first `count` moves of `r` from `start`.
BitConfig replay(BitConfig start, const SearchResult& r, size_t count) {
  for (size_t k = 0; k < count; ++k) {
    auto& b = start.layers[r.moves[k].layer];
    (r.moves[k].weight ? b.weight : b.activation) = r.moves[k].to;
  }
  return start;
}

TEST(Search, BitOpsBudgetMovesWeightsThenActivationsAndLandsWithinTheBudget) {
  auto toy = make_toy();
  const double budget = bitops(toy.layers, uniform_config(toy.layers, 4, 4));
  SearchOptions options;
  options.budget = budget;
  const auto r = run_toy(toy, options);
  check_config(toy.layers, r.config);
  EXPECT_DOUBLE_EQ(r.cost, bitops(toy.layers, r.config));
  EXPECT_LE(r.cost, budget);
  EXPECT_GE(r.cost, 0.9 * budget);
  // Phases in order; phase 1 touches weights only, phase 2 activations only.
  std::map<SearchPhase, int> per_phase;
  for (size_t k = 0; k < r.moves.size(); ++k) {
    const auto& m = r.moves[k];
    ++per_phase[m.phase];
    if (k) EXPECT_GE(int(m.phase), int(r.moves[k - 1].phase)) << k;
    if (m.phase == SearchPhase::kWeights) EXPECT_TRUE(m.weight) << k;
    if (m.phase == SearchPhase::kActivations) EXPECT_FALSE(m.weight) << k;
  }
  EXPECT_GT(per_phase[SearchPhase::kWeights], 0);
  EXPECT_GT(per_phase[SearchPhase::kActivations], 0);
  EXPECT_EQ(per_phase[SearchPhase::kWeightsAndActivations], 0);
  // Phase 1 stops as soon as the cost is ≤ 0.95 × cost(W b*, A5), b* = 4 here
  // (W4A4 is the budget itself).
  const double weight_target = 0.95 * bitops(toy.layers, uniform_config(toy.layers, 4, 5));
  const auto start = uniform_config(toy.layers, 5, 5);
  size_t phase_one = 0;
  while (phase_one < r.moves.size() && r.moves[phase_one].phase == SearchPhase::kWeights) ++phase_one;
  EXPECT_LE(bitops(toy.layers, replay(start, r, phase_one)), weight_target);
  EXPECT_GT(bitops(toy.layers, replay(start, r, phase_one - 1)), weight_target);
  EXPECT_EQ(replay(start, r, r.moves.size()), r.config);
  // The least sensitive layers lose the most bits: the first move is the
  // least sensitive layer's weights (l3), and the final bits follow sensitivity.
  EXPECT_EQ(r.moves[0].layer, 4u);
  EXPECT_TRUE(r.moves[0].weight);
  EXPECT_EQ(r.moves[0].to, 4);
  EXPECT_LE(r.config.layers[4].weight, r.config.layers[2].weight);
  EXPECT_LE(r.config.layers[2].weight, r.config.layers[3].weight);
  EXPECT_LE(r.config.layers[3].weight, r.config.layers[1].weight);
  EXPECT_LT(r.config.layers[4].weight, r.config.layers[1].weight);
  // (Activations then trade error against BitOPs = w·a·MACs: a layer with
  // more weight bits saves more per activation bit.)
}

TEST(Search, EveryEvaluationOfARoundHasTheRoundsIteration) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, uniform_config(toy.layers, 3, 4));
  const auto r = run_toy(toy, options);
  ASSERT_FALSE(toy.calls.empty());
  EXPECT_EQ(r.evaluations, static_cast<int64_t>(toy.calls.size()));
  // Rounds are contiguous blocks numbered 0, 1, 2, ...; one move per round.
  int64_t round = 0;
  for (size_t k = 0; k < toy.calls.size(); ++k) {
    if (k && toy.calls[k].first != toy.calls[k - 1].first) ++round;
    ASSERT_EQ(toy.calls[k].first, round) << k;
  }
  ASSERT_EQ(static_cast<size_t>(round + 1), r.moves.size());
  for (size_t k = 0; k < r.moves.size(); ++k) EXPECT_EQ(r.moves[k].iteration, int64_t(k));
  // Round 0 tried one step down and one step up of every searchable layer's
  // weights from (5, 5), and nothing else.
  std::set<std::vector<int>> first_round;
  const auto start = uniform_config(toy.layers, 5, 5);
  for (const auto& call : toy.calls) {
    if (call.first != 0) break;
    int changed = 0;
    for (size_t i = 0; i < start.layers.size(); ++i) {
      EXPECT_EQ(call.second.layers[i].activation, start.layers[i].activation);
      const int step = call.second.layers[i].weight - start.layers[i].weight;
      if (step) {
        ++changed;
        EXPECT_EQ(std::abs(step), 1);
      }
    }
    EXPECT_EQ(changed, 1);
    first_round.insert({call.second.layers[1].weight, call.second.layers[2].weight, call.second.layers[3].weight,
                        call.second.layers[4].weight});
  }
  EXPECT_EQ(first_round.size(), 8u);  // 4 layers × (down, up)
}

TEST(Search, IsDeterministic) {
  auto a = make_toy(), b = make_toy();
  SearchOptions options;
  options.budget = bitops(a.layers, uniform_config(a.layers, 3, 3)) * 1.07;
  const auto r1 = run_toy(a, options);
  const auto r2 = run_toy(b, options);
  EXPECT_EQ(r1.config, r2.config);
  EXPECT_EQ(r1.evaluations, r2.evaluations);
  ASSERT_EQ(r1.moves.size(), r2.moves.size());
  for (size_t k = 0; k < r1.moves.size(); ++k) {
    EXPECT_EQ(r1.moves[k].iteration, r2.moves[k].iteration);
    EXPECT_EQ(r1.moves[k].layer, r2.moves[k].layer);
    EXPECT_EQ(r1.moves[k].weight, r2.moves[k].weight);
    EXPECT_EQ(r1.moves[k].from, r2.moves[k].from);
    EXPECT_EQ(r1.moves[k].to, r2.moves[k].to);
    EXPECT_EQ(r1.moves[k].score, r2.moves[k].score);
    EXPECT_EQ(r1.moves[k].phase, r2.moves[k].phase);
  }
}

TEST(Search, EveryBudgetBetweenTheExtremesLandsWithinTenPercent) {
  const auto layers = make_toy().layers;
  const double low = bitops(layers, min_config(layers));
  const double high = bitops(layers, max_config(layers));
  for (bool up : {true, false}) {
    for (int k = 0; k <= 10; ++k) {
      SearchOptions options;
      options.up_moves = up;
      options.budget = low + (high - low) * k / 10.0;
      auto toy = make_toy();
      const auto r = run_toy(toy, options);
      EXPECT_LE(r.cost, options.budget) << k << " up " << up;
      EXPECT_GE(r.cost, 0.9 * options.budget) << k << " up " << up;
      check_config(layers, r.config);
      EXPECT_LT(r.moves.size(), 200u) << k;  // no wandering on this table
    }
  }
}

TEST(Search, WithoutFillTheCostCanUndershootAndFillOnlyMovesUpWithinTheBudget) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, uniform_config(toy.layers, 4, 4));
  options.fill = false;
  const auto lean = run_toy(toy, options);
  options.fill = true;
  auto again = make_toy();
  const auto filled = run_toy(again, options);
  EXPECT_LE(lean.cost, filled.cost);
  for (const auto& m : lean.moves) EXPECT_NE(m.phase, SearchPhase::kFill);
  for (const auto& m : filled.moves) {
    if (m.phase != SearchPhase::kFill) continue;
    EXPECT_GT(m.to, m.from);
    EXPECT_LE(m.cost, options.budget);
  }
}

TEST(Search, SizeBudgetMovesWeightsOnly) {
  auto toy = make_toy();
  SearchOptions options;
  options.cost = CostKind::kSizeBits;
  options.budget = size_bits(toy.layers, uniform_config(toy.layers, 3, 3));
  const auto r = run_toy(toy, options);
  ASSERT_FALSE(r.moves.empty());
  for (const auto& m : r.moves) {
    EXPECT_TRUE(m.weight);
    EXPECT_TRUE(m.phase == SearchPhase::kWeights || m.phase == SearchPhase::kFill);
  }
  for (size_t i = 1; i + 1 < toy.layers.size(); ++i) EXPECT_EQ(r.config.layers[i].activation, 5);
  EXPECT_DOUBLE_EQ(r.cost, size_bits(toy.layers, r.config));
  EXPECT_LE(r.cost, options.budget);
  EXPECT_GE(r.cost, 0.9 * options.budget);
  // Size budgets can only use weights: the smallest reachable size is
  // every weight at 2 bits (activations play no part).
  options.budget = size_bits(toy.layers, min_config(toy.layers));
  auto t = make_toy();
  EXPECT_EQ(run_toy(t, options).config.layers[2], (LayerBits{2, 5}));
}

TEST(Search, ZeroErrorEverywhereChoosesByCostAndBreaksTiesByLayer) {
  Layers layers = toy_layers(3);
  layers[1].macs = 1000;
  layers[2].macs = 5000;  // the most expensive layer goes first
  layers[3].macs = 5000;  // ... ties with this one: the lower index wins
  SearchOptions options;
  // b* = 6: the start is W6A6 (start_bits 5 raised to b* + 1, clamped).
  options.budget = bitops(layers, uniform_config(layers, 6, 6)) - 1;
  options.fill = false;
  const auto r = search(
      layers, [](const BitConfig&, int64_t) { return 0.0; }, [&](const BitConfig& c) { return bitops(layers, c); },
      options);
  ASSERT_EQ(r.moves.size(), 1u);
  EXPECT_EQ(r.moves[0].layer, 2u);
  EXPECT_TRUE(r.moves[0].weight);
  EXPECT_EQ(r.moves[0].to, 5);
  EXPECT_EQ(r.moves[0].error, 0.0);
  EXPECT_TRUE(std::isfinite(r.moves[0].score));
  // A zero cost everywhere too (a budget of any size is met): no division by zero.
  options.budget = 1;
  options.fill = true;
  const auto flat = search(
      layers, [](const BitConfig&, int64_t) { return 0.0; }, [](const BitConfig&) { return 0.0; }, options);
  for (const auto& m : flat.moves) EXPECT_TRUE(std::isfinite(m.score));
  EXPECT_EQ(flat.config, max_config(layers));  // fill climbs to the top
}

TEST(Search, ABudgetBelowTheSmallestConfigurationIsRefusedNamingBothNumbers) {
  auto toy = make_toy();
  const double least = bitops(toy.layers, min_config(toy.layers));
  SearchOptions options;
  options.budget = least - 1;
  std::ostringstream budget, smallest;
  budget << options.budget;
  smallest << least;
  expect_error([&] { run_toy(toy, options); }, {"budget " + budget.str(), smallest.str(), "smallest"});
  EXPECT_TRUE(toy.calls.empty());
  // Exactly the smallest configuration's cost is reachable.
  options.budget = least;
  auto t = make_toy();
  EXPECT_EQ(run_toy(t, options).config, min_config(toy.layers));
}

TEST(Search, ALayerWhoseOnlyMoveRevisitsAConfigurationFailsClearly) {
  // A size budget (weights only) and one searchable layer with candidates
  // {4, 5, 6}; the error rewards bits so much that the first round steps UP
  // to 6. From there the only step down goes back to the visited (5, 5):
  // skipped, so no move can lower the cost.
  Layers layers = toy_layers(1);
  layers[1].weight_candidates = {4, 5, 6};
  layers[1].activation_candidates = {4, 5, 6};
  SearchOptions options;
  options.cost = CostKind::kSizeBits;
  options.budget = size_bits(layers, uniform_config(layers, 4, 5));
  int64_t calls = 0;
  auto evaluate = [&](const BitConfig& c, int64_t) {
    ++calls;
    return c.layers[1].weight == 6 ? 0.0 : c.layers[1].weight == 5 ? 0.5 : 1.0;
  };
  auto cost_of = [&](const BitConfig& c) { return size_bits(layers, c); };
  expect_error([&] { search(layers, evaluate, cost_of, options); }, {"cannot meet the budget", "no legal move"});
  EXPECT_EQ(calls, 2);  // one round (down, up), then the guard
  // Without steps up the same search goes straight down.
  options.up_moves = false;
  EXPECT_EQ(search(layers, evaluate, cost_of, options).config.layers[1].weight, 4);
}

TEST(Search, ACostThatNoMoveLowersFailsInsteadOfLooping) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, min_config(toy.layers));
  const auto smallest = min_config(toy.layers);
  int64_t calls = 0;
  // Every configuration but the smallest costs the same: no move lowers it.
  expect_error(
      [&] {
        search(
            toy.layers, [&](const BitConfig&, int64_t) { return ++calls, 0.5; },
            [&](const BitConfig& c) { return c == smallest ? options.budget : options.budget * 2; }, options);
      },
      {"no legal move"});
  EXPECT_EQ(calls, 0);
}

TEST(Search, MaxIterationsBoundsTheRounds) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, min_config(toy.layers));
  options.max_iterations = 3;
  expect_error([&] { run_toy(toy, options); }, {"3 rounds"});
  EXPECT_EQ(toy.calls.back().first, 2);
}

TEST(Search, RefusesDescendingCandidatesBadErrorsAndBadOptions) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, uniform_config(toy.layers, 4, 4));
  auto cost_of = [&](const BitConfig& c) { return bitops(toy.layers, c); };
  expect_error([&] { search(toy.layers, [](const BitConfig&, int64_t) { return 2.0; }, cost_of, options); },
               {"outside [0, 1]"});
  expect_error([&] { search(toy.layers, [](const BitConfig&, int64_t) { return std::nan(""); }, cost_of, options); },
               {"outside [0, 1]"});
  auto descending = toy.layers;
  descending[1].weight_candidates = {6, 5, 4, 3, 2};
  expect_error([&] { search(descending, [](const BitConfig&, int64_t) { return 0.1; }, cost_of, options); },
               {"'l0'", "strictly ascending"});
  for (auto bad : {0.0, -1.0, std::nan("")}) {
    auto o = options;
    o.budget = bad;
    EXPECT_THROW(run_toy(toy, o), diffq::Error) << bad;
  }
  auto o = options;
  o.phase_one_margin = 1.5;
  EXPECT_THROW(run_toy(toy, o), diffq::Error);
  o = options;
  o.max_iterations = 0;
  EXPECT_THROW(run_toy(toy, o), diffq::Error);
  EXPECT_THROW(search(toy.layers, nullptr, cost_of, options), diffq::Error);
}

TEST(Search, StartBitsAreClampedIntoEachLayersCandidates) {
  auto toy = make_toy();
  toy.layers[2].weight_candidates = {2, 3};  // start 5 → 3
  toy.layers[3].activation_candidates = {6};  // start 5 → 6
  SearchOptions options;
  // About W3A3's cost: b* = 3, the start stays at start_bits = 5.
  const auto plain = make_toy().layers;
  options.budget = bitops(plain, uniform_config(plain, 3, 3));
  options.fill = false;
  options.max_iterations = 1;  // only the start matters here
  try {
    run_toy(toy, options);
  } catch (const diffq::Error&) {
  }
  ASSERT_FALSE(toy.calls.empty());
  // Every candidate of the first round differs from the start in one tensor.
  const auto& first = toy.calls.front().second;
  EXPECT_TRUE(first.layers[2] == (LayerBits{2, 5}) || first.layers[2] == (LayerBits{3, 5}));
  EXPECT_EQ(first.layers[3].activation, 6);
  options.budget = 1e12;  // already met, b* = 6: the start is raised to 7, clamped to each layer's highest
  options.max_iterations = 100000;
  const auto r = run_toy(toy, options);
  EXPECT_TRUE(r.moves.empty());
  EXPECT_EQ(r.start_bits, 7);
  EXPECT_EQ(r.config.layers[1], (LayerBits{6, 6}));
  EXPECT_EQ(r.config.layers[2], (LayerBits{3, 6}));
  EXPECT_EQ(r.config.layers[3], (LayerBits{6, 6}));
}

TEST(Search, ABudgetAtTheStartsCostIsStillSearchedFromAbove) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, uniform_config(toy.layers, 5, 5));  // b* = 5: start at 6
  const auto r = run_toy(toy, options);
  EXPECT_EQ(r.start_bits, 6);
  EXPECT_FALSE(r.moves.empty());
  EXPECT_LE(r.cost, options.budget);
  EXPECT_GE(r.cost, 0.9 * options.budget);
  EXPECT_NE(r.config, uniform_config(toy.layers, 5, 5));  // the toy's sensitivities differ
  EXPECT_FALSE(r.uniform_kept);
}

TEST(Search, FinalCheckKeepsAStrictlyBetterUniformConfiguration) {
  auto toy = make_toy();
  const auto w3a3 = uniform_config(toy.layers, 3, 3);
  SearchOptions options;
  options.budget = bitops(toy.layers, w3a3);
  int64_t last_search_round = -1;
  // The toy's error, except that uniform W3A3 is far better than anything:
  // a configuration the greedy steps of single layers never reach.
  auto evaluate = [&](const BitConfig& c, int64_t it) {
    if (c == w3a3) return 0.01;
    return toy.error(c, it);
  };
  auto cost_of = [&](const BitConfig& c) { return bitops(toy.layers, c); };
  options.compare_rounds = 0;
  const auto greedy = search(toy.layers, evaluate, cost_of, options);
  ASSERT_NE(greedy.config, w3a3);
  EXPECT_EQ(greedy.uniform_bits, 0);
  EXPECT_EQ(greedy.searched_error, -1);
  EXPECT_FALSE(greedy.uniform_kept);
  last_search_round = greedy.moves.back().iteration;

  toy.calls.clear();
  options.compare_rounds = 3;
  const auto r = search(toy.layers, evaluate, cost_of, options);
  // The toy records the searched configuration's calls (not W3A3's): the last three.
  std::vector<int64_t> check_rounds;
  for (size_t k = toy.calls.size() - 3; k < toy.calls.size(); ++k) check_rounds.push_back(toy.calls[k].first);
  const auto last_config = toy.calls.back().second;
  EXPECT_TRUE(r.uniform_kept);
  EXPECT_EQ(r.config, w3a3);
  EXPECT_DOUBLE_EQ(r.cost, options.budget);
  EXPECT_EQ(r.uniform_bits, 3);
  EXPECT_DOUBLE_EQ(r.uniform_error, 0.01);
  EXPECT_DOUBLE_EQ(r.searched_error, toy.error(greedy.config, 0));
  // The greedy part is unchanged; the check costs 3 rounds of 2 configurations
  // (the searched one and W3A3: W4A4 and up cost more than the budget, W2A2
  // less than 0.9 of it), on fresh rounds after the search's own.
  EXPECT_EQ(r.moves.size(), greedy.moves.size());
  EXPECT_EQ(r.evaluations, greedy.evaluations + 3 * 2);
  EXPECT_EQ(check_rounds, (std::vector<int64_t>{last_search_round + 1, last_search_round + 2, last_search_round + 3}));
  EXPECT_EQ(last_config, greedy.config);
}

TEST(Search, FinalCheckKeepsTheSearchedConfigurationUnlessAUniformOneIsStrictlyBetter) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, uniform_config(toy.layers, 4, 4));
  const auto r = run_toy(toy, options);  // compare_rounds 4 by default
  EXPECT_FALSE(r.uniform_kept);
  EXPECT_EQ(r.uniform_bits, 4);
  EXPECT_DOUBLE_EQ(r.uniform_error, toy.error(uniform_config(toy.layers, 4, 4), 0));
  EXPECT_DOUBLE_EQ(r.searched_error, toy.error(r.config, 0));
  EXPECT_LT(r.searched_error, r.uniform_error);  // mixed precision pays on the toy
  // A tie keeps the searched configuration.
  auto tie = [&](const BitConfig&, int64_t) { return 0.3; };
  auto cost_of = [&](const BitConfig& c) { return bitops(toy.layers, c); };
  const auto t = search(toy.layers, tie, cost_of, options);
  EXPECT_FALSE(t.uniform_kept);
  EXPECT_EQ(t.uniform_bits, 4);
  EXPECT_DOUBLE_EQ(t.uniform_error, 0.3);
  // No uniform configuration within [0.9 B, B]: no check.
  options.budget = 0.5 * (bitops(toy.layers, uniform_config(toy.layers, 3, 3)) +
                          bitops(toy.layers, uniform_config(toy.layers, 4, 4)));
  const auto none = run_toy(toy, options);
  EXPECT_EQ(none.uniform_bits, 0);
  EXPECT_FALSE(none.uniform_kept);
  options.compare_rounds = -1;
  expect_error([&] { run_toy(toy, options); }, {"compare_rounds", "-1"});
}

// ---------------------------------------------------------------- scheduler

TEST(Schedule, RatioIsACosineFromHalfToOneFifth) {
  EXPECT_DOUBLE_EQ(shrink_ratio(0.0), 0.5);
  EXPECT_DOUBLE_EQ(shrink_ratio(1.0), 0.2);
  EXPECT_NEAR(shrink_ratio(0.5), 0.35, 1e-12);
  EXPECT_NEAR(shrink_ratio(0.25), 0.2 + 0.15 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_DOUBLE_EQ(shrink_ratio(-1.0), 0.5);  // clamped
  EXPECT_DOUBLE_EQ(shrink_ratio(2.0), 0.2);
  EXPECT_NEAR(shrink_ratio(0.5, 1.0, 0.0), 0.5, 1e-12);
}

TEST(Schedule, DueStepsFollowTheWarmUpAndBothPeriods) {
  SchedulePlan plan;
  plan.total_steps = 20;
  plan.warmup_steps = 3;
  plan.early_period = 2;
  plan.late_period = 5;
  plan.late_from = 0.5;
  std::vector<int64_t> due;
  for (int64_t s = -1; s < 25; ++s)
    if (plan.due(s)) due.push_back(s);
  // 3, 5, 7, 9 before half the run; then 10 (the switch) and every 5.
  EXPECT_EQ(due, (std::vector<int64_t>{3, 5, 7, 9, 10, 15}));
}

TEST(Schedule, ForBudgetKeepsThePapersFractionsOfTheRun) {
  // 150 epochs of 100 steps: exactly the paper (warm-up 5, periods 2 and 15 epochs).
  auto plan = SchedulePlan::for_budget(15000, 100);
  EXPECT_EQ(plan.warmup_steps, 500);
  EXPECT_EQ(plan.early_period, 200);
  EXPECT_EQ(plan.late_period, 1500);
  EXPECT_DOUBLE_EQ(plan.late_from, 0.72);
  // 15 epochs of 100 steps: a tenth of everything, in whole epochs when long enough.
  plan = SchedulePlan::for_budget(1500, 100);
  EXPECT_EQ(plan.warmup_steps, 50);
  EXPECT_EQ(plan.early_period, 20);
  EXPECT_EQ(plan.late_period, 200);  // 150 steps → 2 whole epochs (1.5 rounds up)
  // A short run still sees about as many scheduler runs as the paper's.
  plan = SchedulePlan::for_budget(3000, 1000);
  int early = 0, late = 0;
  for (int64_t s = 0; s < 3000; ++s)
    if (plan.due(s)) ++(s < 2160 ? early : late);
  EXPECT_GE(early, 45);
  EXPECT_LE(early, 55);
  EXPECT_GE(late, 2);
  EXPECT_LE(late, 4);
  // Tiny runs: periods of at least one step.
  plan = SchedulePlan::for_budget(10, 1);
  EXPECT_EQ(plan.early_period, 1);
  EXPECT_EQ(plan.late_period, 1);
  EXPECT_THROW(SchedulePlan::for_budget(0, 4), diffq::Error);
  EXPECT_THROW(SchedulePlan::for_budget(100, 0), diffq::Error);
}

TEST(Schedule, TheMostTurbulentLayersLoseTheirLowestCandidate) {
  const std::vector<std::vector<int>> full{{2, 3, 4}, {2, 3, 4}, {3, 4, 5}, {2, 3, 4}, {2, 3}};
  const std::vector<double> turbulence{0.1, 0.4, 0.9, 0.4, 0.05};
  const std::vector<int> floor{2, 2, 3, 2, 2};
  // floor(0.5 · 5) = 2 layers: index 2 (0.9) and index 1 (0.4, before 3 on the tie).
  auto c = schedule_candidates(full, turbulence, 0.5, floor);
  EXPECT_EQ(c[2], (std::vector<int>{4, 5}));  // depthwise floor 3
  EXPECT_EQ(c[1], (std::vector<int>{3, 4}));
  EXPECT_EQ(c[3], full[3]);
  EXPECT_EQ(c[0], full[0]);
  EXPECT_EQ(c[4], full[4]);
  // floor(0.79 · 5) = 3: the tie's second layer too.
  c = schedule_candidates(full, turbulence, 0.79, floor);
  EXPECT_EQ(c[3], (std::vector<int>{3, 4}));
  EXPECT_EQ(c[0], full[0]);
  // A lower ratio restores the full sets of the others; floor(0.2 · 5) = 1.
  c = schedule_candidates(full, turbulence, 0.2, floor);
  EXPECT_EQ(c[2], (std::vector<int>{4, 5}));
  EXPECT_EQ(c[1], full[1]);
  // New turbulence: the layer that lost a level gets its full set back.
  c = schedule_candidates(full, {0.9, 0.1, 0.1, 0.1, 0.1}, 0.2, floor);
  EXPECT_EQ(c[0], (std::vector<int>{3, 4}));
  EXPECT_EQ(c[2], full[2]);
  // A smallest candidate above the floor is kept (at most one level goes).
  c = schedule_candidates(full, turbulence, 0.5, std::vector<int>{2, 2, 2, 2, 2});
  EXPECT_EQ(c[2], full[2]);
  c = schedule_candidates({{3, 4}, {2, 3}}, {0.5, 0.4}, 1.0, {2, 2});
  EXPECT_EQ(c[0], (std::vector<int>{3, 4}));
  EXPECT_EQ(c[1], (std::vector<int>{3}));
  // A quota that floating point could round down: floor(0.3 · 10) = 3.
  std::vector<std::vector<int>> ten(10, std::vector<int>{2, 3});
  std::vector<double> t10{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  c = schedule_candidates(ten, t10, 0.3, std::vector<int>(10, 2));
  int shrunk = 0;
  for (const auto& s : c) shrunk += s.size() == 1;
  EXPECT_EQ(shrunk, 3);
  EXPECT_EQ(c[9], (std::vector<int>{3}));
  EXPECT_EQ(c[6], (std::vector<int>{2, 3}));
  // A layer with a single candidate keeps it.
  c = schedule_candidates({{2}}, {1.0}, 1.0, {2});
  EXPECT_EQ(c[0], (std::vector<int>{2}));
  EXPECT_TRUE(schedule_candidates({}, {}, 0.5, {}).empty());
  EXPECT_THROW(schedule_candidates(full, {0.1}, 0.5, floor), diffq::Error);
  EXPECT_THROW(schedule_candidates(full, turbulence, 1.5, floor), diffq::Error);
  EXPECT_THROW(schedule_candidates({{3, 2}}, {0.1}, 0.5, {2}), diffq::Error);
  EXPECT_THROW(schedule_candidates({{2, 3}}, {std::nan("")}, 0.5, {2}), diffq::Error);
}

}  // namespace
