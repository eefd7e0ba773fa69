// Fashion-MNIST loading.
#include "diffq/data/fashion_mnist.h"

#include <torch/torch.h>

#include "diffq/data/idx.h"
#include "diffq/error.h"

namespace diffq {
namespace data {

ImageSet load_fashion_mnist(const std::string& dir, const std::string& split, int64_t limit) {
  DIFFQ_CHECK(split == "train" || split == "t10k", "unknown Fashion-MNIST split '", split,
              "' (train or t10k)");
  const auto images = read_idx(dir + "/" + split + "-images-idx3-ubyte.gz");
  const auto labels = read_idx(dir + "/" + split + "-labels-idx1-ubyte.gz");
  DIFFQ_CHECK(images.shape.size() == 3 && labels.shape.size() == 1 &&
                  images.shape[0] == labels.shape[0],
              "Fashion-MNIST files in '", dir, "' do not match (images vs labels)");
  int64_t n = images.shape[0];
  if (limit > 0 && limit < n) n = limit;
  const int64_t h = images.shape[1], w = images.shape[2];
  ImageSet out;
  out.images = torch::from_blob(const_cast<uint8_t*>(images.values.data()), {n, 1, h, w},
                                torch::kUInt8)
                   .to(torch::kFloat32)
                   .div_(255.0)
                   .sub_(0.2860)
                   .div_(0.3530);
  out.labels = torch::from_blob(const_cast<uint8_t*>(labels.values.data()), {n}, torch::kUInt8)
                   .to(torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    DIFFQ_CHECK(labels.values[i] < 10, "Fashion-MNIST label ", int(labels.values[i]),
                " at index ", i, " is not a class 0..9");
  }
  return out;
}

}  // namespace data
}  // namespace diffq
