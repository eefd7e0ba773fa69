// Consumer of the installed package: quantizes a layer and checks its size,
// then trains a tiny model with DiffQ through the training library and
// restores its model file into a fresh copy.
#include <diffq/diffq.h>
#include <diffq/train/trainer.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>

int main() {
  torch::nn::Linear layer(1024, 512);
  diffq::DiffQuantizer quantizer(layer, diffq::DiffQOptions().group_size(16));
  const double size = quantizer.true_model_size();
  std::cout << "consumer: diffq " << diffq::kVersion << ", Linear(1024, 512) at 8 bits: " << size << " MiB\n";
  if (std::fabs(size - 0.513680458) >= 1e-9) return 1;

  torch::manual_seed(0);
  torch::nn::Linear net(64, 4);
  auto x = torch::randn({256, 64});
  auto y = x.slice(1, 0, 4).argmax(1);  // a learnable rule
  diffq::train::MethodOptions options;
  options.min_size = 0;
  options.group_size = 4;
  diffq::train::Trainer trainer(net, diffq::train::TrainerOptions().method("diffq").method_options(options).lr(1e-2));
  trainer.fit(x, y, /*epochs=*/5, /*batch_size=*/32);
  const auto state = trainer.quantized_state();
  torch::nn::Linear fresh(64, 4);
  diffq::restore(fresh, state);
  auto scope = trainer.quantizer()->quantized_evaluation();
  const bool same = torch::equal(fresh->forward(x), net->forward(x));
  const double accuracy = net->forward(x).argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
  std::cout << "consumer: trained " << trainer.global_step() << " steps, accuracy " << accuracy
            << ", restored copy identical: " << same << "\n";
  return same && accuracy > 0.5 ? 0 : 1;
}
