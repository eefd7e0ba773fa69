// `diffq search` (see include/diffq/train/oneshot_search.h).
#include "diffq/train/oneshot_search.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/number_text.h"
#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/oneshot/search_model.h"
#include "diffq/regular_file.h"
#include "diffq/train/experiment.h"
#include "diffq/train/loop.h"
#include "diffq/train/tasks.h"
#include "run_model.h"
#include "run_record.h"

namespace diffq {
namespace train {

namespace {

namespace fs = std::filesystem;

// "WbAa" -> (b, a); false when `text` is not of that form.
bool parse_uniform(const std::string& text, int& w, int& a) {
  static const std::regex pattern("W([0-9]{1,2})A([0-9]{1,2})");
  std::smatch m;
  if (!std::regex_match(text, m, pattern)) return false;
  w = std::stoi(m[1]);
  a = std::stoi(m[2]);
  return true;
}

void write_text(const fs::path& path, const std::string& text) {
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    DIFFQ_CHECK(out.good(), "cannot write '", tmp, "'");
  }
  fs::rename(tmp, path);
}

class Searcher {
 public:
  explicit Searcher(const SearchRunOptions& o) : options_(o) {
    DIFFQ_CHECK(!o.run_dir.empty(), "diffq search needs a run directory");
    DIFFQ_CHECK(o.batch_size >= 2 && o.held_out_batches >= 1 && o.calibration_batches >= 1 && o.curve >= 0 &&
                    o.curve <= 1000,
                "bad search options: batch size ", o.batch_size, ", held-out batches ", o.held_out_batches,
                ", calibration batches ", o.calibration_batches, ", curve ", o.curve);
    const auto model_path = (fs::path(o.run_dir) / "model.diffq").string();
    coupled_path_ = (fs::path(o.run_dir) / kCoupledFile).string();
    require_regular_file(model_path, "the run's model file");
    DIFFQ_CHECK(fs::exists(coupled_path_), "'", o.run_dir, "' has no ", kCoupledFile,
                ": not a finished one-shot run (train with --method oneshot first)");
    config_ = recorded_config(load(model_path));
    DIFFQ_CHECK(config_.method == "oneshot", "'", o.run_dir, "' is a ", config_.method,
                " run; diffq search needs a one-shot run (--method oneshot)");
    config_.init.clear();  // the coupled network holds the weights
    config_.data.fashion_dir = o.data.fashion_dir;
    config_.data.text_path = o.data.text_path;
    out_dir_ = o.out_dir.empty() ? (fs::path(o.run_dir) / "search").string() : o.out_dir;
  }

  std::vector<SearchPoint> run() {
    torch::set_num_threads(options_.threads);
    DataOptions all = config_.data;
    all.train_limit = 0;
    auto model_config = config_.model;
    data_ = load_task_data(model_config, all);
    DIFFQ_CHECK(!data_.lm, "diffq search supports the image task");
    model_ = std::make_unique<RunModel>(build_run_model(config_));
    DIFFQ_CHECK(model_->zoo != nullptr, "diffq search needs a built-in model");
    trainer_ = std::make_unique<Trainer>(
        model_->handle, TrainerOptions().method(config_.method).method_options(config_.method_options).seed(config_.seed));
    const auto extra = trainer_->load_checkpoint(coupled_path_);
    quantizer_ = dynamic_cast<oneshot::OneShotQuantizer*>(trainer_->quantizer());
    DIFFQ_CHECK(quantizer_ != nullptr, "the run's quantizer is not the one-shot quantizer");
    if (extra.contains("oneshot_candidates")) {
      const auto& c = extra["oneshot_candidates"];
      DIFFQ_CHECK(c.is_array() && c.size() == quantizer_->layers().size(), "the coupled network's candidates do not fit");
      for (size_t i = 0; i < c.size(); ++i) quantizer_->set_weight_candidates(i, c[i].get<std::vector<int>>());
    }
    prepare_batches();
    fs::create_directories(out_dir_);

    std::vector<SearchPoint> points;
    const auto layers = full_layers();
    if (options_.uniform) {
      // Read-outs use every candidate the network was trained with (the
      // scheduler's last state, which the searches keep, may have dropped a
      // layer's 2 bits).
      scheduled_ = current_candidates();
      set_candidates(full_candidates());
      for (int b = 2; b <= 6; ++b) points.push_back(read_out("W" + std::to_string(b) + "A" + std::to_string(b),
                                                             oneshot::uniform_config(layers, b, b)));
      set_candidates(scheduled_);
    }
    for (const auto& text : options_.bitops_budgets)
      points.push_back(search_point(oneshot::CostKind::kBitOps, budget_of(text, oneshot::CostKind::kBitOps), text));
    for (const auto& text : options_.mib_budgets)
      points.push_back(search_point(oneshot::CostKind::kSizeBits, budget_of(text, oneshot::CostKind::kSizeBits), text));
    if (options_.curve > 0) {
      const double lo = oneshot::bitops(layers, oneshot::uniform_config(layers, 2, 2));
      const double hi = oneshot::bitops(layers, oneshot::uniform_config(layers, 6, 6));
      for (int k = 0; k < options_.curve; ++k) {
        const double budget = options_.curve == 1 ? hi : lo + (hi - lo) * k / (options_.curve - 1);
        points.push_back(search_point(oneshot::CostKind::kBitOps, budget, format_number(budget)));
      }
    }
    write_outputs(points);
    return points;
  }

 private:
  // Held-out batches (beyond the run's training examples when there are
  // any, else the training set's first), calibration batches (training set).
  void prepare_batches() {
    const int64_t total = data_.train_x.size(0);
    const int64_t used = config_.data.train_limit > 0 ? std::min(config_.data.train_limit, total) : total;
    const int64_t n = options_.batch_size;
    const bool disjoint = total - used >= n * options_.held_out_batches;
    held_out_from_training_ = !disjoint;
    const int64_t start = disjoint ? used : 0;
    for (int64_t b = 0; b < options_.held_out_batches; ++b) {
      const int64_t b0 = start + b * n, b1 = std::min(total, b0 + n);
      DIFFQ_CHECK(b1 - b0 >= 2, "not enough images for the held-out batches");
      held_out_.push_back({data_.train_x.slice(0, b0, b1), data_.train_y.slice(0, b0, b1)});
    }
    for (int64_t b = 0; b < options_.calibration_batches && b * n < used; ++b)
      calibration_.push_back(data_.train_x.slice(0, b * n, std::min(used, (b + 1) * n)));
    // One forward records the layers' input sizes (their MACs).
    torch::NoGradGuard no_grad;
    model_->zoo->eval();
    model_->zoo->forward(held_out_[0].inputs.slice(0, 0, 2));
  }

  std::vector<std::vector<int>> current_candidates() const {
    std::vector<std::vector<int>> c;
    for (size_t i = 0; i < quantizer_->layers().size(); ++i) c.push_back(quantizer_->weight_candidates(i));
    return c;
  }
  std::vector<std::vector<int>> full_candidates() const {
    std::vector<std::vector<int>> c;
    for (size_t i = 0; i < quantizer_->layers().size(); ++i) c.push_back(quantizer_->full_weight_candidates(i));
    return c;
  }
  void set_candidates(const std::vector<std::vector<int>>& c) {
    for (size_t i = 0; i < c.size(); ++i) quantizer_->set_weight_candidates(i, c[i]);
  }
  // The layers with every trained weight candidate (for costs of uniform configurations).
  oneshot::Layers full_layers() const {
    auto layers = quantizer_->layers();
    for (size_t i = 0; i < layers.size(); ++i)
      if (!layers[i].fixed) layers[i].weight_candidates = quantizer_->full_weight_candidates(i);
    return layers;
  }

  double budget_of(const std::string& text, oneshot::CostKind kind) {
    const auto layers = full_layers();
    int w = 0, a = 0;
    if (parse_uniform(text, w, a)) return oneshot::cost(layers, oneshot::uniform_config(layers, w, a), kind);
    const double value = parse_number(text, kind == oneshot::CostKind::kBitOps ? "--budget-bitops" : "--budget-mib");
    DIFFQ_CHECK(std::isfinite(value) && value > 0, "a budget must be a positive number or WbAa, not '", text, "'");
    return kind == oneshot::CostKind::kBitOps ? value : value * 8.0 * 1048576.0;
  }

  SearchPoint search_point(oneshot::CostKind kind, double budget, const std::string& text) {
    const auto t0 = std::chrono::steady_clock::now();
    oneshot::SearchOptions o = options_.search;
    o.cost = kind;
    o.budget = budget;
    auto forward = [this](const torch::Tensor& x) { return model_->zoo->forward(x); };
    const auto found = oneshot::search_model(*model_->zoo, *quantizer_, forward, held_out_, o, options_.metric);
    auto point = evaluate((kind == oneshot::CostKind::kBitOps ? "bitops=" : "mib=") + text, found.config, t0);
    point.budget = kind == oneshot::CostKind::kBitOps ? budget : budget / (8.0 * 1048576.0);
    point.evaluations = found.evaluations;
    point.searched_error = found.searched_error;
    point.uniform_bits = found.uniform_bits;
    point.uniform_error = found.uniform_error;
    point.uniform_kept = found.uniform_kept;
    return point;
  }

  SearchPoint read_out(const std::string& label, const oneshot::BitConfig& config) {
    return evaluate(label, config, std::chrono::steady_clock::now());
  }

  SearchPoint evaluate(const std::string& label, const oneshot::BitConfig& config,
                       std::chrono::steady_clock::time_point t0) {
    const auto before = quantizer_->config();
    quantizer_->set_config(config);
    auto forward = [this](const torch::Tensor& x) { return model_->zoo->forward(x); };
    oneshot::recalibrate_selected_batchnorm(*model_->zoo, *quantizer_, forward, calibration_);
    SearchPoint p;
    p.label = label;
    p.config = config;
    const auto layers = quantizer_->layers();
    p.bitops = oneshot::bitops(layers, config);
    const double bits = oneshot::size_bits(layers, config);
    p.weight_mib = bits / (8.0 * 1048576.0);
    double weights = 0;
    for (const auto& l : layers) weights += double(l.weights);
    p.mean_weight_bits = bits / weights;
    {
      auto scope = quantizer_->quantized_evaluation();
      p.accuracy = evaluate_task(model_->handle, data_, "test")["accuracy"].get<double>();
    }
    std::string file = label;
    for (auto& c : file)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
    p.model_file = (fs::path(out_dir_) / (file + ".diffq")).string();
    p.config_file = (fs::path(out_dir_) / (file + ".json")).string();
    auto state = quantizer_->get_quantized_state();
    record_run(state, config_);
    save(state, p.model_file);
    write_text(p.config_file, oneshot::to_json(layers, config).dump(2) + "\n");
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    quantizer_->set_config(before);
    return p;
  }

  void write_outputs(const std::vector<SearchPoint>& points) {
    nlohmann::json all{{"run", options_.run_dir},
                       {"held_out", held_out_from_training_ ? "training images (the run used them all)"
                                                            : "training images the run did not use"},
                       {"held_out_batches", options_.held_out_batches},
                       {"batch_size", options_.batch_size},
                       {"calibration_batches", calibration_.size()},
                       {"metric", options_.metric == oneshot::HeldOutError::kSoft ? "soft" : "top1"},
                       {"error_weight", options_.search.error_weight},
                       {"up_moves", options_.search.up_moves},
                       {"compare_rounds", options_.search.compare_rounds},
                       {"points", nlohmann::json::array()}};
    std::string dat = "# label bitops_millions weight_mib accuracy\n";
    for (const auto& p : points) {
      all["points"].push_back(to_json(p));
      dat += p.label + " " + format_number(p.bitops / 1e6) + " " + format_number(p.weight_mib) + " " +
             format_number(p.accuracy) + "\n";
    }
    write_text(fs::path(out_dir_) / "points.json", all.dump(2) + "\n");
    write_text(fs::path(out_dir_) / "curve.dat", dat);
    // `gnuplot curve.gnuplot` in the output directory draws curve.svg: the
    // searched points as a line, the uniform read-outs as labelled points.
    write_text(fs::path(out_dir_) / "curve.gnuplot",
               "# Accuracy against BitOPs of `diffq search` (run: gnuplot curve.gnuplot).\n"
               "set terminal svg size 720,480 font \"sans,12\"\n"
               "set output \"curve.svg\"\n"
               "set grid\n"
               "set key bottom right\n"
               "set xlabel \"BitOPs per example (millions)\"\n"
               "set ylabel \"test accuracy (%), zero retraining\"\n"
               "plot \"< awk '$1 ~ /^(bitops|mib)=/' curve.dat | sort -g -k2\" using 2:4 with linespoints pt 7 "
               "title \"searched\", \\\n"
               "     \"< awk '$1 ~ /^W[0-9]+A[0-9]+$/' curve.dat | sort -g -k2\" using 2:4 with points pt 5 "
               "title \"uniform\", \\\n"
               "     \"< awk '$1 ~ /^W[0-9]+A[0-9]+$/' curve.dat\" using 2:4:1 with labels offset char 0,1 "
               "notitle\n");
  }

  SearchRunOptions options_;
  std::string coupled_path_, out_dir_;
  TrainConfig config_;
  TaskData data_;
  std::unique_ptr<RunModel> model_;
  std::unique_ptr<Trainer> trainer_;
  oneshot::OneShotQuantizer* quantizer_ = nullptr;
  std::vector<oneshot::LabeledBatch> held_out_;
  std::vector<torch::Tensor> calibration_;
  bool held_out_from_training_ = false;
  std::vector<std::vector<int>> scheduled_;
};

}  // namespace

nlohmann::json to_json(const SearchPoint& p) {
  return {{"label", p.label},
          {"budget", p.budget},
          {"bitops", p.bitops},
          {"weight_mib", p.weight_mib},
          {"mean_weight_bits", p.mean_weight_bits},
          {"accuracy", p.accuracy},
          {"evaluations", p.evaluations},
          {"searched_error", p.searched_error},
          {"uniform_bits", p.uniform_bits},
          {"uniform_error", p.uniform_error},
          {"uniform_kept", p.uniform_kept},
          {"seconds", p.seconds},
          {"config", oneshot::describe(p.config)},
          {"model_file", p.model_file},
          {"config_file", p.config_file}};
}

std::vector<SearchPoint> run_search(const SearchRunOptions& options) { return Searcher(options).run(); }

}  // namespace train
}  // namespace diffq
