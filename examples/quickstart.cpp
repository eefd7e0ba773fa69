// Quick start: train a small CNN on Fashion-MNIST with DiffQ, then compare
// accuracy and size of the float model and of its true quantized version.
#include <diffq/data/fashion_mnist.h>
#include <diffq/diffq.h>
#include <torch/torch.h>

#include <cstdio>

struct NetImpl : torch::nn::Module {
  torch::nn::Conv2d conv1{register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))};
  torch::nn::Conv2d conv2{register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))};
  torch::nn::Linear fc1{register_module("fc1", torch::nn::Linear(32 * 7 * 7, 128))};
  torch::nn::Linear fc2{register_module("fc2", torch::nn::Linear(128, 10))};
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    return fc2(torch::relu(fc1(x.flatten(1))));
  }
};
TORCH_MODULE(Net);

double accuracy(Net& net, const diffq::data::ImageSet& test) {
  torch::NoGradGuard no_grad;
  net->eval();
  auto predicted = net->forward(test.images).argmax(1);
  net->train();
  return predicted.eq(test.labels).to(torch::kFloat64).mean().item<double>() * 100.0;
}

int main() {
  torch::manual_seed(0);
  torch::set_num_threads(1);
  auto train = diffq::data::load_fashion_mnist(diffq::data::kFashionMnistDir, "train", 6000);
  auto test = diffq::data::load_fashion_mnist(diffq::data::kFashionMnistDir, "t10k", 2000);

  Net net;
  diffq::DiffQuantizer quantizer(net, diffq::DiffQOptions().group_size(8));
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-3));
  quantizer.add_to_optimizer(optimizer, /*lr=*/2e-2);  // the bits learn faster
  const double penalty = 5.0;                          // λ, per MiB

  for (int epoch = 0; epoch < 3; ++epoch) {
    auto order = torch::randperm(train.images.size(0));
    for (int64_t i = 0; i + 64 <= order.size(0); i += 64) {
      auto index = order.slice(0, i, i + 64);
      optimizer.zero_grad();
      auto step = quantizer.training_step();  // noisy weights until backward
      auto logits = net->forward(train.images.index_select(0, index));
      auto loss = torch::cross_entropy_loss(logits, train.labels.index_select(0, index)) +
                  penalty * quantizer.model_size();
      loss.backward();  // float weights are back; the bits got their gradient
      step.finish();
      optimizer.step();
    }
    std::printf("epoch %d: float accuracy %.2f %%, mean bits %.2f\n", epoch + 1,
                accuracy(net, test), quantizer.mean_bits());
  }
  const double float_accuracy = accuracy(net, test);
  double quantized_accuracy;
  {
    auto scope = quantizer.quantized_evaluation();  // true quantized weights
    quantized_accuracy = accuracy(net, test);
  }
  std::printf("\n%-10s %12s %12s\n", "model", "size (MiB)", "accuracy");
  std::printf("%-10s %12.4f %11.2f%%\n", "float32", quantizer.float_model_size(), float_accuracy);
  std::printf("%-10s %12.4f %11.2f%%\n", "DiffQ", quantizer.true_model_size(), quantized_accuracy);
  return 0;
}
