// Models of the experiments: vision (Fashion-MNIST) and language (KJV).
#include "diffq/models/models.h"

#include <cmath>
#include <set>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/number_text.h"
#include "diffq/oneshot/resnet.h"

namespace diffq {
namespace models {

namespace nn = torch::nn;

namespace {

int64_t scaled(int64_t channels, double width) {
  return std::max<int64_t>(4, static_cast<int64_t>(std::lround(channels * width)));
}

// A normalisation layer registered in `owner` under `name`: BatchNorm2d
// ("batch": running statistics as buffers) or GroupNorm ("group": 8 or fewer
// groups dividing the channels).
nn::AnyModule norm(nn::Module& owner, const std::string& name, int64_t channels, const std::string& kind) {
  if (kind == "batch") return nn::AnyModule(owner.register_module(name, nn::BatchNorm2d(channels)));
  int64_t groups = std::min<int64_t>(8, channels);
  while (channels % groups) --groups;
  return nn::AnyModule(owner.register_module(name, nn::GroupNorm(nn::GroupNormOptions(groups, channels))));
}

// ---- small CNN: the quick start's network (2 conv + pool, 2 linear).
struct SmallCnn : Model {
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
  explicit SmallCnn(double width) {
    const int64_t c1 = scaled(16, width), c2 = scaled(32, width), h = scaled(128, width);
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, c1, 3).padding(1)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(c1, c2, 3).padding(1)));
    fc1 = register_module("fc1", nn::Linear(c2 * 7 * 7, h));
    fc2 = register_module("fc2", nn::Linear(h, 10));
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    return fc2(torch::relu(fc1(x.flatten(1))));
  }
};

// ---- ResNet-20 style (He et al. 2016, CIFAR variant): 3 stages of 3 basic
// blocks, 16-32-64 channels, BatchNorm (the standard) or GroupNorm.
struct BasicBlock : nn::Module {
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};
  nn::AnyModule n1, n2, ns;
  BasicBlock(int64_t in, int64_t out, int64_t stride, const std::string& kind) {
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    n1 = norm(*this, "n1", out, kind);
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
    n2 = norm(*this, "n2", out, kind);
    if (stride != 1 || in != out) {
      shortcut = register_module("shortcut", nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      ns = norm(*this, "ns", out, kind);
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(n1.forward(conv1(x)));
    y = n2.forward(conv2(y));
    auto s = shortcut ? ns.forward(shortcut(x)) : x;
    return torch::relu(y + s);
  }
};

struct ResNet20 : Model {
  nn::Conv2d stem{nullptr};
  nn::AnyModule stem_norm;
  std::vector<std::shared_ptr<BasicBlock>> blocks;
  nn::Linear fc{nullptr};
  ResNet20(double width, const std::string& kind) {
    const int64_t c[3] = {scaled(16, width), scaled(32, width), scaled(64, width)};
    stem = register_module("stem", nn::Conv2d(nn::Conv2dOptions(1, c[0], 3).padding(1).bias(false)));
    stem_norm = norm(*this, "stem_norm", c[0], kind);
    int64_t in = c[0];
    for (int s = 0; s < 3; ++s) {
      for (int b = 0; b < 3; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        blocks.push_back(register_module("layer" + std::to_string(s + 1) + "_" + std::to_string(b),
                                         std::make_shared<BasicBlock>(in, c[s], stride, kind)));
        in = c[s];
      }
    }
    fc = register_module("fc", nn::Linear(in, 10));
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_norm.forward(stem(x)));
    for (auto& b : blocks) x = b->forward(x);
    return fc(x.mean({2, 3}));
  }
};

// ---- MobileNet style (Howard et al. 2017): depthwise separable blocks.
struct Separable : nn::Module {
  nn::Conv2d dw{nullptr}, pw{nullptr};
  nn::AnyModule n1, n2;
  Separable(int64_t in, int64_t out, int64_t stride, const std::string& kind) {
    dw = register_module("dw", nn::Conv2d(nn::Conv2dOptions(in, in, 3).stride(stride).padding(1).groups(in).bias(false)));
    n1 = norm(*this, "n1", in, kind);
    pw = register_module("pw", nn::Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)));
    n2 = norm(*this, "n2", out, kind);
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::relu(n2.forward(pw(torch::relu(n1.forward(dw(x))))));
  }
};

struct MobileNet : Model {
  nn::Conv2d stem{nullptr};
  nn::AnyModule stem_norm;
  std::vector<std::shared_ptr<Separable>> blocks;
  nn::Linear fc{nullptr};
  MobileNet(double width, const std::string& kind) {
    const int64_t c0 = scaled(32, width);
    stem = register_module("stem", nn::Conv2d(nn::Conv2dOptions(1, c0, 3).padding(1).bias(false)));
    stem_norm = norm(*this, "stem_norm", c0, kind);
    const std::pair<int64_t, int64_t> plan[] = {{64, 1}, {128, 2}, {128, 1}, {256, 2}, {256, 1}};
    int64_t in = c0;
    int i = 0;
    for (const auto& p : plan) {
      const int64_t out = scaled(p.first, width);
      blocks.push_back(register_module("block" + std::to_string(i++), std::make_shared<Separable>(in, out, p.second, kind)));
      in = out;
    }
    fc = register_module("fc", nn::Linear(in, 10));
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_norm.forward(stem(x)));
    for (auto& b : blocks) x = b->forward(x);
    return fc(x.mean({2, 3}));
  }
};

// ---- Transformer encoder layer (pre-norm), optionally causal.
struct EncoderLayer : nn::Module {
  int64_t heads;
  nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  nn::Linear qkv{nullptr}, proj{nullptr}, ff1{nullptr}, ff2{nullptr};
  EncoderLayer(int64_t dim, int64_t heads_, int64_t hidden) : heads(heads_) {
    ln1 = register_module("ln1", nn::LayerNorm(nn::LayerNormOptions({dim})));
    qkv = register_module("qkv", nn::Linear(dim, 3 * dim));
    proj = register_module("proj", nn::Linear(dim, dim));
    ln2 = register_module("ln2", nn::LayerNorm(nn::LayerNormOptions({dim})));
    ff1 = register_module("ff1", nn::Linear(dim, hidden));
    ff2 = register_module("ff2", nn::Linear(hidden, dim));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = D / heads;
    auto q = qkv(ln1(x)).view({B, T, 3, heads, hd}).permute({2, 0, 3, 1, 4});
    auto att = torch::matmul(q[0], q[1].transpose(-2, -1)) / std::sqrt(double(hd));
    if (mask.defined()) att = att.masked_fill(mask, -1e9);
    auto y = torch::matmul(torch::softmax(att, -1), q[2]).permute({0, 2, 1, 3}).reshape({B, T, D});
    x = x + proj(y);
    return x + ff2(torch::gelu(ff1(ln2(x))));
  }
};

// ---- small vision transformer: 7x7 patches (16 tokens), class token.
struct Vit : Model {
  nn::Linear patch{nullptr}, head{nullptr};
  torch::Tensor cls, pos;
  std::vector<std::shared_ptr<EncoderLayer>> layers;
  nn::LayerNorm ln{nullptr};
  explicit Vit(double width) {
    const int64_t dim = scaled(64, width);
    patch = register_module("patch", nn::Linear(49, dim));
    cls = register_parameter("cls", torch::randn({1, 1, dim}) * 0.02);
    pos = register_parameter("pos", torch::randn({1, 17, dim}) * 0.02);
    for (int i = 0; i < 4; ++i)
      layers.push_back(register_module("layer" + std::to_string(i), std::make_shared<EncoderLayer>(dim, 4, 2 * dim)));
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({dim})));
    head = register_module("head", nn::Linear(dim, 10));
  }
  torch::Tensor forward(torch::Tensor x) override {
    const int64_t B = x.size(0);
    // [B,1,28,28] -> [B,16,49]
    x = x.view({B, 4, 7, 4, 7}).permute({0, 1, 3, 2, 4}).reshape({B, 16, 49});
    x = torch::cat({cls.expand({B, 1, cls.size(2)}), patch(x)}, 1) + pos;
    for (auto& l : layers) x = l->forward(x, torch::Tensor());
    return head(ln(x.select(1, 0)));
  }
};

// ---- language models: tied input / output embeddings.
struct TransformerLm : Model {
  int64_t context;
  nn::Embedding embed{nullptr};
  torch::Tensor pos;
  std::vector<std::shared_ptr<EncoderLayer>> layers;
  nn::LayerNorm ln{nullptr};
  TransformerLm(int64_t vocab, int64_t context_, int64_t dim, int64_t n_layers) : context(context_) {
    DIFFQ_CHECK(dim % 4 == 0, "transformer width ", dim, " must be a multiple of 4 (heads)");
    embed = register_module("embed", nn::Embedding(vocab, dim));
    torch::NoGradGuard g;
    embed->weight.normal_(0, 0.02);
    pos = register_parameter("pos", torch::randn({1, context, dim}) * 0.02);
    for (int64_t i = 0; i < n_layers; ++i)
      layers.push_back(register_module("layer" + std::to_string(i), std::make_shared<EncoderLayer>(dim, 4, 4 * dim)));
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({dim})));
  }
  torch::Tensor forward(torch::Tensor x) override {
    const int64_t T = x.size(1);
    DIFFQ_CHECK(T <= context, "sequence of ", T, " tokens exceeds the context ", context);
    auto mask = torch::ones({T, T}, torch::dtype(torch::kBool).device(x.device())).triu(1);
    auto h = embed(x) + pos.slice(1, 0, T);
    for (auto& l : layers) h = l->forward(h, mask);
    return torch::matmul(ln(h), embed->weight.t());
  }
};

struct LstmLm : Model {
  nn::Embedding embed{nullptr};
  nn::LSTM lstm{nullptr};
  LstmLm(int64_t vocab, int64_t dim, int64_t n_layers) {
    embed = register_module("embed", nn::Embedding(vocab, dim));
    torch::NoGradGuard g;
    embed->weight.normal_(0, 0.05);
    lstm = register_module("lstm", nn::LSTM(nn::LSTMOptions(dim, dim).num_layers(n_layers).batch_first(true)));
  }
  torch::Tensor forward(torch::Tensor x) override {
    auto h = std::get<0>(lstm->forward(embed(x)));
    return torch::matmul(h, embed->weight.t());
  }
};

}  // namespace

std::vector<std::string> task_names() { return {"fashion-mnist", "kjv-lm"}; }

std::vector<std::string> model_names(const std::string& task) {
  if (task == "fashion-mnist") return {"cnn", "resnet20", "mobilenet", "vit", "oneshot-resnet"};
  if (task == "kjv-lm") return {"transformer", "lstm"};
  throw Error("unknown task '" + task + "' (fashion-mnist or kjv-lm)");
}

std::string describe_model(const std::string& task, const std::string& name) {
  if (task == "fashion-mnist") {
    if (name == "cnn") return "2 conv (16, 32) + pool, linear 128, linear 10 (the quick start's CNN)";
    if (name == "resnet20")
      return "ResNet-20 style: 3x3 basic blocks, 16-32-64 channels, BatchNorm (--norm group: GroupNorm)";
    if (name == "mobilenet")
      return "MobileNet style: 5 depthwise-separable blocks, 32..256 channels, GroupNorm (--norm batch: BatchNorm)";
    if (name == "vit") return "vision transformer: 16 patches of 7x7, width 64, 4 layers, 4 heads";
    if (name == "oneshot-resnet")
      return "one-shot mixed-precision ResNet: 3 stages of 2 basic blocks, 8-16-32 channels, activation "
             "quantizers and switchable BatchNorm (W2..6 A2..6; stem W8 float input, classifier W8A8)";
  } else if (task == "kjv-lm") {
    if (name == "transformer") return "causal pre-norm Transformer, 4 heads, tied embeddings";
    if (name == "lstm") return "LSTM, tied embeddings";
  }
  return "";
}

std::shared_ptr<Model> make_model(const ModelConfig& c) {
  const auto names = model_names(c.task);
  DIFFQ_CHECK(std::find(names.begin(), names.end(), c.name) != names.end(), "unknown model '",
              c.name, "' for task ", c.task, " (one of: ", [&] {
                std::string s;
                for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
                return s;
              }(), ")");
  DIFFQ_CHECK(c.width > 0, "model width must be positive");
  const std::string kind = norm_of(c);
  if (c.task == "fashion-mnist") {
    if (c.name == "cnn") return std::make_shared<SmallCnn>(c.width);
    if (c.name == "resnet20") return std::make_shared<ResNet20>(c.width, kind);
    if (c.name == "mobilenet") return std::make_shared<MobileNet>(c.width, kind);
    if (c.name == "oneshot-resnet") {
      return oneshot::make_oneshot_resnet(oneshot::OneShotResNetOptions().channels(
          {scaled(8, c.width), scaled(16, c.width), scaled(32, c.width)}));
    }
    return std::make_shared<Vit>(c.width);
  }
  DIFFQ_CHECK(c.vocab >= 2, "language model needs a vocabulary of at least 2 words");
  DIFFQ_CHECK(c.context >= 1 && c.dim >= 4 && c.layers >= 1, "invalid language model shape");
  if (c.name == "transformer") return std::make_shared<TransformerLm>(c.vocab, c.context, c.dim, c.layers);
  return std::make_shared<LstmLm>(c.vocab, c.dim, c.layers);
}

int64_t count_parameters(torch::nn::Module& model) {
  std::set<const void*> seen;
  int64_t n = 0;
  for (const auto& p : model.parameters()) {
    if (seen.insert(p.unsafeGetTensorImpl()).second) n += p.numel();
  }
  return n;
}

}  // namespace models
}  // namespace diffq

namespace diffq {
namespace models {

std::string norm_of(const ModelConfig& c) {
  const bool has_norm = c.task == "fashion-mnist" && (c.name == "resnet20" || c.name == "mobilenet");
  if (!has_norm) {
    DIFFQ_CHECK(c.norm.empty(), "model '", c.name, "' has no normalisation to choose (--norm is for resnet20 and mobilenet)");
    return "";
  }
  if (c.norm.empty()) return c.name == "resnet20" ? "batch" : "group";
  DIFFQ_CHECK(c.norm == "batch" || c.norm == "group", "--norm must be batch or group, not '", c.norm, "'");
  return c.norm;
}

std::map<std::string, std::string> arch_options(const ModelConfig& c) {
  std::map<std::string, std::string> o{
      {"arch.task", c.task}, {"arch.model", c.name}, {"arch.width", format_number(c.width)}};
  const std::string kind = norm_of(c);
  if (!kind.empty()) o["arch.norm"] = kind;
  if (c.task == "kjv-lm") {
    o["arch.vocab"] = std::to_string(c.vocab);
    o["arch.context"] = std::to_string(c.context);
    o["arch.dim"] = std::to_string(c.dim);
    o["arch.layers"] = std::to_string(c.layers);
  }
  return o;
}

ModelConfig model_config_from_options(const std::map<std::string, std::string>& options) {
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = options.find(key);
    DIFFQ_CHECK(it != options.end(), "the model file has no '", key,
                "' option: it was not written by `diffq train`, so its architecture is unknown");
    return it->second;
  };
  ModelConfig c;
  c.task = get("arch.task");
  c.name = get("arch.model");
  if (c.name == kScriptModel) {  // a TorchScript file's model: only what the data needs
    if (c.task == "kjv-lm") {
      c.vocab = parse_integer(get("arch.vocab"), "arch.vocab");
      c.context = parse_integer(get("arch.context"), "arch.context");
    }
    return c;
  }
  c.width = parse_number(get("arch.width"), "arch.width");
  // Files written before the choice existed hold GroupNorm models.
  auto norm = options.find("arch.norm");
  if (c.task == "fashion-mnist" && (c.name == "resnet20" || c.name == "mobilenet"))
    c.norm = norm != options.end() ? norm->second : "group";
  if (c.task == "kjv-lm") {
    c.vocab = parse_integer(get("arch.vocab"), "arch.vocab");
    c.context = parse_integer(get("arch.context"), "arch.context");
    c.dim = parse_integer(get("arch.dim"), "arch.dim");
    c.layers = parse_integer(get("arch.layers"), "arch.layers");
  }
  return c;
}

}  // namespace models
}  // namespace diffq
