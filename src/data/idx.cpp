// IDX reader (gzip through zlib).
#include "diffq/data/idx.h"

#include <zlib.h>

#include <cstdio>
#include <limits>

#include "diffq/error.h"
#include "diffq/regular_file.h"

namespace diffq {
namespace data {

std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  require_regular_file(path, "the data file");
  std::FILE* probe = std::fopen(path.c_str(), "rb");
  DIFFQ_CHECK(probe != nullptr, "cannot open '", path, "' (missing or unreadable)");
  std::fclose(probe);
  gzFile file = gzopen(path.c_str(), "rb");  // reads plain files transparently
  DIFFQ_CHECK(file != nullptr, "cannot open '", path, "'");
  std::vector<uint8_t> out;
  std::vector<uint8_t> buffer(1 << 20);
  while (true) {
    const int n = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()));
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      std::string text = message ? message : "unknown error";
      gzclose(file);
      throw Error(detail::concat("cannot read '", path, "': ", text));
    }
    if (n == 0) break;
    out.insert(out.end(), buffer.begin(), buffer.begin() + n);
  }
  const int eof_code = gzclose(file);
  DIFFQ_CHECK(eof_code == Z_OK, "cannot read '", path, "': truncated or corrupt gzip stream");
  return out;
}

IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& what) {
  DIFFQ_CHECK(bytes.size() >= 4, what, ": too short for an IDX header (", bytes.size(),
              " bytes)");
  DIFFQ_CHECK(bytes[0] == 0 && bytes[1] == 0, what, ": bad IDX magic");
  DIFFQ_CHECK(bytes[2] == 0x08, what, ": IDX element type 0x", std::hex, int(bytes[2]),
              " is not unsigned byte (0x08)");
  const int dims = bytes[3];
  DIFFQ_CHECK(dims >= 1 && dims <= 8, what, ": IDX rank ", dims, " outside 1..8");
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  DIFFQ_CHECK(bytes.size() >= header, what, ": truncated IDX header");
  IdxArray out;
  uint64_t count = 1;
  for (int d = 0; d < dims; ++d) {
    const size_t o = 4 + 4 * static_cast<size_t>(d);
    const uint32_t size = (uint32_t(bytes[o]) << 24) | (uint32_t(bytes[o + 1]) << 16) |
                          (uint32_t(bytes[o + 2]) << 8) | uint32_t(bytes[o + 3]);
    DIFFQ_CHECK(size == 0 || count <= std::numeric_limits<uint32_t>::max() / size * 16, what,
                ": IDX dimensions overflow");
    count *= size;
    out.shape.push_back(size);
  }
  DIFFQ_CHECK(bytes.size() - header >= count, what, ": truncated IDX data (", count,
              " values expected, ", bytes.size() - header, " present)");
  DIFFQ_CHECK(bytes.size() - header == count, what, ": ", bytes.size() - header - count,
              " unexpected trailing bytes");
  out.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return out;
}

IdxArray read_idx(const std::string& path) { return parse_idx(read_maybe_gzip(path), path); }

}  // namespace data
}  // namespace diffq
