#pragma once
/// \file resnet.h
/// A ResNet-style network for one-shot mixed-precision quantization, small
/// enough for two CPU cores: a fixed stem (W8, float input), three stages of
/// basic blocks whose every convolution is a searchable `OneShotConv2d`
/// (activation quantizer, convolution, switchable BatchNorm), average
/// pooling and a fixed W8A8 classifier.

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/arg.h>

#include "diffq/models/models.h"
#include "diffq/oneshot/modules.h"

namespace diffq {
namespace oneshot {

/// Options of `make_oneshot_resnet`.
struct OneShotResNetOptions {
  /// Input channels (1 for Fashion-MNIST).
  TORCH_ARG(int64_t, in_channels) = 1;
  /// Channels of the three stages.
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{8, 16, 32};
  /// Basic blocks per stage.
  TORCH_ARG(int64_t, blocks) = 2;
  /// Classes.
  TORCH_ARG(int64_t, classes) = 10;
  /// Candidate bit-widths of the searchable layers (weights and activations).
  TORCH_ARG(std::vector<int>, candidates) = default_candidates();
  /// Bits of the fixed stem weights and of the classifier.
  TORCH_ARG(int, fixed_bits) = 8;
  /// One BatchNorm per weight bit-width instead of per bit pair.
  TORCH_ARG(bool, bn_by_weight_bits) = false;
};

/// Builds the network (initialised from torch's global generator). Its
/// layers, in quantizer order: "stem", then "stage<s>_<b>.conv1",
/// ".conv2" and ".shortcut" where the shape changes, then "classifier".
std::shared_ptr<models::Model> make_oneshot_resnet(const OneShotResNetOptions& options = {});

}  // namespace oneshot
}  // namespace diffq
