// Quant-Noise: block proxy drop, scalar int4/int8 noise, k-means and iPQ.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "diffq/diffq.h"
#include "diffq/format.h"
#include "diffq/kmeans.h"
#include "test_util.h"

using namespace diffq;
using diffq_test::Mlp;
using diffq_test::all_params;

namespace {


// Conv k×k, conv 1×1 and a Linear: every block layout.
struct SmallNetImpl : torch::nn::Module {
  SmallNetImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 8, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 1)))),
        fc(register_module("fc", torch::nn::Linear(16 * 4 * 4, 8))) {}
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(conv1(x));
    x = torch::relu(conv2(x));
    return fc(x.flatten(1));
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc;
};
TORCH_MODULE(SmallNet);

QuantNoiseOptions drop_options(double p) {
  return QuantNoiseOptions().mode(QuantNoiseMode::kProxyDrop).p(p).block_size(8).discovery(
      all_params());
}

// The installed data of every quantized parameter during one training step.
std::vector<torch::Tensor> installed_data(torch::nn::Module& m, Quantizer& q) {
  auto step = q.training_step();
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

// Checks the proxy drop of `noisy` against `w` with blocks of `b` contiguous
// entries; returns (dropped blocks, blocks).
std::pair<int64_t, int64_t> check_blocks(const torch::Tensor& w, const torch::Tensor& noisy,
                                         int64_t b, double p) {
  auto wf = w.contiguous().view({-1, b});
  auto nf = noisy.contiguous().view({-1, b});
  auto scaled = wf / (1.0 - p);
  auto kept = (nf == scaled).all(1);
  auto dropped = (nf == 0).all(1);
  // Every block entirely kept or entirely dropped (weights are nonzero).
  EXPECT_TRUE(torch::logical_or(kept, dropped).all().item<bool>());
  return {dropped.sum().item<int64_t>(), wf.size(0)};
}

}  // namespace

// ------------------------------------------------------------ layouts

TEST(QuantNoise, BlockLayouts) {
  auto linear = block_layout({16, 32}, 8);
  EXPECT_TRUE(linear.supported);
  EXPECT_EQ(linear.noise_block, 8);
  EXPECT_EQ(linear.pq_block, 8);
  auto conv1x1 = block_layout({16, 32, 1, 1}, 4);
  EXPECT_TRUE(conv1x1.supported);
  EXPECT_EQ(conv1x1.noise_block, 4);
  auto conv3x3 = block_layout({16, 32, 3, 3}, 8);
  EXPECT_TRUE(conv3x3.supported);
  EXPECT_EQ(conv3x3.noise_block, 9);
  EXPECT_EQ(conv3x3.pq_block, 9);
  EXPECT_EQ(block_layout({16, 32, 3, 3}, 8, 18).pq_block, 18);
  EXPECT_FALSE(block_layout({16, 30}, 8).supported);
  EXPECT_FALSE(block_layout({16}, 8).supported);
  EXPECT_FALSE(block_layout({4, 3, 3, 3}, 8, 4).supported);  // 27 not divisible by 4
}

TEST(QuantNoise, UnsupportedShapesStayFloat) {
  Mlp mlp(16, 32, 8);
  QuantNoiseQuantizer q(mlp, drop_options(0.1));
  EXPECT_EQ(q.quantized_names(), (std::vector<std::string>{"fc1.weight", "fc2.weight"}));
  EXPECT_EQ(q.float_names(), (std::vector<std::string>{"fc1.bias", "fc2.bias"}));
  // Scalar modes quantize every discovered parameter.
  QuantNoiseQuantizer s(Mlp(16, 32, 8), QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8).discovery(all_params()));
  EXPECT_EQ(s.quantized_names().size(), 4u);
}

// ------------------------------------------------------------ proxy drop

TEST(QuantNoise, DroppedFractionWithinBoundAndBlocksWhole) {
  torch::manual_seed(0);
  torch::nn::Linear layer(64, 256);  // 64 x 256 / 8 = 2048 blocks
  const double p = 0.1;
  QuantNoiseQuantizer q(layer, drop_options(p));
  const auto w = layer->weight.detach().clone();
  int64_t dropped = 0, total = 0;
  for (int step = 0; step < 5; ++step) {
    auto data = installed_data(*layer, q);
    auto counts = check_blocks(w, data[0], 8, p);
    const double n = static_cast<double>(counts.second);
    const double fraction = static_cast<double>(counts.first) / n;
    EXPECT_NEAR(fraction, p, 4 * std::sqrt(p * (1 - p) / n));
    dropped += counts.first;
    total += counts.second;
  }
  EXPECT_NEAR(static_cast<double>(dropped) / total, p, 4 * std::sqrt(p * (1 - p) / total));
  EXPECT_TRUE(torch::equal(layer->weight.detach(), w));
}

TEST(QuantNoise, ConvDropsWholeKernelsAndChannelChunks) {
  torch::manual_seed(1);
  SmallNet net;
  const double p = 0.3;
  QuantNoiseQuantizer q(net, drop_options(p).block_size(4));
  const auto w1 = net->conv1->weight.detach().clone();  // [8, 2, 3, 3]
  const auto w2 = net->conv2->weight.detach().clone();  // [16, 8, 1, 1]
  int64_t dropped = 0, total = 0;
  for (int step = 0; step < 20; ++step) {
    auto step_scope = q.training_step();
    auto n1 = net->conv1->weight.detach().clone();
    auto n2 = net->conv2->weight.detach().clone();
    step_scope.finish();
    auto c1 = check_blocks(w1, n1, 9, p);  // whole 3x3 kernels
    auto c2 = check_blocks(w2, n2, 4, p);  // 4 input channels of a filter
    dropped += c1.first + c2.first;
    total += c1.second + c2.second;
    // A dropped kernel is an (out, in) pair: its 9 entries are all zero.
    auto zero_kernels = (n1 == 0).view({8, 2, 9}).all(2);
    auto any_zero = (n1 == 0).view({8, 2, 9}).any(2);
    EXPECT_TRUE(torch::equal(zero_kernels, any_zero));
  }
  EXPECT_NEAR(static_cast<double>(dropped) / total, p, 4 * std::sqrt(p * (1 - p) / total));
}

TEST(QuantNoise, LatentUnchangedAfter100TrainingForwards) {
  torch::manual_seed(2);
  for (auto mode : {QuantNoiseMode::kProxyDrop, QuantNoiseMode::kScalarInt4, QuantNoiseMode::kIPQ}) {
    SmallNet net;
    QuantNoiseQuantizer q(net, drop_options(0.5).mode(mode).block_size(4).num_centroids(8));
    const auto before = diffq_test::snapshot(*net);
    auto x = torch::randn({3, 2, 4, 4});
    for (int i = 0; i < 100; ++i) {
      auto step = q.training_step();
      net->forward(x).pow(2).sum().backward();
      step.finish();
    }
    EXPECT_TRUE(diffq_test::same_bits(*net, before)) << "mode " << static_cast<int>(mode);
  }
}

TEST(QuantNoise, ProxyDropGradientIsIdentity) {
  torch::manual_seed(3);
  torch::nn::Linear layer(16, 8);
  QuantNoiseQuantizer q(layer, drop_options(0.4));
  auto x = torch::randn({5, 16});
  auto r = torch::randn({5, 8});
  auto step = q.training_step();
  auto noisy = layer->weight.detach().clone().requires_grad_(true);
  auto reference = (torch::tanh(torch::nn::functional::linear(x, noisy, layer->bias.detach())) * r).sum();
  auto expected = torch::autograd::grad({reference}, {noisy})[0];
  auto loss = (torch::tanh(layer->forward(x)) * r).sum();
  loss.backward();
  step.finish();
  EXPECT_TRUE(torch::allclose(layer->weight.grad(), expected, 0, 0));
}

// ------------------------------------------------------------ scalar

TEST(QuantNoise, ScalarNBitLevelsSpanObservedRange) {
  torch::manual_seed(4);
  for (auto mode : {QuantNoiseMode::kScalarInt4, QuantNoiseMode::kScalarInt8}) {
    const int bits = mode == QuantNoiseMode::kScalarInt4 ? 4 : 8;
    for (bool per_channel : {false, true}) {
      torch::nn::Linear layer(512, 16);
      QuantNoiseQuantizer q(layer, QuantNoiseOptions().mode(mode).per_channel(per_channel).discovery(
                                       all_params().exclude({"bias"})));
      const auto w = layer->weight.detach().clone();
      torch::Tensor quantized;
      {
        auto scope = q.quantized_evaluation();
        quantized = layer->weight.detach().clone();
      }
      if (!per_channel) {
        auto distinct = std::get<0>(torch::_unique(quantized));
        EXPECT_LE(distinct.numel(), 1 << bits);
        EXPECT_GT(distinct.numel(), (1 << bits) / 2);  // not clipped to a few levels
        // level 0 gives min exactly; the top level (max - min) + min, within rounding.
        EXPECT_EQ(quantized.min().item<float>(), w.min().item<float>());
        EXPECT_FLOAT_EQ(quantized.max().item<float>(), w.max().item<float>());
      } else {
        for (int64_t c = 0; c < 16; ++c) {
          auto row = quantized[c];
          const float a = w[c].abs().max().item<float>();
          EXPECT_LE(std::get<0>(torch::_unique(row)).numel(), 1 << bits);
          EXPECT_GE(row.min().item<float>(), -a);
          EXPECT_LE(row.max().item<float>(), a);
          EXPECT_TRUE(row.min().item<float>() == -a || row.max().item<float>() == a);
        }
      }
    }
  }
}

TEST(QuantNoise, ScalarSelectsElementsAndUsesFakeQuantizedValues) {
  torch::manual_seed(5);
  torch::nn::Linear layer(256, 32);
  const double p = 0.25;
  QuantNoiseQuantizer q(layer, QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt4).p(p).discovery(
                                   all_params().exclude({"bias"})));
  const auto w = layer->weight.detach().clone();
  torch::Tensor quantized;
  {
    auto scope = q.quantized_evaluation();
    quantized = layer->weight.detach().clone();
  }
  auto data = installed_data(*layer, q)[0];
  auto is_exact = data == w;
  auto is_quantized = data == quantized;
  EXPECT_TRUE(torch::logical_or(is_exact, is_quantized).all().item<bool>());
  // Per-element selection (no blocks, no rescaling): fraction of changed entries.
  auto changed = torch::logical_and(torch::logical_not(is_exact), is_quantized);
  const double n = w.numel();
  const double changeable = (quantized != w).sum().item<double>();
  const double fraction = changed.sum().item<double>() / changeable;
  EXPECT_NEAR(fraction, p, 4 * std::sqrt(p * (1 - p) / changeable));
  EXPECT_GT(changeable, 0.9 * n);
}

TEST(QuantNoise, ScalarStraightThroughWithClampGradient) {
  torch::manual_seed(6);
  torch::nn::Linear layer(16, 8);
  QuantNoiseQuantizer q(layer, QuantNoiseOptions()
                                   .mode(QuantNoiseMode::kScalarInt4)
                                   .p(1.0)
                                   .refresh_every(1000)
                                   .discovery(all_params().exclude({"bias"})));
  auto x = torch::randn({5, 16});
  auto r = torch::randn({5, 8});
  { auto step = q.training_step(); }  // step 0 observes the range
  // Push a few weights outside the observed (stale) range.
  {
    torch::NoGradGuard no_grad;
    layer->weight[0][0] = layer->weight.max() + 1;
    layer->weight[1][1] = layer->weight.min() - 1;
  }
  auto step = q.training_step();
  auto installed = layer->weight.detach().clone().requires_grad_(true);
  auto reference = (torch::tanh(torch::nn::functional::linear(x, installed, layer->bias.detach())) * r).sum();
  auto expected = torch::autograd::grad({reference}, {installed})[0].clone();
  (torch::tanh(layer->forward(x)) * r).sum().backward();
  step.finish();
  auto grad = layer->weight.grad();
  EXPECT_EQ(grad[0][0].item<float>(), 0.f);
  EXPECT_EQ(grad[1][1].item<float>(), 0.f);
  expected[0][0] = 0;
  expected[1][1] = 0;
  EXPECT_TRUE(torch::equal(grad, expected));  // identity elsewhere
  EXPECT_NE(expected[2][2].item<float>(), 0.f);
}

// ------------------------------------------------------------ k-means

TEST(QuantNoise, KMeansObjectiveNeverIncreases) {
  torch::manual_seed(7);
  auto x = torch::randn({500, 4});
  auto result = kmeans(x, KMeansOptions().num_centroids(16).iterations(25).seed(3));
  ASSERT_GE(result.objective.size(), 3u);
  for (size_t i = 1; i < result.objective.size(); ++i) {
    EXPECT_LE(result.objective[i], result.objective[i - 1] * (1 + 1e-9)) << "iteration " << i;
  }
  EXPECT_LT(result.objective.back(), result.objective.front());
  EXPECT_NEAR(kmeans_objective(x, result.centroids, result.assignments), result.objective.back(),
              1e-5);
}

TEST(QuantNoise, KMeansWithOneCentroidGivesTheMean) {
  torch::manual_seed(8);
  auto x = torch::randn({100, 6}, torch::kFloat64) * 3 + 1;
  auto result = kmeans(x, KMeansOptions().num_centroids(1));
  EXPECT_TRUE(torch::allclose(result.centroids[0], x.mean(0), 1e-12, 1e-12));
  EXPECT_EQ(result.assignments.max().item<int64_t>(), 0);
}

TEST(QuantNoise, KMeansRecoversSeparatedClusters) {
  torch::manual_seed(9);
  auto centers = torch::tensor({{10.f, 0.f, 0.f}, {-10.f, 0.f, 0.f}, {0.f, 10.f, 0.f},
                                {0.f, -10.f, 0.f}, {0.f, 0.f, 10.f}});
  auto truth = torch::arange(5).repeat_interleave(40);
  auto x = centers.index_select(0, truth) + 0.3 * torch::randn({200, 3});
  // k-means++ starts one centroid per cluster: recovered for every seed.
  for (uint64_t seed = 0; seed < 5; ++seed) {
    auto result = kmeans(x, KMeansOptions().num_centroids(5).seed(seed).init(KMeansInit::kPlusPlus));
    // Each true cluster maps to one centroid and centroids are distinct.
    std::set<int64_t> used;
    for (int64_t c = 0; c < 5; ++c) {
      auto a = result.assignments.slice(0, c * 40, (c + 1) * 40);
      EXPECT_EQ(a.min().item<int64_t>(), a.max().item<int64_t>()) << "seed " << seed;
      used.insert(a[0].item<int64_t>());
      EXPECT_LT((result.centroids[a[0].item<int64_t>()] - centers[c]).abs().max().item<float>(), 0.3);
    }
    EXPECT_EQ(used.size(), 5u);
  }
  // Uniform random starts may put two centroids in one cluster (a local
  // minimum EM cannot leave); whenever they do not, the clusters are found.
  int recovered = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    auto result = kmeans(x, KMeansOptions().num_centroids(5).seed(seed));
    recovered += result.objective.back() < 0.3 ? 1 : 0;
  }
  EXPECT_GE(recovered, 1);
}

TEST(QuantNoise, KMeansLeavesNoEmptyCluster) {
  torch::manual_seed(10);
  // Many duplicates: random initial centroids often coincide.
  auto distinct = torch::randn({24, 2});
  auto x = distinct.index_select(0, torch::randint(24, {400}));
  x = torch::cat({x, distinct});  // every distinct row present
  int64_t splits = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    auto result = kmeans(x, KMeansOptions().num_centroids(20).seed(seed));
    auto counts = torch::bincount(result.assignments, {}, 20);
    EXPECT_GT(counts.min().item<int64_t>(), 0) << "seed " << seed;
    for (size_t i = 1; i < result.objective.size(); ++i) {
      EXPECT_LE(result.objective[i], result.objective[i - 1] * (1 + 1e-9));
    }
    splits += result.splits;
  }
  EXPECT_GT(splits, 0);  // the duplicates did produce empty clusters to split
}

TEST(QuantNoise, KMeansDecodeEncodeIsExactWhenKCoversDistinct) {
  torch::manual_seed(11);
  auto distinct = torch::randn({12, 4}).to(torch::kFloat16).to(torch::kFloat32);
  auto x = distinct.index_select(0, torch::cat({torch::arange(12), torch::randint(12, {300})}));
  auto result = kmeans(x, KMeansOptions().num_centroids(12).seed(4));
  EXPECT_TRUE(torch::equal(result.centroids.index_select(0, result.assignments), x));
  // Through the quantizer and the stored record (fp16 codebook).
  torch::nn::Linear layer(16, 78);  // 78 x 16 / 4 = 312 subvectors
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(x.reshape({78, 16}));
  }
  QuantNoiseQuantizer q(layer, QuantNoiseOptions().block_size(4).num_centroids(12).discovery(
                                   all_params().exclude({"bias"})));
  q.quantize_stage({"weight"});
  auto state = q.get_quantized_state();
  EXPECT_EQ(state.tensors[0].encoding, Encoding::kProductQuantized);
  auto values = dequantize(state.tensors[0]);
  EXPECT_TRUE(torch::equal(torch::from_blob(values.data(), {78, 16}), layer->weight.detach()));
}

// ------------------------------------------------------------ iPQ

TEST(QuantNoise, CentroidGradientIsSumOrMeanOfAssignedBlocks) {
  for (auto reduction : {CentroidReduction::kSum, CentroidReduction::kMean}) {
    torch::manual_seed(12);
    torch::nn::Linear layer(16, 12);
    QuantNoiseQuantizer q(layer, QuantNoiseOptions().block_size(4).num_centroids(5).centroid_reduction(reduction).discovery(
                                     all_params().exclude({"bias"})));
    auto created = q.quantize_stage({"weight"});
    ASSERT_EQ(created.size(), 1u);
    auto centroids = created[0];
    auto x = torch::randn({7, 16});
    auto r = torch::randn({7, 12});
    auto step = q.training_step();
    // The forward sees the centroids gathered.
    auto installed = layer->weight.detach().clone().requires_grad_(true);
    auto reference = (torch::tanh(torch::nn::functional::linear(x, installed, layer->bias.detach())) * r).sum();
    auto block_grads = torch::autograd::grad({reference}, {installed})[0].reshape({-1, 4});
    (torch::tanh(layer->forward(x)) * r).sum().backward();
    step.finish();
    // Recover assignments from the installed data.
    auto rows = installed.detach().reshape({-1, 4});
    auto expected = torch::zeros({5, 4});
    auto counts = torch::zeros({5});
    for (int64_t b = 0; b < rows.size(0); ++b) {
      int64_t k = -1;
      for (int64_t c = 0; c < 5; ++c) {
        if (torch::equal(rows[b], centroids.detach()[c])) k = c;
      }
      ASSERT_GE(k, 0);
      expected[k] += block_grads[b];
      counts[k] += 1;
    }
    if (reduction == CentroidReduction::kMean) expected /= counts.clamp_min(1).unsqueeze(1);
    EXPECT_TRUE(torch::allclose(centroids.grad(), expected, 1e-5, 1e-6));
    EXPECT_EQ(layer->weight.grad().abs().max().item<float>(), 0.f);  // frozen latent
  }
}

TEST(QuantNoise, StagedIPQNoisesFloatLayersOnly) {
  torch::manual_seed(13);
  SmallNet net;
  QuantNoiseQuantizer q(net, drop_options(0.5).mode(QuantNoiseMode::kIPQ).block_size(4).num_centroids(8));
  auto stages = q.stages_by_depth(3);
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_EQ(stages[0], std::vector<std::string>{"conv1.weight"});
  EXPECT_THROW(q.quantize_stage({"nothing*"}), Error);
  q.quantize_stage(stages[0]);
  EXPECT_TRUE(q.is_product_quantized("conv1.weight"));
  EXPECT_EQ(q.pending_names(), (std::vector<std::string>{"conv2.weight", "fc.weight"}));
  EXPECT_EQ(q.parameters().size(), 1u);
  torch::Tensor pq_eval;
  const auto fc_float = net->fc->weight.detach().clone();
  {
    auto scope = q.quantized_evaluation();
    pq_eval = net->conv1->weight.detach().clone();
    EXPECT_TRUE(torch::equal(net->fc->weight.detach(), fc_float));  // pending: float
  }
  const auto w2 = net->conv2->weight.detach().clone();
  auto step = q.training_step();
  // PQ layer: its centroids (float32, no noise); float layers: block noise.
  EXPECT_TRUE(torch::allclose(net->conv1->weight.detach(), pq_eval, 0, 1e-3));
  auto noisy = net->conv2->weight.detach().clone();
  step.finish();
  check_blocks(w2, noisy, 4, 0.5);
  EXPECT_FALSE(torch::equal(noisy, w2));
  // Proxy drop refuses stage quantization.
  SmallNet other;
  QuantNoiseQuantizer drop(other, drop_options(0.1));
  EXPECT_THROW(drop.quantize_stage({"*"}), Error);
}

TEST(QuantNoise, EvaluationEqualsRestoredQuantizedModel) {
  torch::manual_seed(14);
  auto x = torch::randn({4, 2, 4, 4});
  std::vector<QuantNoiseOptions> configs = {
      QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt4),
      QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8),
      QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8).per_channel(true),
      QuantNoiseOptions().mode(QuantNoiseMode::kIPQ).num_centroids(16),
      QuantNoiseOptions().mode(QuantNoiseMode::kIPQ).num_centroids(16).discovery(all_params().float16(true)),
  };
  for (size_t i = 0; i < configs.size(); ++i) {
    SmallNet net;
    auto options = configs[i].block_size(4);
    if (i != 4) options.discovery(all_params());
    QuantNoiseQuantizer q(net, options);
    if (options.mode() == QuantNoiseMode::kIPQ) {
      q.quantize_stage({"conv*"});  // fc stays float (a pending layer)
    }
    // A few training steps so the state is not the initial one.
    torch::optim::SGD opt(net->parameters(), 0.01);
    auto own = q.parameters();
    std::unique_ptr<torch::optim::Optimizer> own_opt;
    if (!own.empty()) own_opt = q.make_optimizer(1e-2);
    for (int s = 0; s < 3; ++s) {
      opt.zero_grad();
      if (own_opt) own_opt->zero_grad();
      auto step = q.training_step();
      net->forward(x).pow(2).mean().backward();
      step.finish();
      opt.step();
      if (own_opt) own_opt->step();
    }
    const auto fc_before = net->fc->weight.detach().clone();
    torch::Tensor expected;
    {
      torch::NoGradGuard no_grad;
      auto scope = q.quantized_evaluation();
      expected = net->forward(x).clone();
    }
    // Through the compact file, restored without the quantizer.
    const auto bytes = serialize(q.get_quantized_state());
    auto state = load_from_memory(bytes.data(), bytes.size());
    // Per-channel ranges are stored exactly too (kPerChannelUniform, format v2).
    EXPECT_NEAR(state.true_mib(), q.true_model_size(), 1e-12);
    if (options.per_channel()) {
      EXPECT_EQ(state.tensors[0].encoding, Encoding::kPerChannelUniform);
    }
    SmallNet fresh;
    restore(fresh, state);
    torch::NoGradGuard no_grad;
    if (i == 4) {
      // float16 storage: the framework evaluates float leftovers (biases)
      // unrounded, so compare the weights (PQ and pending-float16) only.
      auto scope = q.quantized_evaluation();
      EXPECT_TRUE(torch::equal(fresh->conv1->weight, net->conv1->weight));
      EXPECT_TRUE(torch::equal(fresh->fc->weight, net->fc->weight));
      EXPECT_FALSE(torch::equal(fresh->fc->weight.to(torch::kFloat32), fc_before));
    } else {
      EXPECT_TRUE(torch::equal(fresh->forward(x), expected)) << "config " << i;
    }
    auto info = inspect_memory(bytes.data(), bytes.size());
    if (options.mode() == QuantNoiseMode::kIPQ) {
      EXPECT_EQ(info.tensors[0].encoding, Encoding::kProductQuantized);
      EXPECT_EQ(info.method, "quant_noise");
      EXPECT_EQ(info.options.at("mode"), "ipq");
    }
  }
}

TEST(QuantNoise, SizeOfLinear4096x1024) {
  torch::manual_seed(15);
  // 4096 x 1024 / 8 = 524288 subvectors: one k-means iteration keeps it fast.
  auto model = std::make_shared<torch::nn::Module>();
  auto w = model->register_parameter("weight", torch::randn({4096, 1024}));
  QuantNoiseQuantizer q(*model, QuantNoiseOptions().block_size(8).num_centroids(256).kmeans_iterations(1));
  EXPECT_DOUBLE_EQ(q.true_model_size(), 16.0);  // float before quantization
  q.quantize_stage({"weight"});
  // Indices: 4096·1024·8/8 bits = 0.5 MiB; centroids 256·8·16 bits = 4 KiB.
  EXPECT_DOUBLE_EQ(q.true_model_size(), 0.5 + 4.0 / 1024.0);
  auto state = q.get_quantized_state();
  EXPECT_DOUBLE_EQ(state.true_mib(), 0.5 + 4.0 / 1024.0);
  EXPECT_EQ(state.tensors[0].codebook.size(), 256u * 8u);
  EXPECT_EQ(state.tensors[0].levels.size(), 524288u);
}

TEST(QuantNoise, SizesOfScalarModes) {
  torch::nn::Linear layer(64, 32);
  QuantNoiseQuantizer q4(layer, QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt4).discovery(all_params().exclude({"bias"})));
  EXPECT_DOUBLE_EQ(q4.true_model_size(), (4.0 * 2048 + 64 + 32 * 32) / 8 / 1048576);
  EXPECT_DOUBLE_EQ(q4.get_quantized_state().true_mib(), q4.true_model_size());
  torch::nn::Linear other(64, 32);  // one quantizer per model
  QuantNoiseQuantizer pc(other, QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8).per_channel(true).discovery(all_params().exclude({"bias"})));
  // 8 bits per weight, a float32 min and max for each of the 32 channels, float32 bias.
  EXPECT_DOUBLE_EQ(pc.true_model_size(), (8.0 * 2048 + 64 * 32 + 32 * 32) / 8 / 1048576);
  EXPECT_DOUBLE_EQ(pc.get_quantized_state().true_mib(), pc.true_model_size());
}

// Bit patterns of a float tensor (so that -0 and +0 differ).
torch::Tensor bit_patterns(const torch::Tensor& t) {
  return t.detach().to(torch::kFloat32).contiguous().view(torch::kInt32).clone();
}

TEST(QuantNoise, PerChannelStateIsExactAndSmallerThanFloat) {
  torch::manual_seed(16);
  for (auto mode : {QuantNoiseMode::kScalarInt4, QuantNoiseMode::kScalarInt8}) {
    SCOPED_TRACE(mode == QuantNoiseMode::kScalarInt4 ? "int4" : "int8");
    SmallNet net;
    net->conv2->weight.detach()[3].zero_();  // a channel with a zero range
    QuantNoiseQuantizer q(net, QuantNoiseOptions().mode(mode).per_channel(true).discovery(all_params()));
    std::vector<torch::Tensor> evaluated;
    {
      torch::NoGradGuard no_grad;
      auto scope = q.quantized_evaluation();
      for (auto& p : net->parameters()) evaluated.push_back(bit_patterns(p));
    }
    const QuantizedState state = q.get_quantized_state();
    ASSERT_EQ(state.tensors.size(), net->parameters().size());
    for (const auto& r : state.tensors) {
      if (r.shape.size() >= 2) {
        EXPECT_EQ(r.encoding, Encoding::kPerChannelUniform) << r.name;
        EXPECT_EQ(r.channel_count(), r.shape[0]) << r.name;
      } else {
        EXPECT_EQ(r.encoding, Encoding::kUniform) << r.name;  // one channel: [-a, a]
      }
      EXPECT_EQ(r.bits, mode == QuantNoiseMode::kScalarInt4 ? 4 : 8);
    }
    const auto bytes = serialize(state, SaveOptions().entropy_coding(EntropyCoding::kNone));
    const QuantizedState loaded = load_from_memory(bytes.data(), bytes.size());
    SmallNet fresh;
    restore(fresh, loaded);
    const auto restored = fresh->parameters();
    for (size_t i = 0; i < restored.size(); ++i) {
      EXPECT_TRUE(torch::equal(bit_patterns(restored[i]), evaluated[i])) << state.tensors[i].name;
    }
    EXPECT_NEAR(loaded.true_mib(), q.true_model_size(), 1e-12);
    // Before format v2 the per-channel records were float32 values.
    QuantizedState as_float = loaded;
    for (auto& r : as_float.tensors) {
      if (r.encoding != Encoding::kPerChannelUniform) continue;
      r.values_f32 = dequantize(r);
      r.encoding = Encoding::kFloat32;
      r.levels.clear();
      r.channel_min.clear();
      r.channel_max.clear();
    }
    EXPECT_LT(loaded.true_bits(), as_float.true_bits() / 3);
    const auto float_bytes = serialize(as_float, SaveOptions().entropy_coding(EntropyCoding::kNone));
    EXPECT_LT(bytes.size(), float_bytes.size());
    for (auto coding : {EntropyCoding::kZstd, EntropyCoding::kRans, EntropyCoding::kAuto}) {
      const auto coded = serialize(state, SaveOptions().entropy_coding(coding));
      SmallNet again;
      restore(again, load_from_memory(coded.data(), coded.size()));
      EXPECT_TRUE(torch::equal(bit_patterns(again->conv1->weight), evaluated[0]));
    }
  }
}

TEST(QuantNoise, InvalidOptionsAreRefused) {
  torch::nn::Linear layer(16, 8);
  EXPECT_THROW(QuantNoiseQuantizer(layer, QuantNoiseOptions().mode(QuantNoiseMode::kProxyDrop).p(1.0)), Error);
  EXPECT_THROW(QuantNoiseQuantizer(layer, QuantNoiseOptions().p(-0.1)), Error);
  EXPECT_THROW(QuantNoiseQuantizer(layer, QuantNoiseOptions().num_centroids(0)), Error);
  QuantNoiseQuantizer ok(layer, QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8).p(1.0));
  auto step = ok.training_step();
  EXPECT_THROW(ok.set_p(2.0), Error);
}
