#pragma once
/// \file fashion_mnist.h
/// Fashion-MNIST as torch tensors (Debian package dataset-fashion-mnist).

#include <string>

#include <torch/types.h>

namespace diffq {
namespace data {

/// Where Debian installs Fashion-MNIST.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Images and labels of one split.
struct ImageSet {
  /// float32 [N, 1, 28, 28], normalised to mean 0, std 1 (Fashion-MNIST's
  /// pixel mean 0.2860 and std 0.3530).
  torch::Tensor images;
  /// int64 [N], classes 0..9.
  torch::Tensor labels;
};

/// Loads the "train" or "t10k" split from `dir`, keeping at most `limit`
/// samples (0 = all). Throws `diffq::Error` naming the unreadable path.
ImageSet load_fashion_mnist(const std::string& dir, const std::string& split, int64_t limit = 0);

}  // namespace data
}  // namespace diffq
