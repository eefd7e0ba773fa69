// Train any LibTorch model with DiffQ through the training library, and write
// its compressed model file: `train_any_model OUT_DIR`.
#include <diffq/data/fashion_mnist.h>
#include <diffq/train/trainer.h>
#include <torch/torch.h>

#include <cstdio>

struct NetImpl : torch::nn::Module {  // your model: any module with forward(Tensor)
  torch::nn::Conv2d conv{register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))};
  torch::nn::Linear fc{register_module("fc", torch::nn::Linear(16 * 14 * 14, 10))};
  torch::Tensor forward(torch::Tensor x) { return fc(torch::max_pool2d(torch::relu(conv(x)), 2).flatten(1)); }
};
TORCH_MODULE(Net);

int main(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: train_any_model OUT_DIR\n"), 2;
  auto data = diffq::data::load_fashion_mnist(diffq::data::kFashionMnistDir, "train", 4000);
  Net net;
  diffq::train::MethodOptions diffq_options;
  diffq_options.penalty = 5;  // λ per MiB of model size
  diffq::train::Trainer trainer(net, diffq::train::TrainerOptions().method("diffq").method_options(diffq_options));
  trainer.fit(data.images, data.labels, /*epochs=*/2, /*batch_size=*/64);
  const std::string path = std::string(argv[1]) + "/net.diffq";
  const auto bytes = trainer.save(path);
  std::printf("wrote %s: %llu bytes, %.2f mean bits (float32: %.0f bytes)\n", path.c_str(),
              (unsigned long long)bytes, trainer.mean_bits(), trainer.quantizer()->float_model_size() * 1048576.0);
}
