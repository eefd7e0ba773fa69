// The one-shot ResNet (see include/diffq/oneshot/resnet.h).
#include "diffq/oneshot/resnet.h"

#include <torch/torch.h>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

namespace {

struct Block : torch::nn::Module {
  OneShotConv2d conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};
  Block(int64_t in, int64_t out, int64_t stride, const OneShotResNetOptions& o) {
    auto layer = [&](int64_t cin, int64_t k, int64_t s, int64_t p) {
      return OneShotConv2dOptions(cin, out, k)
          .stride(s)
          .padding(p)
          .weight_candidates(o.candidates())
          .activation_candidates(o.candidates())
          .bn_by_weight_bits(o.bn_by_weight_bits());
    };
    conv1 = register_module("conv1", OneShotConv2d(layer(in, 3, stride, 1)));
    conv2 = register_module("conv2", OneShotConv2d(layer(out, 3, 1, 1)));
    if (stride != 1 || in != out) shortcut = register_module("shortcut", OneShotConv2d(layer(in, 1, stride, 0)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = conv2->forward(torch::relu(conv1->forward(x)));
    return torch::relu(y + (shortcut ? shortcut->forward(x) : x));
  }
};

struct Net : models::Model {
  OneShotConv2d stem{nullptr};
  std::vector<std::shared_ptr<Block>> blocks;
  OneShotLinear classifier{nullptr};
  explicit Net(const OneShotResNetOptions& o) {
    DIFFQ_CHECK(o.channels().size() == 3, "the one-shot ResNet has 3 stages, got ", o.channels().size(),
                " channel counts");
    DIFFQ_CHECK(o.blocks() >= 1 && o.in_channels() >= 1 && o.classes() >= 2, "bad one-shot ResNet shape");
    for (auto c : o.channels()) DIFFQ_CHECK(c >= 1, "stage channels must be positive, got ", c);
    const std::vector<int> fixed{o.fixed_bits()};
    // The stem's input is float (the quantizer sets its activation bits to 0).
    stem = register_module("stem", OneShotConv2d(OneShotConv2dOptions(o.in_channels(), o.channels()[0], 3)
                                                     .padding(1)
                                                     .weight_candidates(fixed)
                                                     .activation_candidates(fixed)
                                                     .signed_input(true)));
    int64_t in = o.channels()[0];
    for (int s = 0; s < 3; ++s) {
      for (int64_t b = 0; b < o.blocks(); ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        blocks.push_back(register_module("stage" + std::to_string(s + 1) + "_" + std::to_string(b),
                                         std::make_shared<Block>(in, o.channels()[s], stride, o)));
        in = o.channels()[s];
      }
    }
    classifier = register_module("classifier",
                                 OneShotLinear(OneShotLinearOptions(in, o.classes()).activation_candidates(fixed)));
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem->forward(x));
    for (auto& b : blocks) x = b->forward(x);
    return classifier->forward(x.mean({2, 3}));
  }
};

}  // namespace

std::shared_ptr<models::Model> make_oneshot_resnet(const OneShotResNetOptions& options) {
  return std::make_shared<Net>(options);
}

}  // namespace oneshot
}  // namespace diffq
