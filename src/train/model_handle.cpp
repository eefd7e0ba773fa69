// Handles on TorchScript modules (see include/diffq/train/model_handle.h).
#include "diffq/train/model_handle.h"

#include <torch/script.h>

#include "diffq/error.h"

namespace diffq {
namespace train {

ModelHandle model_handle(torch::jit::Module& module) {
  torch::jit::Module* m = &module;
  return ModelHandle{ModelRef(module),
                     [m](const torch::Tensor& x) {
                       auto out = m->forward({x});
                       DIFFQ_CHECK(out.isTensor(), "the TorchScript model's forward must return one tensor, not ",
                                   out.tagKind());
                       return out.toTensor();
                     },
                     [m](bool on) { m->train(on); }, [m] { return m->is_training(); }};
}

}  // namespace train
}  // namespace diffq
