// Save, load and restore times, and sizes (true, file, entropy-coded), for
// the 16 × Linear(1024, 1024) model (DiffQ, group size 16, mixed bit-widths)
// and for a small CNN trained briefly with DiffQ on Fashion-MNIST.
//
//   bench_model_file [--json FILE] [--threads T] [--data DIR]
#include <diffq/data/fashion_mnist.h>
#include <diffq/diffq.h>
#include "bench_models.h"
#include <sys/stat.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

namespace {

double seconds(const std::function<void()>& fn, int repeats = 5) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

uint64_t file_size(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
}

using Cnn = diffq_bench::SpecCnn;

// Measures one model; `fresh` builds an untrained model of the same architecture.
nlohmann::json measure(const std::string& name, torch::nn::Module& model, diffq::DiffQuantizer& q,
                       const std::function<std::shared_ptr<torch::nn::Module>()>& fresh) {
  nlohmann::json row = {{"model", name}};
  diffq::QuantizedState state;
  row["build_state_s"] = seconds([&] { state = q.get_quantized_state(); }, 3);
  const double true_bytes = q.true_model_size() * 1048576.0;
  row["true_bytes"] = true_bytes;
  row["fp32_bytes"] = q.float_model_size() * 1048576.0;
  row["mean_bits"] = q.mean_bits();
  const std::string path = "/tmp/diffq_bench_model.dq";
  for (auto coding : {diffq::EntropyCoding::kNone, diffq::EntropyCoding::kRans,
                      diffq::EntropyCoding::kZstd, diffq::EntropyCoding::kAuto}) {
    const std::string key = diffq::entropy_coding_name(coding);
    const auto options = diffq::SaveOptions().entropy_coding(coding);
    row["save_s_" + key] = seconds([&] { diffq::save(state, path, options); }, 3);
    const uint64_t bytes = file_size(path);
    row["file_bytes_" + key] = bytes;
    row["file_over_true_" + key] = static_cast<double>(bytes) / true_bytes;
    row["load_s_" + key] = seconds([&] { diffq::load(path); });
    auto target = fresh();
    row["restore_s_" + key] = seconds([&] { diffq::restore_file(*target, path); });
  }
  row["overhead_bytes_none"] = static_cast<double>(row["file_bytes_none"].get<uint64_t>()) - true_bytes;
  {
    auto target = fresh();
    diffq::save(state, path);
    row["restore_from_state_s"] = seconds([&] { diffq::restore(*target, state); });
  }
  std::remove(path.c_str());
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path = "bench_model_file.json";
  std::string data_dir = diffq::data::kFashionMnistDir;
  int threads = 1;
  CLI::App app{"bench_model_file: model-file sizes, save, load and restore times"};
  app.add_option("--json", json_path, "JSON output")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--data", data_dir, "Fashion-MNIST directory")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  nlohmann::json report = {{"threads", threads}, {"rows", nlohmann::json::array()},
                           {"reference_restore_s", 0.33}};

  // 16 × Linear(1024, 1024): bell-shaped weights, bits spread around 5.
  auto make_mlp = [] { return diffq_bench::make_linear_stack(/*relu=*/false); };
  auto mlp = make_mlp();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : mlp->parameters()) p.normal_(0, 0.02);
  }
  {
    diffq::DiffQuantizer q(mlp, diffq::DiffQOptions().group_size(16));
    {
      torch::NoGradGuard no_grad;
      for (auto& l : q.parameters()) l.normal_(-1.0, 1.0);
    }
    report["rows"].push_back(measure("16xLinear(1024,1024)", *mlp, q, [&] { return make_mlp().ptr(); }));
  }

  // A small CNN trained 1 epoch on 6000 Fashion-MNIST images with DiffQ.
  try {
    auto train = diffq::data::load_fashion_mnist(data_dir, "train", 6000);
    Cnn cnn;
    diffq::DiffQuantizer q(cnn, diffq::DiffQOptions().group_size(8));
    torch::optim::Adam optimizer(cnn->parameters(), torch::optim::AdamOptions(1e-3));
    q.add_to_optimizer(optimizer, 2e-2);
    for (int64_t i = 0; i + 64 <= 6000; i += 64) {
      optimizer.zero_grad();
      auto step = q.training_step();
      auto loss = torch::cross_entropy_loss(cnn->forward(train.images.slice(0, i, i + 64)),
                                            train.labels.slice(0, i, i + 64)) +
                  5.0 * q.model_size();
      loss.backward();
      step.finish();
      optimizer.step();
    }
    report["rows"].push_back(measure("trained CNN (Fashion-MNIST)", *cnn, q, [] { return Cnn().ptr(); }));
  } catch (const diffq::Error& e) {
    std::fprintf(stderr, "skipping the trained CNN: %s\n", e.what());
  }

  std::printf("%-28s %6s %10s %10s %8s %10s %10s %8s %9s %9s %9s\n", "model", "bits", "true KiB",
              "file KiB", "file/true", "rANS KiB", "zstd KiB", "rANS/tr", "save ms", "load ms",
              "restore ms");
  for (const auto& row : report["rows"]) {
    std::printf("%-28s %6.2f %10.1f %10.1f %8.4f %10.1f %10.1f %8.4f %9.1f %9.1f %9.1f\n",
                row["model"].get<std::string>().c_str(), row["mean_bits"].get<double>(),
                row["true_bytes"].get<double>() / 1024, row["file_bytes_none"].get<uint64_t>() / 1024.0,
                row["file_over_true_none"].get<double>(), row["file_bytes_rans"].get<uint64_t>() / 1024.0,
                row["file_bytes_zstd"].get<uint64_t>() / 1024.0, row["file_over_true_rans"].get<double>(),
                row["save_s_none"].get<double>() * 1e3, row["load_s_none"].get<double>() * 1e3,
                row["restore_s_none"].get<double>() * 1e3);
  }
  const double restore = report["rows"][0]["restore_s_none"].get<double>();
  std::printf("restore of the 16.8 M model from its file: %.1f ms, %.1fx faster than the reference's 330 ms\n",
              restore * 1e3, 0.33 / restore);
  report["restore_speedup_vs_reference"] = 0.33 / restore;
  std::ofstream(json_path) << report.dump(2) << "\n";
  std::printf("written %s\n", json_path.c_str());
  return 0;
}
