// The greedy search of one-shot mixed precision (pure logic).
#include "diffq/oneshot/search.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <utility>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

const char* search_phase_name(SearchPhase phase) {
  switch (phase) {
    case SearchPhase::kWeights: return "weights";
    case SearchPhase::kActivations: return "activations";
    case SearchPhase::kWeightsAndActivations: return "weights and activations";
    case SearchPhase::kFill: return "fill";
  }
  return "?";
}

namespace {

bool has_activations(const LayerInfo& l) {
  return !(l.activation_candidates.size() == 1 && l.activation_candidates[0] == 0);
}

// The candidate of `candidates` nearest `bits` (ties: the lower).
int nearest(const std::vector<int>& candidates, int bits) {
  int best = candidates.front();
  for (int c : candidates)
    if (std::abs(c - bits) < std::abs(best - bits)) best = c;
  return best;
}

// Fixed layers at their bits, the others at (w, a) clamped into their candidates.
BitConfig clamped_config(const Layers& layers, int w, int a) {
  BitConfig c;
  for (const auto& l : layers) {
    if (l.fixed) {
      c.layers.push_back(l.fixed_bits);
    } else {
      c.layers.push_back({nearest(l.weight_candidates, w), has_activations(l) ? nearest(l.activation_candidates, a) : 0});
    }
  }
  return c;
}

std::vector<int> config_key(const BitConfig& c) {
  std::vector<int> key;
  key.reserve(2 * c.layers.size());
  for (const auto& b : c.layers) {
    key.push_back(b.weight);
    key.push_back(b.activation);
  }
  return key;
}

// A move and the configuration it leads to.
struct Candidate {
  SearchMove move;
  BitConfig config;
};

enum class Tensors { kWeights, kActivations, kBoth };

class Searcher {
 public:
  Searcher(const Layers& layers, const EvaluateConfig& evaluate, const CostOfConfig& cost_of,
           const SearchOptions& options)
      : layers_(layers), evaluate_(evaluate), cost_of_(cost_of), options_(options) {}

  SearchResult run() {
    check_layers_and_options();
    const double budget = options_.budget;
    const int nearest_bits = nearest_uniform_bits();
    result_.start_bits = std::max(options_.start_bits, nearest_bits + 1);
    result_.config = clamped_config(layers_, result_.start_bits, result_.start_bits);
    result_.cost = measure(result_.config);
    visited_.insert(config_key(result_.config));
    if (options_.cost == CostKind::kBitOps) {
      const double weight_target =
          options_.phase_one_margin * measure(clamped_config(layers_, nearest_bits, result_.start_bits));
      // Phase 1 stops at its own target or at the budget, whichever comes first.
      descend(SearchPhase::kWeights, Tensors::kWeights, std::max(weight_target, budget));
      if (!descend(SearchPhase::kActivations, Tensors::kActivations, budget) &&
          !descend(SearchPhase::kWeightsAndActivations, Tensors::kBoth, budget))
        stuck(budget);
    } else {
      if (!descend(SearchPhase::kWeights, Tensors::kWeights, budget)) stuck(budget);
    }
    if (options_.fill) fill(options_.cost == CostKind::kBitOps ? Tensors::kBoth : Tensors::kWeights);
    if (options_.compare_rounds > 0) compare_with_uniform();
    return result_;
  }

 private:
  void check_layers_and_options() {
    DIFFQ_CHECK(!layers_.empty(), "the search needs layers");
    DIFFQ_CHECK(std::isfinite(options_.budget) && options_.budget > 0, "the budget must be a positive number, got ",
                options_.budget);
    DIFFQ_CHECK(options_.error_weight > 0 && std::isfinite(options_.error_weight),
                "the error weight must be positive, got ", options_.error_weight);
    DIFFQ_CHECK(options_.phase_one_margin > 0 && options_.phase_one_margin <= 1,
                "the phase-one margin must be in (0, 1], got ", options_.phase_one_margin);
    DIFFQ_CHECK(options_.compare_rounds >= 0, "compare_rounds must be 0 or more, got ", options_.compare_rounds);
    DIFFQ_CHECK(options_.max_iterations > 0, "max_iterations must be positive, got ", options_.max_iterations);
    bool searchable = false;
    for (const auto& l : layers_) {
      if (l.fixed) continue;
      searchable = true;
      for (const auto* c : {&l.weight_candidates, &l.activation_candidates}) {
        const char* kind = c == &l.weight_candidates ? "weight" : "activation";
        DIFFQ_CHECK(!c->empty(), "layer '", l.name, "' has no ", kind, " candidates");
        for (size_t i = 1; i < c->size(); ++i)
          DIFFQ_CHECK((*c)[i] > (*c)[i - 1], "layer '", l.name, "': ", kind,
                      " candidates must be strictly ascending, got ", (*c)[i - 1], " before ", (*c)[i]);
      }
    }
    DIFFQ_CHECK(searchable, "the search needs at least one searchable (not fixed) layer");
    // The cheapest configuration the search can reach: size budgets move
    // weights only, so activations stay at the start.
    BitConfig smallest = min_config(layers_);
    if (options_.cost == CostKind::kSizeBits) {
      const auto start = clamped_config(layers_, options_.start_bits, options_.start_bits);
      for (size_t i = 0; i < layers_.size(); ++i) smallest.layers[i].activation = start.layers[i].activation;
    }
    const double least = measure(smallest);
    DIFFQ_CHECK(least <= options_.budget, "the budget ", options_.budget, " is below the cost of the smallest "
                "reachable configuration, ", least, " (", cost_kind_name(options_.cost), ")");
  }

  // The lowest and highest weight candidates over the searchable layers.
  std::pair<int, int> weight_bit_range() const {
    int lowest = std::numeric_limits<int>::max(), highest = std::numeric_limits<int>::min();
    for (const auto& l : layers_) {
      if (l.fixed) continue;
      lowest = std::min(lowest, l.weight_candidates.front());
      highest = std::max(highest, l.weight_candidates.back());
    }
    return {lowest, highest};
  }

  // b*: the uniform bit-width b whose (W b, A b) configuration costs nearest
  // the budget (ties: the lower b), b over the searchable weight candidates' range.
  int nearest_uniform_bits() {
    const auto [lowest, highest] = weight_bit_range();
    int best_bits = lowest;
    double best_gap = std::numeric_limits<double>::infinity();
    for (int b = lowest; b <= highest; ++b) {
      const double gap = std::abs(measure(clamped_config(layers_, b, b)) - options_.budget);
      if (gap < best_gap) best_gap = gap, best_bits = b;
    }
    return best_bits;
  }

  // The callback's error of `config` on round `iteration`, counted and checked.
  double evaluate(const BitConfig& config, int64_t iteration) {
    const double e = evaluate_(config, iteration);
    ++result_.evaluations;
    DIFFQ_CHECK(std::isfinite(e) && e >= 0 && e <= 1, "the evaluation of ", describe(config),
                " returned an error outside [0, 1]: ", e);
    return e;
  }

  double measure(const BitConfig& c) {
    const double v = cost_of_(c);
    DIFFQ_CHECK(std::isfinite(v) && v >= 0, "the cost of ", describe(c), " is not a non-negative number: ", v);
    return v;
  }

  // One step (down and/or up) of every searchable layer's `tensors`, in
  // tie-break order: layer, weights before activations, down before up.
  // Moves back to a visited configuration are left out.
  std::vector<Candidate> moves(Tensors tensors, bool down, bool up) {
    std::vector<Candidate> out;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const auto& l = layers_[i];
      if (l.fixed) continue;
      for (bool weight : {true, false}) {
        if (weight && tensors == Tensors::kActivations) continue;
        if (!weight && (tensors == Tensors::kWeights || !has_activations(l))) continue;
        const auto& c = weight ? l.weight_candidates : l.activation_candidates;
        const int now = weight ? result_.config.layers[i].weight : result_.config.layers[i].activation;
        const auto at = std::find(c.begin(), c.end(), now);
        DIFFQ_CHECK(at != c.end(), "layer '", l.name, "' is at ", now, weight ? " weight" : " activation",
                    " bits, not one of its candidates");
        const auto pos = static_cast<size_t>(at - c.begin());
        for (int direction : {-1, +1}) {
          if ((direction < 0 && (!down || pos == 0)) || (direction > 0 && (!up || pos + 1 >= c.size()))) continue;
          Candidate m;
          m.config = result_.config;
          int& bits = weight ? m.config.layers[i].weight : m.config.layers[i].activation;
          bits = c[pos + direction];
          if (visited_.count(config_key(m.config))) continue;
          m.move.layer = i;
          m.move.weight = weight;
          m.move.from = now;
          m.move.to = bits;
          m.move.cost = measure(m.config);
          out.push_back(std::move(m));
        }
      }
    }
    return out;
  }

  // Scores `candidates` (not empty) on one round's batch and applies the best.
  void apply_best(std::vector<Candidate> candidates, SearchPhase phase) {
    DIFFQ_CHECK(iteration_ < options_.max_iterations, "the search did not finish in ",
                options_.max_iterations, " rounds (max_iterations); it is at ", describe(result_.config), ", cost ",
                result_.cost);
    double err_max = 0, cost_max = 0;
    for (auto& c : candidates) {
      c.move.iteration = iteration_;
      c.move.phase = phase;
      c.move.error = evaluate(c.config, iteration_);
      err_max = std::max(err_max, c.move.error);
      cost_max = std::max(cost_max, c.move.cost);
    }
    size_t best = 0;
    for (size_t k = 0; k < candidates.size(); ++k) {
      auto& m = candidates[k].move;
      const double error_term = err_max > 0 ? m.error / err_max : 0.0;
      const double saving_term = cost_max > 0 ? 1.0 - m.cost / cost_max : 0.0;
      m.score = options_.error_weight * error_term - saving_term;
      if (m.score < candidates[best].move.score) best = k;  // strict: ties keep the earlier
    }
    ++iteration_;
    result_.config = std::move(candidates[best].config);
    result_.cost = candidates[best].move.cost;
    result_.moves.push_back(candidates[best].move);
    visited_.insert(config_key(result_.config));
  }

  // Rounds of `tensors` until the cost is at most `target`. False when the
  // target is not met and no move lowers the cost any more.
  bool descend(SearchPhase phase, Tensors tensors, double target) {
    while (result_.cost > target) {
      auto candidates = moves(tensors, /*down=*/true, options_.up_moves);
      const bool can_lower = std::any_of(candidates.begin(), candidates.end(),
                                         [&](const Candidate& c) { return c.move.cost < result_.cost; });
      if (!can_lower) return false;
      apply_best(std::move(candidates), phase);
    }
    return true;
  }

  [[noreturn]] void stuck(double budget) {
    throw Error(detail::concat("the search cannot meet the budget ", budget, ": no legal move (one not revisiting a "
                               "configuration) lowers the cost from ", describe(result_.config), " (cost ",
                               result_.cost, ")"));
  }

  void fill(Tensors tensors) {
    for (;;) {
      auto up = moves(tensors, /*down=*/false, /*up=*/true);
      std::vector<Candidate> within;
      for (auto& m : up)
        if (m.move.cost <= options_.budget) within.push_back(std::move(m));
      if (within.empty()) return;
      apply_best(std::move(within), SearchPhase::kFill);
    }
  }

  // The mean error of `config` over rounds [first, first + compare_rounds).
  double mean_error(const BitConfig& config, int64_t first) {
    double sum = 0;
    for (int64_t r = 0; r < options_.compare_rounds; ++r) sum += evaluate(config, first + r);
    return sum / static_cast<double>(options_.compare_rounds);
  }

  void compare_with_uniform() {
    const double lower = 0.9 * options_.budget;
    const auto [lowest, highest] = weight_bit_range();
    // The qualifying uniform configurations, most expensive first, without
    // the searched one itself.
    std::vector<std::pair<int, BitConfig>> uniform;
    std::set<std::vector<int>> seen{config_key(result_.config)};
    for (int b = highest; b >= lowest; --b) {
      auto c = clamped_config(layers_, b, b);
      // Size budgets move weights only: activations stay where the search keeps them.
      if (options_.cost == CostKind::kSizeBits)
        for (size_t i = 0; i < layers_.size(); ++i) c.layers[i].activation = result_.config.layers[i].activation;
      const double v = measure(c);
      if (v < lower || v > options_.budget || !seen.insert(config_key(c)).second) continue;
      uniform.emplace_back(b, std::move(c));
    }
    if (uniform.empty()) return;
    const int64_t first = iteration_;
    iteration_ += options_.compare_rounds;
    result_.searched_error = mean_error(result_.config, first);
    const BitConfig* best = nullptr;
    for (const auto& [bits, config] : uniform) {
      const double e = mean_error(config, first);
      if (!best || e < result_.uniform_error) {
        best = &config;
        result_.uniform_bits = bits;
        result_.uniform_error = e;
      }
    }
    if (result_.uniform_error < result_.searched_error) {
      result_.config = *best;
      result_.cost = measure(result_.config);
      result_.uniform_kept = true;
    }
  }

  const Layers& layers_;
  const EvaluateConfig& evaluate_;
  const CostOfConfig& cost_of_;
  const SearchOptions& options_;
  SearchResult result_;
  std::set<std::vector<int>> visited_;
  int64_t iteration_ = 0;
};

}  // namespace

SearchResult search(const Layers& layers, const EvaluateConfig& evaluate, const CostOfConfig& cost_of,
                    const SearchOptions& options) {
  DIFFQ_CHECK(evaluate && cost_of, "the search needs an evaluation and a cost function");
  return Searcher(layers, evaluate, cost_of, options).run();
}

}  // namespace oneshot
}  // namespace diffq
