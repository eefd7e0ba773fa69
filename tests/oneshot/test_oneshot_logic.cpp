// One-shot mixed precision, pure logic: costs, configurations and their
// JSON form, the greedy search on toy tables, the bit-width scheduler.
#include <cmath>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "diffq/error.h"
#include "diffq/oneshot/bit_config.h"
#include "diffq/oneshot/schedule.h"
#include "diffq/oneshot/search.h"

namespace {

using namespace diffq::oneshot;

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

TEST(BitConfig, CostsByHand) {
  const auto layers = toy_layers(2);
  BitConfig c{{{8, 0}, {3, 4}, {5, 2}, {8, 8}}};
  EXPECT_DOUBLE_EQ(bitops(layers, c), 8 * 32 * 100 + 3 * 4 * 1000 + 5 * 2 * 2000 + 8 * 8 * 20);
  EXPECT_DOUBLE_EQ(size_bits(layers, c), 8 * 10 + 3 * 50 + 5 * 100 + 8 * 20);
  EXPECT_DOUBLE_EQ(cost(layers, c, CostKind::kSizeBits), size_bits(layers, c));
  EXPECT_EQ(uniform_config(layers, 4, 3), (BitConfig{{{8, 0}, {4, 3}, {4, 3}, {8, 8}}}));
  EXPECT_EQ(max_config(layers), (BitConfig{{{8, 0}, {6, 6}, {6, 6}, {8, 8}}}));
  EXPECT_EQ(min_config(layers), (BitConfig{{{8, 0}, {2, 2}, {2, 2}, {8, 8}}}));
  EXPECT_THROW(uniform_config(layers, 7, 3), diffq::Error);
  EXPECT_EQ(describe(c), "W[8 3 5 8] A[f 4 2 8]");
}

TEST(BitConfig, ChecksNameTheProblem) {
  const auto layers = toy_layers(2);
  auto expect_error = [&](const BitConfig& c, const std::string& part) {
    try {
      check_config(layers, c);
      ADD_FAILURE() << "accepted " << describe(c);
    } catch (const diffq::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error(BitConfig{{{8, 0}, {3, 4}, {5, 2}}}, "3 layers");
  expect_error(BitConfig{{{4, 0}, {3, 4}, {5, 2}, {8, 8}}}, "'stem' is fixed");
  expect_error(BitConfig{{{8, 0}, {7, 4}, {5, 2}, {8, 8}}}, "'l0' cannot run at 7 weight");
  expect_error(BitConfig{{{8, 0}, {3, 4}, {5, 1}, {8, 8}}}, "'l1' cannot run at 1 activation");
}

TEST(BitConfig, JsonRoundTripAndRefusals) {
  const auto layers = toy_layers(3);
  BitConfig c{{{8, 0}, {3, 4}, {5, 2}, {2, 6}, {8, 8}}};
  const auto json = to_json(layers, c);
  EXPECT_EQ(json["layers"][1]["name"], "l0");
  EXPECT_DOUBLE_EQ(json["cost"]["bitops"].get<double>(), bitops(layers, c));
  EXPECT_EQ(config_from_json(layers, nlohmann::json::parse(json.dump())), c);
  auto refused = [&](nlohmann::json j, const std::string& part) {
    try {
      config_from_json(layers, j);
      ADD_FAILURE() << "accepted " << j.dump();
    } catch (const diffq::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused(nlohmann::json::array(), "JSON object");
  auto j = json;
  j["format"] = "other";
  refused(j, "format");
  j = json;
  j["version"] = 2;
  refused(j, "version");
  j = json;
  j["layers"].erase(1);
  refused(j, "4 layers");
  j = json;
  j["layers"][2]["name"] = "l9";
  refused(j, "'l9'");
  j = json;
  j["layers"][2]["weight_bits"] = 3.5;
  refused(j, "weight_bits");
  j = json;
  j["layers"][2]["activation_bits"] = "4";
  refused(j, "activation_bits");
  j = json;
  j["layers"][2]["weight_bits"] = 7;
  refused(j, "cannot run at 7");
  j = json;
  j["layers"][2]["weight_bits"] = -100000000000LL;
  refused(j, "out of range");
  j = json;
  j["layers"][0]["weight_bits"] = 4;
  refused(j, "fixed");
  j = json;
  j["layers"] = 3;
  refused(j, "layers");
}

// ---------------------------------------------------------------- search

// Error = Σ sensitivity_i · (2^-w_i + 0.5 · 2^-a_i), scaled into [0, 1].
struct Toy {
  Layers layers;
  std::vector<double> sensitivity;
  std::vector<int64_t> iterations;  // the iteration of every call
  double error(const BitConfig& c, int64_t iteration) {
    iterations.push_back(iteration);
    double e = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].fixed) continue;
      e += sensitivity[i] * (std::pow(2.0, -c.layers[i].weight) + 0.5 * std::pow(2.0, -c.layers[i].activation));
    }
    return std::min(1.0, e / 4);
  }
};

SearchResult run_toy(Toy& toy, const SearchOptions& options) {
  return search(
      toy.layers, [&](const BitConfig& c, int64_t it) { return toy.error(c, it); },
      [&](const BitConfig& c) { return cost(toy.layers, c, options.cost); }, options);
}

Toy make_toy() {
  Toy toy;
  toy.layers = toy_layers(4);
  for (auto& l : toy.layers) l.macs = l.fixed ? l.macs : 1000;  // equal costs: sensitivity decides
  toy.sensitivity = {0, 8.0, 0.5, 4.0, 0.25, 0};
  return toy;
}

TEST(Search, BitOpsBudgetMovesWeightsThenActivationsAndLandsWithinTheBudget) {
  auto toy = make_toy();
  const double budget = bitops(toy.layers, uniform_config(toy.layers, 4, 4));
  SearchOptions options;
  options.budget = budget;
  const auto r = run_toy(toy, options);
  EXPECT_LE(r.cost, budget);
  EXPECT_GE(r.cost, 0.9 * budget);
  EXPECT_DOUBLE_EQ(r.cost, bitops(toy.layers, r.config));
  check_config(toy.layers, r.config);
  // Phase 1 moves only weights, then phase 2 only activations (before fill).
  size_t first_activation = r.moves.size();
  for (size_t k = 0; k < r.moves.size(); ++k)
    if (!r.moves[k].weight) {
      first_activation = k;
      break;
    }
  ASSERT_GT(first_activation, 0u);
  ASSERT_LT(first_activation, r.moves.size());
  // The least sensitive layers lose the most bits.
  EXPECT_LT(r.config.layers[4].weight, r.config.layers[1].weight);
  EXPECT_LT(r.config.layers[2].weight, r.config.layers[3].weight);
  // The evaluations of one round share its iteration; rounds count up by one.
  int64_t previous = 0;
  for (auto it : toy.iterations) {
    EXPECT_TRUE(it == previous || it == previous + 1);
    previous = it;
  }
  EXPECT_EQ(previous + 1, static_cast<int64_t>(r.moves.size()));
  EXPECT_EQ(r.evaluations, static_cast<int64_t>(toy.iterations.size()));
  // Deterministic.
  auto again = make_toy();
  const auto r2 = run_toy(again, options);
  EXPECT_EQ(r2.config, r.config);
  ASSERT_EQ(r2.moves.size(), r.moves.size());
  for (size_t k = 0; k < r.moves.size(); ++k) {
    EXPECT_EQ(r2.moves[k].layer, r.moves[k].layer);
    EXPECT_EQ(r2.moves[k].to, r.moves[k].to);
  }
}

TEST(Search, EveryBudgetBetweenTheExtremesIsMet) {
  auto toy = make_toy();
  const double low = bitops(toy.layers, uniform_config(toy.layers, 2, 2));
  const double high = bitops(toy.layers, uniform_config(toy.layers, 6, 6));
  for (int k = 1; k <= 8; ++k) {
    SearchOptions options;
    options.budget = low + (high - low) * k / 9.0;
    auto t = make_toy();
    const auto r = run_toy(t, options);
    EXPECT_LE(r.cost, options.budget) << k;
    EXPECT_GE(r.cost, 0.9 * options.budget) << k;
  }
}

TEST(Search, SizeBudgetMovesWeightsOnly) {
  auto toy = make_toy();
  SearchOptions options;
  options.cost = CostKind::kSizeBits;
  options.budget = size_bits(toy.layers, uniform_config(toy.layers, 3, 3));
  const auto r = run_toy(toy, options);
  for (const auto& m : r.moves) EXPECT_TRUE(m.weight);
  for (size_t i = 1; i + 1 < toy.layers.size(); ++i) EXPECT_EQ(r.config.layers[i].activation, 5);
  EXPECT_LE(r.cost, options.budget);
  EXPECT_GE(r.cost, 0.9 * options.budget);
}

TEST(Search, ZeroErrorEverywhereChoosesByCost) {
  Layers layers = toy_layers(2);
  layers[1].macs = 1000;
  layers[2].macs = 5000;  // the expensive layer goes first
  SearchOptions options;
  options.budget = bitops(layers, uniform_config(layers, 5, 5)) - 1;
  options.fill = false;
  const auto r = search(
      layers, [](const BitConfig&, int64_t) { return 0.0; },
      [&](const BitConfig& c) { return bitops(layers, c); }, options);
  ASSERT_FALSE(r.moves.empty());
  EXPECT_EQ(r.moves[0].layer, 2u);
  EXPECT_TRUE(std::isfinite(r.moves[0].score));
}

TEST(Search, ImpossibleBudgetsAndStuckSearchesFailClearly) {
  auto toy = make_toy();
  SearchOptions options;
  options.budget = bitops(toy.layers, min_config(toy.layers)) - 1;
  try {
    run_toy(toy, options);
    ADD_FAILURE() << "accepted a budget below the smallest configuration";
  } catch (const diffq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("below the cost of the smallest"), std::string::npos) << e.what();
  }
  // A cost that only the smallest configuration meets, and a search allowed
  // fewer rounds than the walk there needs: it stops with an error instead
  // of looping (moves never revisit a configuration).
  options.budget = bitops(toy.layers, min_config(toy.layers));
  options.max_iterations = 20;
  int64_t calls = 0;
  EXPECT_THROW(search(
                   toy.layers, [&](const BitConfig&, int64_t) { return ++calls, 0.5; },
                   [&](const BitConfig& c) {
                     return c == min_config(toy.layers) ? options.budget : options.budget * 2;
                   },
                   options),
               diffq::Error);
  EXPECT_LE(calls, 20 * 16);
  options.max_iterations = 100000;
  // Errors outside [0, 1] and descending candidates are refused.
  options.budget = bitops(toy.layers, uniform_config(toy.layers, 4, 4));
  EXPECT_THROW(search(
                   toy.layers, [](const BitConfig&, int64_t) { return 2.0; },
                   [&](const BitConfig& c) { return bitops(toy.layers, c); }, options),
               diffq::Error);
  auto descending = toy.layers;
  descending[1].weight_candidates = {6, 5, 4, 3, 2};
  EXPECT_THROW(search(
                   descending, [](const BitConfig&, int64_t) { return 0.1; },
                   [&](const BitConfig& c) { return bitops(descending, c); }, options),
               diffq::Error);
}

// ---------------------------------------------------------------- scheduler

TEST(Schedule, RatioIsACosineFromHalfToOneFifth) {
  EXPECT_DOUBLE_EQ(shrink_ratio(0.0), 0.5);
  EXPECT_DOUBLE_EQ(shrink_ratio(1.0), 0.2);
  EXPECT_NEAR(shrink_ratio(0.5), 0.35, 1e-12);
  EXPECT_NEAR(shrink_ratio(0.25), 0.2 + 0.15 * (1 + std::cos(M_PI / 4)), 1e-12);
}

TEST(Schedule, DueStepsFollowTheWarmUpAndBothPeriods) {
  const auto plan = SchedulePlan::for_budget(100, 4);  // warm-up 4, early every 8, late every 60
  EXPECT_EQ(plan.warmup_steps, 4);
  EXPECT_EQ(plan.early_period, 8);
  EXPECT_EQ(plan.late_period, 60);
  std::vector<int64_t> due;
  for (int64_t s = 0; s < 100; ++s)
    if (plan.due(s)) due.push_back(s);
  // 4, 12, ..., 68 before 72 % of the run; then 72 (the switch).
  EXPECT_EQ(due, (std::vector<int64_t>{4, 12, 20, 28, 36, 44, 52, 60, 68, 72}));
  EXPECT_THROW(SchedulePlan::for_budget(0, 4), diffq::Error);
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
  // A lower ratio restores the full sets of the others; floor(0.2 · 5) = 1.
  c = schedule_candidates(full, turbulence, 0.2, floor);
  EXPECT_EQ(c[2], (std::vector<int>{4, 5}));
  EXPECT_EQ(c[1], full[1]);
  // A smallest candidate above the floor is kept (at most one level goes).
  const std::vector<int> low_floor{2, 2, 2, 2, 2};
  c = schedule_candidates(full, turbulence, 0.5, low_floor);
  EXPECT_EQ(c[2], full[2]);
  // A layer with a single candidate keeps it.
  c = schedule_candidates({{2}}, {1.0}, 1.0, {2});
  EXPECT_EQ(c[0], (std::vector<int>{2}));
  EXPECT_THROW(schedule_candidates(full, {0.1}, 0.5, floor), diffq::Error);
  EXPECT_THROW(schedule_candidates(full, turbulence, 1.5, floor), diffq::Error);
}

}  // namespace
