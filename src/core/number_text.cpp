// Numbers as text, exactly (see include/diffq/number_text.h).
#include "diffq/number_text.h"

#include <charconv>
#include <cmath>
#include <system_error>

#include "diffq/error.h"

namespace diffq {

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char text[64];
  const auto result = std::to_chars(text, text + sizeof(text), value);
  return std::string(text, result.ptr);
}

double parse_number(const std::string& text, const std::string& what) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, value);
  if (result.ec == std::errc() && result.ptr == end && !text.empty()) return value;
  if (text == "nan") return std::nan("");
  if (text == "inf") return INFINITY;
  if (text == "-inf") return -INFINITY;
  throw Error(detail::concat(what, ": '", text, "' is not a number"));
}

int64_t parse_integer(const std::string& text, const std::string& what) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, value);
  DIFFQ_CHECK(result.ec != std::errc::result_out_of_range, what, ": '", text,
              "' is out of the 64-bit range");
  DIFFQ_CHECK(result.ec == std::errc() && result.ptr == end && !text.empty(), what, ": '", text,
              "' is not an integer");
  return value;
}

}  // namespace diffq
