#pragma once
// The message of an exception from LibTorch without its backtrace (private).
#include <exception>
#include <string>

#include <c10/util/Exception.h>

namespace diffq {
namespace train {

/// The first line of `e`'s message, without LibTorch's "Exception raised
/// from ..." backtrace.
inline std::string torch_message(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  const size_t end = text.find('\n');
  if (end != std::string::npos) text.resize(end);
  return text;
}

}  // namespace train
}  // namespace diffq
