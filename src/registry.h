#pragma once
// Process-wide record of the tensors owned by live quantizers, so that a
// second quantizer on the same model is refused.
#include <string>
#include <vector>

namespace diffq {
namespace detail {

/// Claims the tensors (by TensorImpl address) for a new quantizer. Throws
/// `diffq::Error` naming the first tensor already claimed; claims nothing then.
void claim_tensors(const std::vector<const void*>& tensors, const std::vector<std::string>& names);
/// Releases tensors claimed by a quantizer that is being destroyed.
void release_tensors(const std::vector<const void*>& tensors);

}  // namespace detail
}  // namespace diffq
