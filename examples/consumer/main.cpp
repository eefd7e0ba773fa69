// Consumer of the installed package: quantizes a layer and checks its size.
#include <diffq/diffq.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>

int main() {
  torch::nn::Linear layer(1024, 512);
  diffq::DiffQuantizer quantizer(layer, diffq::DiffQOptions().group_size(16));
  const double size = quantizer.true_model_size();
  std::cout << "consumer: diffq " << diffq::kVersion << ", Linear(1024, 512) at 8 bits: " << size
            << " MiB\n";
  return std::fabs(size - 0.513680458) < 1e-9 ? 0 : 1;
}
