// Parameter and buffer enumeration for C++ frontend and TorchScript modules.
#include "diffq/model_ref.h"

#include <torch/script.h>

#include "diffq/error.h"

namespace diffq {

std::vector<NamedParameter> ModelRef::parameters() const {
  std::vector<NamedParameter> out;
  if (nn_ != nullptr) {
    // named_parameters(recurse) visits the module itself, then its children
    // depth first, each module's own parameters in registration order, and
    // does not remove duplicates.
    for (const auto& item : nn_->named_parameters(/*recurse=*/true)) {
      out.push_back({item.key(), item.value()});
    }
  } else {
    DIFFQ_CHECK(jit_ != nullptr, "ModelRef refers to no module");
    for (const auto& item : jit_->named_parameters(/*recurse=*/true)) {
      out.push_back({item.name, item.value});
    }
  }
  return out;
}

std::vector<NamedBuffer> ModelRef::buffers() const {
  std::vector<NamedBuffer> out;
  if (nn_ != nullptr) {
    // Same traversal as named_parameters (module, then children depth
    // first). The C++ frontend registers undefined tensors for BatchNorm
    // without running statistics: they hold nothing and are skipped.
    for (const auto& item : nn_->named_buffers(/*recurse=*/true)) {
      if (item.value().defined()) out.push_back({item.key(), item.value()});
    }
  } else {
    DIFFQ_CHECK(jit_ != nullptr, "ModelRef refers to no module");
    // Attributes flagged as buffers in the class type whose declared type
    // is Tensor (a buffer that was None when scripted is not listed).
    for (const auto& item : jit_->named_buffers(/*recurse=*/true)) {
      if (item.value.defined()) out.push_back({item.name, item.value});
    }
  }
  return out;
}

}  // namespace diffq
