#pragma once
/// \file error.h
/// The library's single exception type and its checking macro.
///
/// Every user error (bad option, wrong shape, corrupt file, misuse of the
/// training API) is reported as `diffq::Error`, whose message names the
/// problem. The header does not include torch.

#include <sstream>
#include <stdexcept>
#include <string>

namespace diffq {

/// The exception thrown for every user-facing error of the library.
class Error : public std::runtime_error {
 public:
  /// Builds an error carrying `message`.
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
/// Concatenates the streamable arguments into one string.
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (void)std::initializer_list<int>{((out << args), 0)...};
  return out.str();
}
}  // namespace detail

}  // namespace diffq

/// Throws `diffq::Error` with the concatenated message when `cond` is false.
#define DIFFQ_CHECK(cond, ...)                                      \
  do {                                                              \
    if (!(cond)) {                                                  \
      throw ::diffq::Error(::diffq::detail::concat(__VA_ARGS__));   \
    }                                                               \
  } while (0)
