#pragma once
/// \file number_text.h
/// Numbers as text, exactly: what the model file's options, the run records
/// and the command line use to write and read numbers (torch-free).

#include <cstdint>
#include <string>

namespace diffq {

/// The shortest decimal text that reads back to exactly `value`
/// ("0.1", "1e-07", "0.3333333333333333"); "nan", "inf", "-inf" otherwise.
std::string format_number(double value);

/// Parses the whole of `text` as a double. Throws `diffq::Error` naming
/// `what` when `text` is empty, not a number, or has trailing characters.
double parse_number(const std::string& text, const std::string& what);

/// Parses the whole of `text` as a signed 64-bit integer. Throws
/// `diffq::Error` naming `what` when it is not one or is out of range.
int64_t parse_integer(const std::string& text, const std::string& what);

}  // namespace diffq
