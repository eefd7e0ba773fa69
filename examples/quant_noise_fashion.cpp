// Quant-Noise on Fashion-MNIST: a ResNet-20-style network (16-32-64
// channels) trained in float, then compressed with iterative product
// quantization (iPQ) with and without Quant-Noise, scalar int4/int8
// Quant-Noise, and uniform QAT for comparison. Prints a table and writes
// docs/results/quant_noise.md.
//
//   quant_noise_fashion [--train N] [--test N] [--float-epochs E]
//                       [--stage-epochs E] [--centroids K] [--p P]
//                       [--out FILE] [--quick]
#include <diffq/data/fashion_mnist.h>
#include <diffq/diffq.h>
#include <diffq/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>


namespace nn = torch::nn;

// ---------------------------------------------------------------- model

struct BlockImpl : nn::Module {
  BlockImpl(int64_t in, int64_t out, int64_t stride) {
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(out));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(out));
    if (stride != 1 || in != out) {
      shortcut = register_module("shortcut", nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      shortcut_bn = register_module("shortcut_bn", nn::BatchNorm2d(out));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    auto s = shortcut ? shortcut_bn(shortcut(x)) : x;
    return torch::relu(y + s);
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, shortcut_bn{nullptr};
};
TORCH_MODULE(Block);

// ResNet-20: stem, 3 stages of 3 basic blocks (16, 32, 64 channels), linear.
struct ResNetImpl : nn::Module {
  ResNetImpl() {
    stem = register_module("stem", nn::Conv2d(nn::Conv2dOptions(1, 16, 3).padding(1).bias(false)));
    stem_bn = register_module("stem_bn", nn::BatchNorm2d(16));
    int64_t in = 16;
    const int64_t widths[3] = {16, 32, 64};
    for (int s = 0; s < 3; ++s) {
      nn::Sequential stage;
      for (int b = 0; b < 3; ++b) {
        stage->push_back(Block(in, widths[s], (s > 0 && b == 0) ? 2 : 1));
        in = widths[s];
      }
      stages.push_back(register_module("layer" + std::to_string(s + 1), stage));
    }
    fc = register_module("fc", nn::Linear(64, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(stem_bn(stem(x)));
    for (auto& stage : stages) x = stage->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc(x);
  }
  nn::Conv2d stem{nullptr};
  nn::BatchNorm2d stem_bn{nullptr};
  std::vector<nn::Sequential> stages;
  nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

// ---------------------------------------------------------------- helpers

struct Config {
  int64_t train = 12000;
  int64_t test = 5000;
  double float_epochs = 3;
  double noise_epochs = 1;   // quant-noise (or plain) fine-tune before iPQ
  double stage_epochs = 1;   // fine-tune after each iPQ stage
  double scalar_epochs = 1;  // scalar quant-noise and QAT fine-tunes
  int64_t centroids = 64;
  int64_t stages = 3;
  double p = 0.1;
  int64_t batch = 128;
  std::string out;  // markdown table; empty: printed only
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double accuracy(ResNet& net, const diffq::data::ImageSet& set) {
  torch::NoGradGuard no_grad;
  net->eval();
  int64_t correct = 0;
  for (int64_t i = 0; i < set.images.size(0); i += 1000) {
    const int64_t end = std::min(set.images.size(0), i + 1000);
    auto pred = net->forward(set.images.slice(0, i, end)).argmax(1);
    correct += pred.eq(set.labels.slice(0, i, end)).sum().item<int64_t>();
  }
  net->train();
  return 100.0 * static_cast<double>(correct) / static_cast<double>(set.images.size(0));
}

double quantized_accuracy(ResNet& net, diffq::Quantizer& q, const diffq::data::ImageSet& set) {
  auto scope = q.quantized_evaluation();
  return accuracy(net, set);
}

void copy_into(ResNet& dst, ResNet& src) {
  torch::NoGradGuard no_grad;
  auto params = dst->named_parameters();
  for (auto& p : src->named_parameters()) params[p.key()].copy_(p.value());
  auto buffers = dst->named_buffers();
  for (auto& b : src->named_buffers()) buffers[b.key()].copy_(b.value());
}

// Trains `epochs` (fractional) passes over `train`.
void train(ResNet& net, diffq::Quantizer* q, const std::vector<torch::optim::Optimizer*>& opts,
           const diffq::data::ImageSet& data, double epochs, int64_t batch) {
  const int64_t n = data.images.size(0);
  const int64_t steps = static_cast<int64_t>(epochs * static_cast<double>(n / batch));
  torch::Tensor order;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t pos = (s * batch) % (n / batch * batch);
    if (pos == 0) order = torch::randperm(n);
    auto index = order.slice(0, pos, pos + batch);
    for (auto* o : opts) o->zero_grad();
    std::optional<diffq::TrainingStep> step;
    if (q != nullptr) step.emplace(q->training_step());
    auto loss = torch::cross_entropy_loss(net->forward(data.images.index_select(0, index)),
                                          data.labels.index_select(0, index));
    loss.backward();
    if (step) step->finish();
    for (auto* o : opts) o->step();
  }
}

struct Row {
  std::string method;
  double mib = 0, ratio = 0, acc = 0, epochs = 0, secs = 0;
  std::string note;
};

diffq::DiscoveryOptions discovery() {
  diffq::DiscoveryOptions d;
  d.min_size(0.0005);  // >= 131 elements: every conv and the fc weight; BN, biases stay float
  return d;
}



// ---------------------------------------------------------------- main

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--train") cfg.train = std::stoll(next());
    else if (a == "--test") cfg.test = std::stoll(next());
    else if (a == "--float-epochs") cfg.float_epochs = std::stod(next());
    else if (a == "--noise-epochs") cfg.noise_epochs = std::stod(next());
    else if (a == "--stage-epochs") cfg.stage_epochs = std::stod(next());
    else if (a == "--scalar-epochs") cfg.scalar_epochs = std::stod(next());
    else if (a == "--centroids") cfg.centroids = std::stoll(next());
    else if (a == "--stages") cfg.stages = std::stoll(next());
    else if (a == "--p") cfg.p = std::stod(next());
    else if (a == "--out") cfg.out = next();
    else if (a == "--quick") {
      cfg.train = 1024; cfg.test = 500; cfg.float_epochs = 0.5; cfg.noise_epochs = 0.25;
      cfg.stage_epochs = 0.25; cfg.scalar_epochs = 0.25;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  torch::set_num_threads(1);
  torch::manual_seed(0);
  const auto start = Clock::now();
  auto train_set = diffq::data::load_fashion_mnist(diffq::data::kFashionMnistDir, "train", cfg.train);
  auto test_set = diffq::data::load_fashion_mnist(diffq::data::kFashionMnistDir, "t10k", cfg.test);
  std::vector<Row> rows;

  // ---- float
  ResNet base;
  auto t = Clock::now();
  {
    torch::optim::Adam opt(base->parameters(), torch::optim::AdamOptions(2e-3));
    const int64_t whole = static_cast<int64_t>(cfg.float_epochs);
    for (int64_t e = 0; e < whole; ++e) {
      // Step decay on the last epoch.
      if (e == whole - 1 && whole > 1) {
        for (auto& g : opt.param_groups()) g.options().set_lr(5e-4);
      }
      train(base, nullptr, {&opt}, train_set, 1.0, cfg.batch);
      std::printf("float epoch %lld: %.2f %% (%.0f s)\n", static_cast<long long>(e + 1),
                  accuracy(base, test_set), seconds_since(t));
      std::fflush(stdout);
    }
    if (cfg.float_epochs > whole) train(base, nullptr, {&opt}, train_set, cfg.float_epochs - whole, cfg.batch);
  }
  const double float_secs = seconds_since(t);
  double float_mib = 0;
  for (auto& p : base->parameters()) float_mib += 4.0 * p.numel() / 1048576.0;
  const double float_acc = accuracy(base, test_set);
  rows.push_back({"float32", float_mib, 1.0, float_acc, cfg.float_epochs, float_secs, "baseline"});
  std::printf("float: %.2f %%, %.4f MiB\n", float_acc, float_mib);
  std::fflush(stdout);

  auto add_row = [&](const std::string& method, diffq::Quantizer& q, double acc, double epochs,
                     double secs, const std::string& note) {
    const double mib = q.true_model_size();
    rows.push_back({method, mib, float_mib / mib, acc, epochs, secs, note});
    std::printf("%-34s %8.4f MiB %6.1fx %6.2f %% %5.2f ep %6.0f s\n", method.c_str(), mib,
                float_mib / mib, acc, epochs, secs);
    std::fflush(stdout);
  };

  // ---- iPQ: k-means only (no fine-tuning)
  {
    t = Clock::now();
    ResNet net;
    copy_into(net, base);
    diffq::QuantNoiseQuantizer q(net, diffq::QuantNoiseOptions()
                                          .mode(diffq::QuantNoiseMode::kIPQ)
                                          .p(0)
                                          .num_centroids(cfg.centroids)
                                          .discovery(discovery()));
    q.quantize_stage({"*"});
    add_row("iPQ, k-means only", q, quantized_accuracy(net, q, test_set), 0, seconds_since(t),
            "no fine-tuning");
  }

  // ---- iPQ with and without Quant-Noise: same schedule, p differs.
  for (double p : {0.0, cfg.p}) {
    t = Clock::now();
    ResNet net;
    copy_into(net, base);
    diffq::QuantNoiseQuantizer q(net, diffq::QuantNoiseOptions()
                                          .mode(diffq::QuantNoiseMode::kIPQ)
                                          .p(p)
                                          .num_centroids(cfg.centroids)
                                          .centroid_reduction(diffq::CentroidReduction::kSum)
                                          .discovery(discovery()));
    double epochs = 0;
    if (cfg.noise_epochs > 0) {  // train with quant-noise (or plainly) before quantizing
      torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(5e-4));
      train(net, &q, {&opt}, train_set, cfg.noise_epochs, cfg.batch);
      epochs += cfg.noise_epochs;
    }
    const auto stages = q.stages_by_depth(cfg.stages);
    for (size_t s = 0; s < stages.size(); ++s) {
      q.quantize_stage(stages[s]);
      const double after_kmeans = quantized_accuracy(net, q, test_set);
      torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(5e-4));
      auto centroid_opt = q.make_optimizer(5e-4);
      train(net, &q, {&opt, centroid_opt.get()}, train_set, cfg.stage_epochs, cfg.batch);
      epochs += cfg.stage_epochs;
      std::printf("  p=%.2f stage %zu/%zu (%zu layers): %.2f %% after k-means, %.2f %% after fine-tune (%.0f s)\n",
                  p, s + 1, stages.size(), stages[s].size(), after_kmeans,
                  quantized_accuracy(net, q, test_set), seconds_since(t));
      std::fflush(stdout);
    }
    char name[64];
    std::snprintf(name, sizeof(name), p > 0 ? "iPQ + Quant-Noise (p=%.2f)" : "iPQ, no noise", p);
    add_row(name, q, quantized_accuracy(net, q, test_set), epochs, seconds_since(t),
            "K=" + std::to_string(cfg.centroids) + ", d=9 (3x3) / 8, " + std::to_string(stages.size()) +
                " stages");
    if (p > 0) {
      // The compact file and a restore without the quantizer.
      auto state = q.get_quantized_state();
      const auto bytes = diffq::serialize(state);
      ResNet fresh;
      copy_into(fresh, net);  // buffers (BN statistics) are not parameters
      diffq::restore(fresh, state);
      std::printf("  file: %zu bytes (true size %.4f MiB); restored accuracy %.2f %%\n",
                  bytes.size(), state.true_mib(), accuracy(fresh, test_set));
    }
  }

  // ---- scalar Quant-Noise and QAT
  for (auto mode : {diffq::QuantNoiseMode::kScalarInt8, diffq::QuantNoiseMode::kScalarInt4}) {
    const bool int4 = mode == diffq::QuantNoiseMode::kScalarInt4;
    for (double p : {0.5}) {
      t = Clock::now();
      ResNet net;
      copy_into(net, base);
      diffq::QuantNoiseQuantizer q(net, diffq::QuantNoiseOptions().mode(mode).p(p).refresh_every(100).discovery(discovery()));
      const double ptq = quantized_accuracy(net, q, test_set);
      torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(5e-4));
      train(net, &q, {&opt}, train_set, cfg.scalar_epochs, cfg.batch);
      char name[64];
      std::snprintf(name, sizeof(name), "%s + Quant-Noise (p=%.2f)", int4 ? "int4" : "int8", p);
      char note[64];
      std::snprintf(note, sizeof(note), "per-tensor affine; %.2f %% before fine-tune", ptq);
      add_row(name, q, quantized_accuracy(net, q, test_set), cfg.scalar_epochs, seconds_since(t), note);
    }
  }
  for (int bits : {4, 2}) {
    t = Clock::now();
    ResNet net;
    copy_into(net, base);
    diffq::UniformQuantizer q(net, diffq::UniformOptions().bits(bits).qat(true).discovery(discovery()));
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(5e-4));
    train(net, &q, {&opt}, train_set, cfg.scalar_epochs, cfg.batch);
    add_row("QAT uniform " + std::to_string(bits) + "-bit (STE)", q, quantized_accuracy(net, q, test_set),
            cfg.scalar_epochs, seconds_since(t), "UniformQuantizer, qat");
  }
  const double total = seconds_since(start);

  // ---- table
  std::ostringstream table;
  table << "| method | true size (MiB) | compression vs fp32 | accuracy (%) | fine-tune epochs | seconds | note |\n";
  table << "|---|---:|---:|---:|---:|---:|---|\n";
  for (const auto& r : rows) {
    char line[512];
    std::snprintf(line, sizeof(line), "| %s | %.4f | %.1fx | %.2f | %.2f | %.0f | %s |\n",
                  r.method.c_str(), r.mib, r.ratio, r.acc, r.epochs, r.secs, r.note.c_str());
    table << line;
  }
  std::printf("\n%s\ntotal %.0f s\n", table.str().c_str(), total);

  // Target: iPQ + noise at >= 15x within 2 points of float, better than without noise.
  const Row* noisy = nullptr;
  const Row* plain = nullptr;
  for (const auto& r : rows) {
    if (r.method.rfind("iPQ + Quant-Noise", 0) == 0) noisy = &r;
    if (r.method == "iPQ, no noise") plain = &r;
  }
  std::ostringstream verdict;
  if (noisy != nullptr && plain != nullptr) {
    verdict << "- Compression of iPQ + Quant-Noise: " << noisy->ratio << "x ("
            << (noisy->ratio >= 15 ? "meets" : "misses") << " the 15x target).\n"
            << "- Accuracy drop vs float: " << float_acc - noisy->acc << " points ("
            << (float_acc - noisy->acc <= 2 ? "within" : "NOT within") << " 2 points).\n"
            << "- iPQ + Quant-Noise vs iPQ without noise at the same size: " << noisy->acc
            << " % vs " << plain->acc << " % ("
            << (noisy->acc > plain->acc ? "better" : "NOT better") << ").\n";
  }
  std::printf("%s", verdict.str().c_str());

  if (!cfg.out.empty()) {
    std::ofstream md(cfg.out);
    if (!md) {
      std::fprintf(stderr, "cannot write %s\n", cfg.out.c_str());
      return 1;
    }
    std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof(date), "%Y-%m-%d", std::gmtime(&now));
    md << "# Quant-Noise on Fashion-MNIST\n\n"
       << "Produced by `build/examples/quant_noise_fashion` (examples/quant_noise_fashion.cpp) on "
       << date << ".\n\n"
       << "## Setup and budget\n\n"
       << "- Model: ResNet-20-style (3x3 stem, 3 stages of 3 basic blocks with 16/32/64 channels, "
          "1x1 projection shortcuts, BatchNorm, linear head), "
       << static_cast<int64_t>(float_mib * 1048576.0 / 4.0 + 0.5) << " parameters, "
       << float_mib << " MiB in float32.\n"
       << "- Data: the first " << cfg.train << " Fashion-MNIST training images, evaluated on the first "
       << cfg.test << " test images.\n"
       << "- Float training: " << cfg.float_epochs << " epochs, Adam 2e-3 (5e-4 on the last epoch), batch "
       << cfg.batch << ".\n"
       << "- iPQ: K = " << cfg.centroids << " centroids per layer (capped by the layer's subvectors), "
          "subvectors of one 3x3 kernel (d = 9) for 3x3 convs and d = 8 for 1x1 convs and the linear layer; "
          "k-means 20 iterations; "
       << cfg.stages << " stages by depth; before the stages " << cfg.noise_epochs
       << " epoch of fine-tuning (with Quant-Noise p = " << cfg.p
       << " for the noise run, plainly for the other), then " << cfg.stage_epochs
       << " epoch per stage, Adam 5e-4 on the float parameters and the centroids (sum reduction). "
          "The two iPQ runs have the same schedule and the same size; only p differs.\n"
       << "- Scalar Quant-Noise and QAT: " << cfg.scalar_epochs
       << " epoch from the float model, Adam 5e-4; ranges refreshed every 100 steps.\n"
       << "- Quantized: every conv and the linear weight (>= 131 elements); BatchNorm parameters "
          "and biases stay float32 and are counted.\n"
       << "- Machine: 1 thread (torch::set_num_threads(1)) on a shared 2-core machine; total "
       << total << " s.\n\n"
       << "## Results\n\n"
       << table.str() << "\n"
       << "Sizes are `true_model_size()`: PQ indices numel*log2(K)/d bits + fp16 centroids, scalar "
          "N bits per weight + range, float leftovers at 32 bits. Accuracy is measured with the "
          "true quantized weights (`quantized_evaluation()`).\n\n"
       << "## Target (issue 5)\n\n"
       << verdict.str() << "\n"
       << "## Design notes (diffq::QuantNoiseQuantizer)\n\n"
       << "- Latent weights are never modified: the framework installs `keep*w/(1-p)` (proxy drop) "
          "or the partly fake-quantized weights for the forward and puts the float data back in "
          "backward; gradients are identity (proxy drop) or straight-through with clamp (scalar).\n"
       << "- Scalar int4/int8 use exactly 2^N levels over the observed range: per tensor "
          "`level/(2^N-1)*(max-min)+min` (stored exactly as `kUniform`), or per channel over "
          "[-max|w_c|, max|w_c|] (option `per_channel`; stored as `per_channel` records of format v2: "
          "N bits per weight + a float32 (min, max) pair per channel, restored bit for bit). "
          "Training ranges are refreshed every `refresh_every` steps; evaluation and storage "
          "always use the current range.\n"
       << "- iPQ: k-means per layer (random rows as initial centroids, exhaustive assignment by "
          "matrix products, float64 means, empty clusters split from the most populated one), "
          "stages by name pattern or depth, centroid gradient = SUM of the gradients of the "
          "assigned blocks (option `centroid_reduction(kMean)` for the mean), assignments frozen, "
          "latent weights of PQ layers get a zero gradient. Records are `kProductQuantized` "
          "(fp16 codebook + indices), so `restore` and `inspect` need no quantizer.\n";
    std::printf("wrote %s\n", cfg.out.c_str());
  }
  return 0;
}
