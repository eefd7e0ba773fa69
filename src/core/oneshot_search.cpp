// The greedy search of one-shot mixed precision (pure logic).
#include "diffq/oneshot/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

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
  for (const auto& b : c.layers) {
    key.push_back(b.weight);
    key.push_back(b.activation);
  }
  return key;
}

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
    check_options();
    const bool bitops = options_.cost == CostKind::kBitOps;
    int lowest = 99, highest = 0;
    for (const auto& l : layers_) {
      if (l.fixed) continue;
      lowest = std::min({lowest, l.weight_candidates.front()});
      highest = std::max({highest, l.weight_candidates.back()});
    }
    result_.config = clamped_config(layers_, options_.start_bits, options_.start_bits);
    result_.cost = measure(result_.config);
    visited_.insert(config_key(result_.config));
    const double budget = options_.budget;
    if (bitops) {
      // b*: the uniform bit-width whose cost is nearest the budget.
      int best_bits = lowest;
      double best_gap = std::numeric_limits<double>::infinity();
      for (int b = lowest; b <= highest; ++b) {
        const double gap = std::abs(measure(clamped_config(layers_, b, b)) - budget);
        if (gap < best_gap) best_gap = gap, best_bits = b;
      }
      const double weight_target =
          options_.phase_one_margin * measure(clamped_config(layers_, best_bits, options_.start_bits));
      descend(Tensors::kWeights, std::min(weight_target, budget), /*must_reach=*/false);
      descend(Tensors::kActivations, budget, false);
      descend(Tensors::kBoth, budget, true);
    } else {
      descend(Tensors::kWeights, budget, true);
    }
    if (options_.fill) fill(options_.cost == CostKind::kBitOps ? Tensors::kBoth : Tensors::kWeights);
    return result_;
  }

 private:
  void check_options() {
    DIFFQ_CHECK(!layers_.empty(), "the search needs layers");
    DIFFQ_CHECK(std::isfinite(options_.budget) && options_.budget > 0, "the budget must be a positive number, got ",
                options_.budget);
    DIFFQ_CHECK(options_.error_weight > 0 && std::isfinite(options_.error_weight),
                "the error weight must be positive, got ", options_.error_weight);
    DIFFQ_CHECK(options_.phase_one_margin > 0 && options_.phase_one_margin <= 1,
                "the phase-one margin must be in (0, 1], got ", options_.phase_one_margin);
    DIFFQ_CHECK(options_.max_iterations > 0, "max_iterations must be positive");
    for (const auto& l : layers_) {
      if (l.fixed) continue;
      for (const auto* c : {&l.weight_candidates, &l.activation_candidates}) {
        DIFFQ_CHECK(!c->empty(), "layer '", l.name, "' has no candidates");
        for (size_t i = 1; i < c->size(); ++i)
          DIFFQ_CHECK((*c)[i] > (*c)[i - 1], "layer '", l.name, "': candidates must be strictly ascending");
      }
    }
    const double smallest = measure(min_config(layers_));
    DIFFQ_CHECK(smallest <= options_.budget, "the budget ", options_.budget, " is below the cost of the smallest "
                "configuration (", smallest, ")");
  }

  double measure(const BitConfig& c) {
    const double v = cost_of_(c);
    DIFFQ_CHECK(std::isfinite(v) && v >= 0, "the cost of a configuration is not a non-negative number: ", v);
    return v;
  }

  // Moves of one bit-width step (down, or up) of every searchable layer.
  std::vector<Candidate> moves(Tensors tensors, bool up) {
    std::vector<Candidate> out;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const auto& l = layers_[i];
      if (l.fixed) continue;
      for (bool weight : {true, false}) {
        if (weight && tensors == Tensors::kActivations) continue;
        if (!weight && (tensors == Tensors::kWeights || !has_activations(l))) continue;
        const auto& c = weight ? l.weight_candidates : l.activation_candidates;
        const int now = weight ? result_.config.layers[i].weight : result_.config.layers[i].activation;
        const auto pos = static_cast<size_t>(std::find(c.begin(), c.end(), now) - c.begin());
        for (int direction : {-1, +1}) {
          if ((direction > 0) != up) continue;
          if ((direction < 0 && pos == 0) || (direction > 0 && pos + 1 >= c.size())) continue;
          Candidate m;
          m.config = result_.config;
          int& bits = weight ? m.config.layers[i].weight : m.config.layers[i].activation;
          bits = c[pos + direction];
          if (visited_.count(config_key(m.config))) continue;
          m.move.layer = i;
          m.move.weight = weight;
          m.move.from = now;
          m.move.to = bits;
          out.push_back(std::move(m));
        }
      }
    }
    return out;
  }

  // Scores `candidates` on one round's batch; applies the best. False when empty.
  bool apply_best(std::vector<Candidate> candidates) {
    if (candidates.empty()) return false;
    DIFFQ_CHECK(iteration_ < options_.max_iterations, "the search made no progress in ", options_.max_iterations,
                " rounds");
    double err_max = 0, cost_max = 0;
    for (auto& c : candidates) {
      c.move.iteration = iteration_;
      c.move.error = evaluate_(c.config, iteration_);
      ++result_.evaluations;
      DIFFQ_CHECK(std::isfinite(c.move.error) && c.move.error >= 0 && c.move.error <= 1,
                  "the evaluation returned an error outside [0, 1]: ", c.move.error);
      c.move.cost = measure(c.config);
      err_max = std::max(err_max, c.move.error);
      cost_max = std::max(cost_max, c.move.cost);
    }
    size_t best = 0;
    for (size_t k = 0; k < candidates.size(); ++k) {
      auto& m = candidates[k].move;
      m.score = options_.error_weight * (err_max > 0 ? m.error / err_max : 0.0) -
                (cost_max > 0 ? 1.0 - m.cost / cost_max : 0.0);
      if (m.score < candidates[best].move.score) best = k;
    }
    ++iteration_;
    result_.config = candidates[best].config;
    result_.cost = candidates[best].move.cost;
    result_.moves.push_back(candidates[best].move);
    visited_.insert(config_key(result_.config));
    return true;
  }

  void descend(Tensors tensors, double target, bool must_reach) {
    while (result_.cost > target) {
      if (!apply_best(moves(tensors, /*up=*/false))) {
        DIFFQ_CHECK(!must_reach, "the search cannot get below ", target, ": no move left from ",
                    describe(result_.config), " (cost ", result_.cost, ")");
        return;
      }
    }
  }

  void fill(Tensors tensors) {
    for (;;) {
      auto up = moves(tensors, /*up=*/true);
      std::vector<Candidate> within;
      for (auto& m : up)
        if (measure(m.config) <= options_.budget) within.push_back(std::move(m));
      if (!apply_best(std::move(within))) return;
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
