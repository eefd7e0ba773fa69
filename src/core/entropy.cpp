// Static rANS coding of level streams and zstd wrappers (docs/format.md, 4).
#include "diffq/entropy.h"

#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <numeric>

#include "diffq/error.h"

namespace diffq {
namespace {

constexpr uint32_t kStateLow = 1u << 23;  // L: the state lives in [L, 256 L)

void put_u32(std::vector<uint8_t>& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// Scales a histogram to frequencies summing to 2^scale_bits, keeping every
// occurring symbol at frequency >= 1.
std::vector<uint32_t> normalize(const std::vector<uint64_t>& histogram, uint64_t total,
                                int scale_bits) {
  const uint64_t target = uint64_t{1} << scale_bits;
  std::vector<uint32_t> freq(histogram.size(), 0);
  int64_t sum = 0;
  for (size_t s = 0; s < histogram.size(); ++s) {
    if (histogram[s] == 0) continue;
    const double scaled = static_cast<double>(histogram[s]) * static_cast<double>(target) /
                          static_cast<double>(total);
    freq[s] = static_cast<uint32_t>(std::max<double>(1.0, std::floor(scaled + 0.5)));
    sum += freq[s];
  }
  int64_t diff = static_cast<int64_t>(target) - sum;
  std::vector<uint32_t> order(histogram.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return freq[a] > freq[b]; });
  if (diff > 0) freq[order[0]] += static_cast<uint32_t>(diff);
  while (diff < 0) {
    for (uint32_t s : order) {
      if (freq[s] <= 1) break;  // sorted: the rest are at most 1
      --freq[s];
      if (++diff == 0) break;
    }
  }
  return freq;
}

}  // namespace

std::vector<uint8_t> rans_encode(const uint16_t* values, size_t count, int bits) {
  DIFFQ_CHECK(bits >= 1 && bits <= 16, "rANS: bit-width ", bits, " outside 1..16");
  std::vector<uint8_t> out;
  if (count == 0) {
    put_u32(out, 12);
    put_u32(out, 0);
    put_u32(out, 0);
    put_u32(out, 0);
    return out;
  }
  std::vector<uint64_t> histogram(size_t{1} << bits, 0);
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t alphabet = 0;
  for (size_t i = 0; i < count; ++i) {
    const uint32_t v = values[i] & mask;
    ++histogram[v];
    alphabet = std::max(alphabet, v + 1);
  }
  histogram.resize(alphabet);
  const int scale_bits = alphabet <= 1024 ? 12 : 16;
  const std::vector<uint32_t> freq = normalize(histogram, count, scale_bits);
  std::vector<uint32_t> cum(alphabet + 1, 0);
  for (uint32_t s = 0; s < alphabet; ++s) cum[s + 1] = cum[s] + freq[s];

  put_u32(out, static_cast<uint32_t>(scale_bits));
  put_u32(out, alphabet);
  // Sparse table: (gap, frequency) varint pairs for the symbols present.
  std::vector<uint8_t> table;
  const auto put_varint = [&](uint32_t v) {
    do {
      table.push_back(static_cast<uint8_t>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
      v >>= 7;
    } while (v != 0);
  };
  uint32_t next = 0;
  for (uint32_t s = 0; s < alphabet; ++s) {
    if (freq[s] == 0) continue;
    put_varint(s - next);
    put_varint(freq[s]);
    next = s + 1;
  }
  put_u32(out, static_cast<uint32_t>(table.size()));
  out.insert(out.end(), table.begin(), table.end());

  std::vector<uint8_t> emitted;
  emitted.reserve(count / 2 + 16);
  uint32_t state = kStateLow;
  for (size_t i = count; i-- > 0;) {
    const uint32_t s = values[i] & mask;
    const uint32_t f = freq[s];
    const uint64_t limit = static_cast<uint64_t>((kStateLow >> scale_bits) << 8) * f;
    while (state >= limit) {
      emitted.push_back(static_cast<uint8_t>(state & 0xff));
      state >>= 8;
    }
    state = ((state / f) << scale_bits) + (state % f) + cum[s];
  }
  const size_t data_length = 4 + emitted.size();
  DIFFQ_CHECK(data_length <= 0xffffffffu, "rANS: stream of ", count, " values is too long");
  put_u32(out, static_cast<uint32_t>(data_length));
  put_u32(out, state);
  out.insert(out.end(), emitted.rbegin(), emitted.rend());
  return out;
}

// The little-endian u32 at `pos` of a rANS stream of `size` bytes (`pos`
// advanced); throws naming `what` when the stream is too short.
static uint32_t read_stream_u32(const uint8_t* data, size_t size, size_t& pos, const char* what) {
  DIFFQ_CHECK(size - pos >= 4, "rANS: truncated ", what, " at byte ", pos);
  const uint32_t v = get_u32(data + pos);
  pos += 4;
  return v;
}

uint64_t rans_capacity(const uint8_t* data, size_t size, size_t& stream_size) {
  size_t pos = 0;
  const auto read_u32 = [&](const char* what) { return read_stream_u32(data, size, pos, what); };
  const uint32_t scale_bits = read_u32("scale");
  DIFFQ_CHECK(scale_bits >= 12 && scale_bits <= 16, "rANS: scale ", scale_bits, " outside 12..16");
  read_u32("alphabet");
  const uint32_t table_length = read_u32("table length");
  DIFFQ_CHECK(table_length <= size - pos, "rANS: truncated frequency table");
  // The largest frequency of the (gap, frequency) varint pairs.
  uint64_t largest = 0;
  for (size_t t = 0, field = 0; t < table_length; ++field) {
    uint32_t v = 0;
    for (int shift = 0;; shift += 7) {
      DIFFQ_CHECK(shift < 21 && t < table_length, "rANS: malformed frequency table");
      const uint8_t byte = data[pos + t++];
      v |= static_cast<uint32_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) break;
    }
    if (field % 2 == 1) largest = std::max<uint64_t>(largest, v);
  }
  pos += table_length;
  const uint32_t data_length = read_u32("data length");
  DIFFQ_CHECK(data_length <= size - pos, "rANS: truncated data (", data_length, " bytes declared, ",
              size - pos, " available)");
  stream_size = pos + data_length;
  if (largest == 0) return 0;
  const double total = double(uint64_t{1} << scale_bits);
  const double cost = std::log2(total / double(largest)) - std::log2(1.0 + total / double(kStateLow));
  if (!(cost > 0)) return UINT64_MAX;
  const double most = 8.0 * double(data_length) / cost + 1.0;
  return most >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(most);
}

size_t rans_decode(const uint8_t* data, size_t size, size_t count, int bits, uint16_t* out) {
  DIFFQ_CHECK(bits >= 1 && bits <= 16, "rANS: bit-width ", bits, " outside 1..16");
  size_t pos = 0;
  const auto read_u32 = [&](const char* what) { return read_stream_u32(data, size, pos, what); };
  const uint32_t scale_bits = read_u32("scale");
  DIFFQ_CHECK(scale_bits >= 12 && scale_bits <= 16, "rANS: scale ", scale_bits,
              " outside 12..16");
  const uint32_t alphabet = read_u32("alphabet");
  DIFFQ_CHECK(alphabet <= (1u << bits), "rANS: alphabet of ", alphabet,
              " symbols exceeds ", bits, " bits");
  DIFFQ_CHECK((alphabet == 0) == (count == 0), "rANS: alphabet of ", alphabet, " symbols for ",
              count, " values");
  const uint32_t table_length = read_u32("table length");
  DIFFQ_CHECK(table_length <= size - pos, "rANS: truncated frequency table");
  const uint8_t* table = data + pos;
  pos += table_length;
  const uint32_t total = 1u << scale_bits;
  std::vector<uint32_t> freq(alphabet, 0), cum(alphabet + 1, 0);
  size_t t = 0;
  const auto get_varint = [&]() {
    uint32_t v = 0;
    for (int shift = 0;; shift += 7) {
      DIFFQ_CHECK(shift < 21, "rANS: table varint longer than 3 bytes");
      DIFFQ_CHECK(t < table_length, "rANS: truncated frequency table");
      const uint8_t byte = table[t++];
      v |= static_cast<uint32_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return v;
    }
  };
  uint64_t next = 0, sum = 0;
  while (t < table_length) {
    const uint64_t symbol = next + get_varint();
    DIFFQ_CHECK(symbol < alphabet, "rANS: table symbol ", symbol, " outside the alphabet of ",
                alphabet);
    const uint32_t f = get_varint();
    DIFFQ_CHECK(f >= 1, "rANS: zero frequency listed for symbol ", symbol);
    sum += f;
    DIFFQ_CHECK(sum <= total, "rANS: frequencies exceed ", total);
    freq[symbol] = f;
    next = symbol + 1;
  }
  DIFFQ_CHECK(next == alphabet, "rANS: table ends at symbol ", next, ", alphabet has ", alphabet);
  for (uint32_t s = 0; s < alphabet; ++s) cum[s + 1] = cum[s] + freq[s];
  DIFFQ_CHECK(count == 0 || cum[alphabet] == total, "rANS: frequencies sum to ", cum[alphabet],
              ", expected ", total);
  const uint32_t data_length = read_u32("data length");
  DIFFQ_CHECK(data_length <= size - pos, "rANS: truncated data (", data_length,
              " bytes declared, ", size - pos, " available)");
  if (count == 0) {
    DIFFQ_CHECK(data_length == 0 && table_length == 0, "rANS: empty stream with data");
    return pos;
  }
  DIFFQ_CHECK(data_length >= 4, "rANS: data shorter than its state");
  const uint8_t* bytes = data + pos;
  const uint8_t* end = bytes + data_length;
  std::vector<uint16_t> symbol_of_slot(total);
  for (uint32_t s = 0; s < alphabet; ++s) {
    std::fill(symbol_of_slot.begin() + cum[s], symbol_of_slot.begin() + cum[s + 1],
              static_cast<uint16_t>(s));
  }
  uint32_t state = get_u32(bytes);
  bytes += 4;
  const uint32_t slot_mask = total - 1;
  for (size_t i = 0; i < count; ++i) {
    const uint32_t slot = state & slot_mask;
    const uint16_t s = symbol_of_slot[slot];
    out[i] = s;
    state = freq[s] * (state >> scale_bits) + slot - cum[s];
    while (state < kStateLow) {
      DIFFQ_CHECK(bytes < end, "rANS: data ends before value ", i, " of ", count);
      state = (state << 8) | *bytes++;
    }
  }
  DIFFQ_CHECK(bytes == end, "rANS: ", end - bytes, " data bytes left after the last value");
  DIFFQ_CHECK(state == kStateLow, "rANS: final state mismatch (corrupt data)");
  return pos + data_length;
}

std::vector<uint8_t> zstd_compress(const uint8_t* data, size_t size, int level) {
  std::vector<uint8_t> out(ZSTD_compressBound(size));
  const size_t written = ZSTD_compress(out.data(), out.size(), data, size, level);
  DIFFQ_CHECK(!ZSTD_isError(written), "zstd compression failed: ", ZSTD_getErrorName(written));
  out.resize(written);
  return out;
}

void zstd_check_frame(const uint8_t* data, size_t size, size_t expected_size) {
  const unsigned long long declared = ZSTD_getFrameContentSize(data, size);
  DIFFQ_CHECK(declared != ZSTD_CONTENTSIZE_ERROR, "zstd: not a valid frame");
  DIFFQ_CHECK(declared != ZSTD_CONTENTSIZE_UNKNOWN, "zstd: frame does not declare its size");
  DIFFQ_CHECK(declared == expected_size, "zstd: frame declares ", declared, " bytes, expected ",
              expected_size);
  const size_t frame = ZSTD_findFrameCompressedSize(data, size);
  DIFFQ_CHECK(!ZSTD_isError(frame), "zstd: truncated or invalid frame: ",
              ZSTD_getErrorName(frame));
  DIFFQ_CHECK(frame == size, "zstd: ", size - frame, " bytes after the frame");
  // Every block has a 3-byte header and decodes to at most 128 KiB (an RLE
  // block: one more byte), so a frame of `size` bytes holds at most this.
  const uint64_t most = (uint64_t(size) / 4 + 1) * (uint64_t{1} << 17);
  DIFFQ_CHECK(expected_size <= most, "zstd: a frame of ", size, " bytes cannot hold the ", expected_size,
              " bytes it declares");
}

void zstd_decompress(const uint8_t* data, size_t size, uint8_t* out, size_t expected_size) {
  zstd_check_frame(data, size, expected_size);
  const size_t got = ZSTD_decompress(out, expected_size, data, size);
  DIFFQ_CHECK(!ZSTD_isError(got), "zstd: corrupt frame: ", ZSTD_getErrorName(got));
  DIFFQ_CHECK(got == expected_size, "zstd: frame holds ", got, " bytes, expected ",
              expected_size);
}

double empirical_entropy(const uint16_t* values, size_t count) {
  if (count == 0) return 0.0;
  std::vector<uint64_t> histogram(65536, 0);
  for (size_t i = 0; i < count; ++i) ++histogram[values[i]];
  double bits = 0.0;
  for (uint64_t h : histogram) {
    if (h == 0) continue;
    const double p = static_cast<double>(h) / static_cast<double>(count);
    bits -= p * std::log2(p);
  }
  return bits;
}

}  // namespace diffq
