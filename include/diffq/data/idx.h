#pragma once
/// \file idx.h
/// Reader of the IDX format (MNIST, Fashion-MNIST), plain or gzip-compressed.

#include <cstdint>
#include <string>
#include <vector>

namespace diffq {
namespace data {

/// An IDX array of unsigned bytes.
struct IdxArray {
  /// Dimensions, outermost first.
  std::vector<int64_t> shape;
  /// Values in row-major order.
  std::vector<uint8_t> values;
};

/// Reads an IDX file of unsigned bytes (type 0x08), gzip-compressed or not.
/// Throws `diffq::Error` naming the path and the problem (missing file,
/// bad magic, unsupported type, truncated data, trailing bytes).
IdxArray read_idx(const std::string& path);

/// Decodes IDX bytes already in memory (used by `read_idx`; `what` names
/// the source in errors).
IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& what);

/// Reads a whole file, decompressing it when it is gzip; throws naming the path.
std::vector<uint8_t> read_maybe_gzip(const std::string& path);

}  // namespace data
}  // namespace diffq
