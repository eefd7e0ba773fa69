// Training-step time and peak memory with and without a quantizer.
//
// Each configuration runs in a fresh process (this program re-executes
// itself with --child), so that peak memory (VmHWM) is measured per
// configuration. Ratios are taken within one run of this program.
//
//   bench_training [--json FILE] [--steps N] [--threads T] [--rounds R] [--allocator jemalloc|kept|system]
//                  [--grads released|zeroed]
#include <diffq/allocator.h>
#include <diffq/diffq.h>
#include <diffq/quant_noise.h>
#include "bench_models.h"
#include "../src/noise/noise_kernels.h"
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>
#include <c10/core/CPUAllocator.h>
#include <mutex>
#include <unordered_map>
#include <ctime>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using diffq_bench::SpecCnn;

long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// CPU seconds of every thread of this process (less disturbed than wall
// time by other load on the machine).
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Counts the bytes of every live CPU tensor allocation (delegating to
// LibTorch's allocator) and keeps their peak: the memory training needs,
// without the C library's heap placement (holes a freed block leaves behind
// stay resident and count in the peak RSS).
class CountingAllocator final : public c10::Allocator {
 public:
  // `inner` must give DataPtrs whose context is the data (LibTorch's CPU
  // allocator does), so that raw allocations (oneDNN's) work through this
  // one too.
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner), inner_free_(inner->raw_deleter()) {
    if (!inner_free_) throw std::runtime_error("the CPU allocator has no raw deleter");
    self_ = this;
  }
  c10::DataPtr allocate(size_t bytes) const override {
    auto inner = inner_->allocate(bytes);
    void* data = inner.get();
    if (inner.get_context() != data) throw std::runtime_error("the CPU allocator's context is not its data");
    const auto device = inner.device();
    inner.release_context();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[data] = bytes;
      live_ += int64_t(bytes);
      peak_ = std::max(peak_, live_);
    }
    return {data, data, &release, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  int64_t peak_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }

 private:
  static void release(void* data) {
    if (!data) return;
    {
      std::lock_guard<std::mutex> lock(self_->mutex_);
      auto it = self_->sizes_.find(data);
      if (it != self_->sizes_.end()) {
        self_->live_ -= int64_t(it->second);
        self_->sizes_.erase(it);
      }
    }
    self_->inner_free_(data);
  }
  static CountingAllocator* self_;
  c10::Allocator* inner_;
  c10::DeleterFnPtr inner_free_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<void*, size_t> sizes_;
  mutable int64_t live_ = 0;
  mutable int64_t peak_ = 0;
};
CountingAllocator* CountingAllocator::self_ = nullptr;

long current_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Runs one configuration and prints one JSON line.
int child(const std::string& model_name, const std::string& method, int steps, int threads,
          const std::string& allocator, const std::string& grads) {
  if (allocator == "kept") diffq::keep_freed_memory();
  static CountingAllocator counting(c10::GetCPUAllocator());
  c10::SetCPUAllocator(&counting, /*priority=*/100);
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  std::shared_ptr<torch::nn::Module> model;
  torch::Tensor x, y;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  if (model_name == "mlp16") {
    auto seq = diffq_bench::make_linear_stack(/*relu=*/true);
    model = seq.ptr();
    x = torch::randn({256, 1024});
    y = torch::randn({256, 1024});
    forward = [seq](const torch::Tensor& in) mutable { return seq->forward(in); };
  } else {
    SpecCnn cnn;
    model = cnn.ptr();
    x = torch::randn({128, 1, 28, 28});
    y = torch::randint(10, {128});
    forward = [cnn](const torch::Tensor& in) mutable { return cnn->forward(in); };
  }
  auto loss_of = [&](const torch::Tensor& out) {
    return model_name == "mlp16" ? torch::mse_loss(out, y) : torch::cross_entropy_loss(out, y);
  };
  const long rss_model = current_rss_kib();
  const int64_t tensors_model = counting.peak_bytes();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
  std::unique_ptr<diffq::Quantizer> quantizer;
  if (method == "diffq") {
    quantizer = std::make_unique<diffq::DiffQuantizer>(*model, diffq::DiffQOptions().group_size(16));
  } else if (method == "qat") {
    quantizer = std::make_unique<diffq::UniformQuantizer>(*model, diffq::UniformOptions().bits(4).qat(true));
  } else if (method == "lsq") {
    quantizer = std::make_unique<diffq::LSQQuantizer>(*model, diffq::LSQOptions().bits(4));
  } else if (method == "qn-proxy" || method == "qn-int4") {
    quantizer = std::make_unique<diffq::QuantNoiseQuantizer>(
        *model, diffq::QuantNoiseOptions()
                    .mode(method == "qn-proxy" ? diffq::QuantNoiseMode::kProxyDrop : diffq::QuantNoiseMode::kScalarInt4)
                    .p(0.5));
  } else if (method == "ipq-kmeans") {
    // One iPQ stage over every layer: the k-means time, then no training.
    diffq::QuantNoiseQuantizer ipq(*model, diffq::QuantNoiseOptions().mode(diffq::QuantNoiseMode::kIPQ));
    const auto t0 = std::chrono::steady_clock::now();
    ipq.quantize_stage({"*"});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << nlohmann::json{{"model", model_name}, {"method", method}, {"kmeans_s", seconds},
                                {"peak_rss_kib", peak_rss_kib()}}.dump()
              << std::endl;
    return 0;
  }
  if (quantizer) quantizer->add_to_optimizer(optimizer, 1e-3);
  std::vector<double> times, cpu_times, install_times, size_times;
  for (int i = 0; i < steps + 2; ++i) {
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    if (grads == "released") {
      // As the library's Trainer (and PyTorch >= 2.0's zero_grad) does.
      for (auto& group : optimizer.param_groups()) {
        for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
      }
    } else {
      optimizer.zero_grad();  // LibTorch 1.13: fills the gradients with zeros
    }
    if (quantizer) {
      const auto i0 = std::chrono::steady_clock::now();
      auto step = quantizer->training_step();
      const auto i1 = std::chrono::steady_clock::now();
      auto size = quantizer->model_size();
      const auto i2 = std::chrono::steady_clock::now();
      if (i >= 2) {
        install_times.push_back(std::chrono::duration<double>(i1 - i0).count());
        size_times.push_back(std::chrono::duration<double>(i2 - i1).count());
      }
      auto loss = loss_of(forward(x)) + 1.0 * size;
      loss.backward();
      step.finish();
    } else {
      loss_of(forward(x)).backward();
    }
    optimizer.step();
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 2) {
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
      cpu_times.push_back(process_cpu_seconds() - c0);
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(cpu_times.begin(), cpu_times.end());
  // Inside the timed steps: the quantizer's training_step() (the data it
  // installs: DiffQ's range, factors and noisy weights) and model_size().
  nlohmann::json in_step = nlohmann::json::object();
  if (!install_times.empty()) {
    std::sort(install_times.begin(), install_times.end());
    std::sort(size_times.begin(), size_times.end());
    in_step["training_step"] = install_times[install_times.size() / 2];
    in_step["model_size"] = size_times[size_times.size() / 2];
  }
  const long peak_training = peak_rss_kib();  // before the floor's buffers below
  const int64_t peak_tensors = counting.peak_bytes();
  // The floor's ingredients, on this model's weights: one read+write pass
  // (a copy) and one noise draw per weight.
  int64_t weights = 0;
  for (const auto& p : model->parameters()) weights += p.numel();
  auto a = torch::randn({weights}), b = torch::empty({weights});
  std::vector<double> copies, draws;
  for (int i = 0; i < 5; ++i) {
    auto c0 = std::chrono::steady_clock::now();
    b.copy_(a);
    auto c1 = std::chrono::steady_clock::now();
    diffq::noise::fill_noise(b.data_ptr<float>(), weights, uint64_t(i), diffq::noise::Kind::kGaussian);
    auto c2 = std::chrono::steady_clock::now();
    copies.push_back(std::chrono::duration<double>(c1 - c0).count());
    draws.push_back(std::chrono::duration<double>(c2 - c1).count());
  }
  std::sort(copies.begin(), copies.end());
  std::sort(draws.begin(), draws.end());
  // DiffQ's own passes, one by one, on this model's quantized weights (the
  // step's extra work, part by part): the range (max − min), the per-group
  // factors, the noisy weights (draw + write), the backward kernel
  // (products, group sums, the gradient), the size and its gradient, and
  // Adam's update of the logits.
  nlohmann::json parts = nlohmann::json::object();
  if (method == "diffq" && model_name == "mlp16") {  // 16 weights of 1024 x 1024, one logits tensor each
    std::vector<torch::Tensor> ws, outs, grads, scales, slopes;
    for (const auto& p : model->parameters()) {
      if (p.dim() != 2) continue;
      ws.push_back(p.detach().contiguous());
      outs.push_back(torch::empty_like(ws.back()));
      grads.push_back(torch::randn_like(ws.back()));
      scales.push_back(torch::full({ws.back().numel() / 16}, 1e-3f));
      slopes.push_back(torch::empty({ws.back().numel() / 16}));
    }
    const auto logits = quantizer->parameters();
    if (logits.size() != ws.size()) throw std::runtime_error("mlp16: one logits tensor per weight expected");
    for (size_t i = 0; i < ws.size(); ++i) {
      if (logits[i].numel() != scales[i].numel()) throw std::runtime_error("mlp16: groups of 16 expected");
    }
    auto median_of = [](const std::function<void()>& f) {
      std::vector<double> t;
      for (int i = 0; i < 5; ++i) {
        const auto p0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count());
      }
      std::sort(t.begin(), t.end());
      return t[2];
    };
    float low = 0, high = 0;
    parts["range"] = median_of([&] {
      for (const auto& w : ws) diffq::noise::range(w.data_ptr<float>(), w.numel(), &low, &high);
    });
    parts["group_factors"] = median_of([&] {
      for (size_t i = 0; i < ws.size(); ++i) {
        auto l = logits[i].detach().contiguous();
        double bits_total = 0;
        float bits_top = 0;
        diffq::noise::group_factors(l.data_ptr<float>(), l.numel(), 9.0f, 1.4f, 0.1f, scales[i].data_ptr<float>(),
                                    slopes[i].data_ptr<float>(), 2.0f, 13.0f, &bits_total, &bits_top);
      }
    });
    parts["noise_write"] = median_of([&] {
      for (size_t i = 0; i < ws.size(); ++i) {
        diffq::noise::add_noise<float>(ws[i].data_ptr<float>(), outs[i].data_ptr<float>(), ws[i].numel(), 16,
                                       scales[i].data_ptr<float>(), uint64_t(i), diffq::noise::Kind::kGaussian);
      }
    });
    std::vector<int64_t> at_low, at_high;
    std::vector<double> sums(size_t(1) << 20);
    parts["backward"] = median_of([&] {
      for (size_t i = 0; i < ws.size(); ++i) {
        sums.resize(size_t(ws[i].numel() / 16));
        diffq::noise::noise_backward<float>(grads[i].data_ptr<float>(), outs[i].data_ptr<float>(),
                                            ws[i].data_ptr<float>(), ws[i].numel(), 16, low, high, sums.data(),
                                            outs[i].data_ptr<float>(), at_low, at_high);
      }
    });
    parts["size"] = median_of([&] {
      quantizer->model_size().backward();
      for (auto l : logits) l.mutable_grad() = torch::Tensor();
    });
    // Adam's update of the logits (DiffQ's extra trainable parameters), on copies.
    std::vector<torch::Tensor> copies;
    for (const auto& l : logits) {
      copies.push_back(l.detach().clone().requires_grad_(true));
      copies.back().mutable_grad() = torch::randn_like(copies.back());
    }
    torch::optim::Adam adam(copies, torch::optim::AdamOptions(1e-3));
    parts["adam_logits"] = median_of([&] { adam.step(); });
  }
  nlohmann::json out = {{"model", model_name},          {"method", method},
                        {"threads", threads},           {"copy_pass_s", copies[2]},
                        {"noise_draw_s", draws[2]},     {"weights", weights},
                        {"median_step_s", times[times.size() / 2]},
                        {"min_step_s", times.front()},   {"peak_rss_kib", peak_training},
                        {"median_cpu_step_s", cpu_times[cpu_times.size() / 2]},
                        {"rss_after_model_kib", rss_model},
                        {"peak_tensor_bytes", peak_tensors},
                        {"tensor_bytes_after_model", tensors_model},
                        {"grads", grads},
                        {"diffq_parts_s", parts},
                        {"in_step_s", in_step},
                        {"allocator", diffq::allocator_info().name}};
  std::cout << out.dump() << std::endl;
  return 0;
}

// The allocator: "jemalloc" (preloaded into each child, freed pages kept,
// as the diffq tool runs), or glibc's with freed memory kept ("kept",
// diffq::keep_freed_memory, as the Trainer sets it) or with its defaults
// ("system").
#ifdef DIFFQ_JEMALLOC_PATH
std::string g_allocator = "jemalloc";
#else
std::string g_allocator = "kept";
#endif
// The gradients between steps: "released" (undefined before each step, as
// the Trainer does) or "zeroed" (LibTorch 1.13's Optimizer::zero_grad()).
std::string g_grads = "released";

// The thread pools' settings the children run with (read by libgomp and
// OpenBLAS when they load, so set for each child): LibTorch's OpenMP
// threads and OpenBLAS's own threads both spin after a parallel region by
// default, each taking the cores from the other's next region. The values
// the diffq tool sets (tools/thread_pools.h), unless this program's
// environment sets them (OMP_WAIT_POLICY then replaces GOMP_SPINCOUNT).
std::vector<std::pair<std::string, std::string>> thread_environment() {
  std::vector<std::pair<std::string, std::string>> env = {{"GOMP_SPINCOUNT", "3000"},
                                                          {"OPENBLAS_THREAD_TIMEOUT", "4"}};
  if (const char* policy = std::getenv("OMP_WAIT_POLICY")) env[0] = {"OMP_WAIT_POLICY", policy};
  for (auto& kv : env) {
    if (const char* value = std::getenv(kv.first.c_str())) kv.second = value;
  }
  return env;
}

nlohmann::json run_child(const std::string& self, const std::string& model, const std::string& method,
                         int steps, int threads) {
  // OpenBLAS keeps its own thread pool: give it the same thread count.
  std::string env;
  for (const auto& kv : thread_environment()) env += kv.first + "='" + kv.second + "' ";
#ifdef DIFFQ_JEMALLOC_PATH
  if (g_allocator == "jemalloc") {
    env += std::string("LD_PRELOAD='") + DIFFQ_JEMALLOC_PATH + "' MALLOC_CONF='dirty_decay_ms:-1,muzzy_decay_ms:-1' ";
  }
#endif
  const std::string command = env + "OPENBLAS_NUM_THREADS=" + std::to_string(threads) + " '" + self +
                              "' --child " + model + " " + method + " " +
                              std::to_string(steps) + " " + std::to_string(threads) + " " + g_allocator + " " + g_grads;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot start child");
  std::string text;
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe)) text += buffer;
  if (pclose(pipe) != 0) throw std::runtime_error("child failed: " + command);
  auto row = nlohmann::json::parse(text);
  if (g_allocator == "jemalloc" && row.contains("allocator") && row["allocator"] != "jemalloc") {
    throw std::runtime_error("the child did not run on jemalloc: " + command);
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--child") {
    return child(args.at(1), args.at(2), std::stoi(args.at(3)), std::stoi(args.at(4)), args.at(5), args.at(6));
  }
  std::string json_path = "bench_training.json";
  int steps = 10, rounds = 3;
  std::vector<int> thread_counts = {1, 2};
  std::vector<std::string> models = {"mlp16", "cnn"};
  std::vector<std::string> methods = {"none", "diffq", "qat", "lsq", "qn-proxy", "qn-int4", "ipq"};
  CLI::App app{"bench_training: training-step time and peak memory with and without each quantizer"};
  app.add_option("--json", json_path, "JSON output")->capture_default_str();
  app.add_option("--steps", steps, "timed steps per run")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--threads", thread_counts, "intra-op thread counts (one table each)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "rounds (each configuration keeps its fastest)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--allocator", g_allocator,
                 "jemalloc: preloaded, freed pages kept (as the diffq tool runs) | kept: glibc, freed memory kept "
                 "(as the Trainer sets it) | system: glibc's defaults")
      ->capture_default_str()->check(CLI::IsMember({"jemalloc", "kept", "system"}));
  app.add_option("--grads", g_grads,
                 "released: gradients undefined before each step (as the Trainer runs) | zeroed: "
                 "Optimizer::zero_grad() of LibTorch 1.13, which keeps them")
      ->capture_default_str()->check(CLI::IsMember({"released", "zeroed"}));
  app.add_option("--models", models, "models to time")->capture_default_str()
      ->check(CLI::IsMember({"mlp16", "cnn"}));
  app.add_option("--methods", methods, "methods to time (plain training, the base of every ratio, always runs; "
                                       "ipq: the k-means of iPQ on mlp16)")
      ->capture_default_str()->check(CLI::IsMember({"none", "diffq", "qat", "lsq", "qn-proxy", "qn-int4", "ipq"}));
  CLI11_PARSE(app, argc, argv);
  const bool time_ipq = std::find(methods.begin(), methods.end(), "ipq") != methods.end();
  methods.erase(std::remove_if(methods.begin(), methods.end(),
                               [](const std::string& m) { return m == "none" || m == "ipq"; }),
                methods.end());
  methods.insert(methods.begin(), "none");
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = 0;
  nlohmann::json report = {{"threads", thread_counts}, {"models", models}, {"methods", methods}, {"steps", steps}, {"rounds", rounds}, {"allocator", g_allocator}, {"grads", g_grads},
                            {"rows", nlohmann::json::array()}};
  std::printf("children's environment:");
  for (const auto& kv : thread_environment()) {
    report["environment"][kv.first] = kv.second;
    std::printf(" %s=%s", kv.first.c_str(), kv.second.c_str());
  }
  std::printf("\n");
  std::printf("gradients between steps: %s\n", g_grads.c_str());
  std::printf("%-7s %-6s %-8s %10s %8s %22s %10s %11s %14s %8s %12s %13s %8s\n", "threads", "model", "method",
              "step (ms)", "ratio", "paired (range)", "CPU ratio", "floor ratio", "peak RSS (MiB)", "ratio", "above model", "tensors (MiB)",
              "ratio");
  // Extra passes over the weights beyond plain training (read+write passes,
  // noise draws) that each method cannot avoid: its floor.
  const std::map<std::string, std::pair<double, double>> floor_passes = {
      {"none", {0, 0}}, {"diffq", {2, 1}}, {"qat", {1, 0}}, {"lsq", {2, 0}}, {"qn-proxy", {1, 0}}, {"qn-int4", {1, 0}}};
  for (const int threads : thread_counts)
  for (const std::string& model : models) {
    // Several rounds, configurations interleaved; each keeps its fastest
    // round (the least disturbed by other load on the machine). Paired
    // ratios: each round's step over the plain step of the same round
    // (minutes apart at most, so that the machine's slower drifts cancel);
    // their median and range over the rounds.
    std::map<std::string, nlohmann::json> best;
    std::map<std::string, std::vector<double>> paired;
    for (int round = 0; round < rounds; ++round) {
      double plain = 0;
      for (const auto& method : methods) {
        auto row = run_child(self, model, method, steps, threads);
        if (method == "none") plain = row["median_step_s"].get<double>();
        paired[method].push_back(row["median_step_s"].get<double>() / plain);
        if (!best.count(method) ||
            row["median_step_s"].get<double>() < best[method]["median_step_s"].get<double>()) {
          best[method] = row;
        }
      }
    }
    nlohmann::json base;
    for (const auto& method : methods) {
      auto row = best[method];
      if (method == "none") base = row;
      const double ratio = row["median_step_s"].get<double>() / base["median_step_s"].get<double>();
      const double mem_ratio = row["peak_rss_kib"].get<double>() / base["peak_rss_kib"].get<double>();
      // Above the process's RSS once the model exists (libtorch's code and
      // the float model): what training itself allocates.
      const double b0 = base["rss_after_model_kib"].get<double>();
      const double mem_ratio_above = (row["peak_rss_kib"].get<double>() - b0) /
                                     (base["peak_rss_kib"].get<double>() - b0);
      const auto& fp = floor_passes.at(method);
      const double floor_s = fp.first * row["copy_pass_s"].get<double>() + fp.second * row["noise_draw_s"].get<double>();
      const double floor_ratio = (base["median_step_s"].get<double>() + floor_s) / base["median_step_s"].get<double>();
      row["floor_ratio"] = floor_ratio;
      row["cpu_step_ratio"] = row["median_cpu_step_s"].get<double>() / base["median_cpu_step_s"].get<double>();
      row["step_ratio"] = ratio;
      auto& rounds_ratios = paired[method];
      row["paired_ratios"] = rounds_ratios;
      std::sort(rounds_ratios.begin(), rounds_ratios.end());
      const size_t mid = rounds_ratios.size() / 2;
      const double paired_median = rounds_ratios.size() % 2 == 1
                                       ? rounds_ratios[mid]
                                       : 0.5 * (rounds_ratios[mid - 1] + rounds_ratios[mid]);
      row["paired_ratio"] = paired_median;
      row["peak_rss_ratio"] = mem_ratio;
      row["peak_rss_ratio_above_model"] = mem_ratio_above;
      // Peak of live tensor bytes, as a ratio of the plain run's, both
      // counted on top of the same process (the plain run's RSS less its
      // tensors' peak): what the peak RSS would be without heap holes.
      const double process = base["peak_rss_kib"].get<double>() * 1024 - base["peak_tensor_bytes"].get<double>();
      const double tensor_ratio = (process + row["peak_tensor_bytes"].get<double>()) /
                                  (process + base["peak_tensor_bytes"].get<double>());
      row["peak_tensor_ratio"] = tensor_ratio;
      report["rows"].push_back(row);
      std::printf("%-7d %-6s %-8s %10.1f %7.3fx %7.3fx (%.3f-%.3f) %9.2fx %10.2fx %14.1f %7.3fx %11.3fx %13.1f %7.3fx\n",
                  threads, model.c_str(), method.c_str(), row["median_step_s"].get<double>() * 1e3, ratio,
                  paired_median, rounds_ratios.front(), rounds_ratios.back(),
                  row["cpu_step_ratio"].get<double>(), floor_ratio,
                  row["peak_rss_kib"].get<double>() / 1024, mem_ratio, mem_ratio_above,
                  row["peak_tensor_bytes"].get<double>() / 1048576, tensor_ratio);
      std::fflush(stdout);
    }
    // DiffQ's extra time, pass by pass (measured alone in its child).
    const auto& d = best.count("diffq") ? best["diffq"] : nlohmann::json::object();
    if (d.contains("diffq_parts_s") && !d["diffq_parts_s"].empty()) {
      const double extra = d["median_step_s"].get<double>() - base["median_step_s"].get<double>();
      std::printf("  DiffQ's passes (%s, %d thread%s; step %.1f ms above plain):", model.c_str(), threads,
                  threads > 1 ? "s" : "", extra * 1e3);
      double known = 0;
      for (const auto& part : d["diffq_parts_s"].items()) {
        std::printf(" %s %.2f", part.key().c_str(), part.value().get<double>() * 1e3);
        known += part.value().get<double>();
      }
      std::printf(" | noise draw alone %.2f, copy pass %.2f, rest %.2f ms\n", d["noise_draw_s"].get<double>() * 1e3,
                  d["copy_pass_s"].get<double>() * 1e3, (extra - known) * 1e3);
    }
    // Inside the timed steps: each quantizer's training_step() and model_size().
    bool first = true;
    for (const auto& method : methods) {
      if (!best.count(method) || !best[method].contains("in_step_s") || best[method]["in_step_s"].empty()) continue;
      const auto& in_step = best[method]["in_step_s"];
      std::printf("%s %s %.2f / %.2f", first ? "  in the steps, training_step() / model_size() ms:" : ",",
                  method.c_str(), in_step["training_step"].get<double>() * 1e3,
                  in_step["model_size"].get<double>() * 1e3);
      first = false;
    }
    if (!first) std::printf("\n");
  }
  // iPQ: the k-means of one stage over every layer of the 16.8 M-weight model.
  for (const int threads : thread_counts) {
    if (!time_ipq) break;
    auto row = run_child(self, "mlp16", "ipq-kmeans", 1, threads);
    row["threads"] = threads;
    std::printf("%-7d %-6s %-8s k-means of every layer: %.2f s, peak RSS %.1f MiB\n", threads, "mlp16", "ipq",
                row["kmeans_s"].get<double>(), row["peak_rss_kib"].get<double>() / 1024);
    report["ipq_kmeans"].push_back(row);
  }
  std::ofstream(json_path) << report.dump(2) << "\n";
  std::printf("written %s\n", json_path.c_str());
  return 0;
}
