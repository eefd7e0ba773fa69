// Tensor payloads of the model file: raw layouts per encoding and their
// entropy codings (docs/format.md, sections 3 and 4).
#include <algorithm>
#include <cstring>
#include <limits>

#include "diffq/entropy.h"
#include "diffq/packing.h"
#include "format_internal.h"

namespace diffq {
namespace detail {
namespace {

uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

void put_u32(std::vector<uint8_t>& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

template <typename T>
void append_raw(std::vector<uint8_t>& out, const std::vector<T>& values) {
  const size_t at = out.size();
  out.resize(at + values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(out.data() + at, values.data(), values.size() * sizeof(T));
}

/// One level stream of a payload.
struct Stream {
  int bits = 0;
  const uint16_t* values = nullptr;
  size_t count = 0;
};

/// A record cut into its verbatim prefix and its level streams.
struct SplitRecord {
  std::vector<uint8_t> prefix;
  std::vector<Stream> streams;
  std::vector<std::vector<uint16_t>> storage;  // gathered diffq streams
  nlohmann::json params = nlohmann::json::object();
};

SplitRecord split_record(const TensorRecord& r) {
  SplitRecord split;
  const size_t n = static_cast<size_t>(r.numel());
  switch (r.encoding) {
    case Encoding::kFloat32:
      append_raw(split.prefix, r.values_f32);
      break;
    case Encoding::kFloat16:
      append_raw(split.prefix, r.values_f16);
      break;
    case Encoding::kInteger: {
      const int width = integer_width(r.dtype);
      split.prefix.resize(r.values_i64.size() * static_cast<size_t>(width));
      uint8_t* out = split.prefix.data();
      for (int64_t v : r.values_i64) {
        for (int b = 0; b < width; ++b) *out++ = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * b));
      }
      break;
    }
    case Encoding::kPerChannelUniform:
      split.params = {{"bits", r.bits}, {"channels", r.channel_count()}};
      for (size_t c = 0; c < r.channel_min.size(); ++c) {
        put_u32(split.prefix, float_bits(r.channel_min[c]));
        put_u32(split.prefix, float_bits(r.channel_max[c]));
      }
      split.streams.push_back({r.bits, r.levels.data(), n});
      break;
    case Encoding::kUniform:
      split.params = {{"bits", r.bits}, {"min_f32", float_bits(r.min)}, {"max_f32", float_bits(r.max)}};
      split.streams.push_back({r.bits, r.levels.data(), n});
      break;
    case Encoding::kLSQ:
      split.params = {{"bits", r.bits}, {"step_f32", float_bits(r.step)}};
      split.streams.push_back({r.bits, r.levels.data(), n});
      break;
    case Encoding::kDiffQGroups: {
      int lowest = 16, highest = 1;
      for (uint8_t b : r.group_bits) {
        lowest = std::min<int>(lowest, b);
        highest = std::max<int>(highest, b);
      }
      if (r.group_bits.empty()) lowest = highest = 1;
      const int width_bits = bit_length(static_cast<uint32_t>(highest - lowest));
      std::vector<uint16_t> widths(r.group_bits.size());
      for (size_t g = 0; g < widths.size(); ++g) widths[g] = static_cast<uint16_t>(r.group_bits[g] - lowest);
      split.prefix = pack(widths, width_bits, 1);
      split.params = {{"group_size", r.group_size}, {"min_bits", r.min_bits},
                      {"min_f32", float_bits(r.min)}, {"max_f32", float_bits(r.max)},
                      {"width_offset", lowest}, {"width_bits", width_bits}};
      const size_t extent = static_cast<size_t>(r.group_extent());
      size_t per_width[17] = {};
      for (uint8_t b : r.group_bits) per_width[b] += extent;
      if (!r.group_bits.empty() && lowest == highest) {
        split.streams.push_back({lowest, r.levels.data(), n});
        break;
      }
      split.storage.resize(17);
      for (int w = 1; w <= 16; ++w) split.storage[w].reserve(per_width[w]);
      for (size_t g = 0; g < r.group_bits.size(); ++g) {
        const uint16_t* group = r.levels.data() + g * extent;
        auto& target = split.storage[r.group_bits[g]];
        target.insert(target.end(), group, group + extent);
      }
      for (int w = 1; w <= 16; ++w) {
        if (per_width[w] != 0) split.streams.push_back({w, split.storage[w].data(), per_width[w]});
      }
      break;
    }
    case Encoding::kProductQuantized: {
      const int index_bits = index_bits_for(static_cast<uint64_t>(r.num_centroids));
      append_raw(split.prefix, r.codebook);
      split.params = {{"block_size", r.block_size}, {"num_centroids", r.num_centroids},
                      {"index_bits", index_bits}};
      split.streams.push_back({index_bits, r.levels.data(), r.levels.size()});
      break;
    }
  }
  return split;
}

std::vector<uint8_t> raw_bytes(const SplitRecord& split, int threads) {
  size_t total = split.prefix.size();
  for (const auto& s : split.streams) total += packed_size(s.count, s.bits);
  std::vector<uint8_t> out(total);
  if (!split.prefix.empty()) std::memcpy(out.data(), split.prefix.data(), split.prefix.size());
  size_t at = split.prefix.size();
  for (const auto& s : split.streams) {
    pack(s.values, s.count, s.bits, out.data() + at, threads);
    at += packed_size(s.count, s.bits);
  }
  return out;
}

std::vector<uint8_t> rans_bytes(const SplitRecord& split) {
  std::vector<uint8_t> out;
  DIFFQ_CHECK(split.prefix.size() <= 0xffffffffu, "rANS prefix too long");
  put_u32(out, static_cast<uint32_t>(split.prefix.size()));
  out.insert(out.end(), split.prefix.begin(), split.prefix.end());
  for (const auto& s : split.streams) {
    if (s.bits == 0) continue;
    const std::vector<uint8_t> coded = rans_encode(s.values, s.count, s.bits);
    out.insert(out.end(), coded.begin(), coded.end());
  }
  return out;
}

uint32_t read_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

const char* coding_name(Coding coding) {
  switch (coding) {
    case Coding::kNone: return "none";
    case Coding::kZstd: return "zstd";
    case Coding::kRans: return "rans";
  }
  return "unknown";
}

bool rans_applies(Encoding encoding) {
  return encoding != Encoding::kFloat32 && encoding != Encoding::kFloat16 &&
         encoding != Encoding::kInteger;
}

int index_bits_for(uint64_t num_centroids) {
  int bits = 0;
  while ((uint64_t{1} << bits) < num_centroids) ++bits;
  return bits;
}

EncodedPayload encode_payload(const TensorRecord& record, const SaveOptions& options) {
  const SplitRecord split = split_record(record);
  EncodedPayload out;
  out.params = split.params;
  out.bytes = raw_bytes(split, options.threads());
  out.raw_length = out.bytes.size();
  const EntropyCoding wanted = options.entropy_coding();
  if (wanted == EntropyCoding::kZstd || wanted == EntropyCoding::kAuto) {
    std::vector<uint8_t> z = zstd_compress(out.bytes.data(), out.bytes.size(), options.zstd_level());
    if (wanted == EntropyCoding::kZstd || z.size() < out.bytes.size()) {
      out.bytes = std::move(z);
      out.coding = Coding::kZstd;
    }
  }
  const bool has_streams = rans_applies(record.encoding) && !split.streams.empty();
  if (has_streams && (wanted == EntropyCoding::kRans || wanted == EntropyCoding::kAuto)) {
    std::vector<uint8_t> r = rans_bytes(split);
    if (wanted == EntropyCoding::kRans || r.size() < out.bytes.size()) {
      out.bytes = std::move(r);
      out.coding = Coding::kRans;
    }
  }
  return out;
}

namespace {

/// Where the decoder reads the payload's sections from.
class SectionReader {
 public:
  SectionReader(const TensorHeader& h, const uint8_t* stored, const uint8_t* raw)
      : header_(h), stored_(stored), raw_(raw) {
    if (h.coding == Coding::kRans) {
      DIFFQ_CHECK(h.length >= 4, "tensor '", h.name, "': rANS payload shorter than its prefix length");
      prefix_length_ = read_u32(stored);
      position_ = 4;
    }
  }

  /// The `bytes` of the verbatim prefix.
  const uint8_t* prefix(uint64_t bytes) {
    if (header_.coding == Coding::kRans) {
      DIFFQ_CHECK(prefix_length_ == bytes, "tensor '", header_.name, "': rANS prefix has ",
                  prefix_length_, " bytes, expected ", bytes);
      DIFFQ_CHECK(bytes <= header_.length - position_, "tensor '", header_.name,
                  "': truncated rANS prefix");
      const uint8_t* p = stored_ + position_;
      position_ += bytes;
      return p;
    }
    DIFFQ_CHECK(bytes <= header_.raw_length, "tensor '", header_.name, "': payload of ",
                header_.raw_length, " bytes is shorter than its ", bytes, "-byte prefix");
    position_ = bytes;
    return raw_;
  }

  /// Reads the next stream of `count` values at `bits` bits into `out`.
  void stream(uint64_t count, int bits, uint16_t* out, int threads) {
    if (header_.coding == Coding::kRans) {
      if (bits == 0) {
        std::fill(out, out + count, uint16_t{0});
        return;
      }
      position_ += rans_decode(stored_ + position_, header_.length - position_, count, bits, out);
      return;
    }
    const uint64_t bytes = packed_size(count, bits);
    DIFFQ_CHECK(bytes <= header_.raw_length - position_, "tensor '", header_.name,
                "': payload too short for its level streams");
    DIFFQ_CHECK(padding_is_zero(raw_ + position_, count, bits), "tensor '", header_.name,
                "': non-zero padding bits in a packed stream");
    unpack(raw_ + position_, count, bits, out, threads);
    position_ += bytes;
  }

  /// Checks that every byte was used.
  void finish(uint64_t expected_raw_length) {
    DIFFQ_CHECK(expected_raw_length == header_.raw_length, "tensor '", header_.name,
                "': raw_length ", header_.raw_length, " does not match its shape and parameters (",
                expected_raw_length, " bytes)");
    const uint64_t end = header_.coding == Coding::kRans ? header_.length : header_.raw_length;
    DIFFQ_CHECK(position_ == end, "tensor '", header_.name, "': ", end - position_,
                " unexpected trailing payload bytes");
  }

 private:
  const TensorHeader& header_;
  const uint8_t* stored_;
  const uint8_t* raw_;
  uint64_t prefix_length_ = 0;
  uint64_t position_ = 0;
};

// Sign-extends (zero-extends for uint8 and bool) `width`-byte little-endian integers.
void read_integers(const uint8_t* bytes, uint64_t count, DType dtype, std::vector<int64_t>& out) {
  const int width = integer_width(dtype);
  const bool is_signed = integer_min(dtype) < 0;
  out.resize(count);
  for (uint64_t i = 0; i < count; ++i, bytes += width) {
    uint64_t v = 0;
    for (int b = width - 1; b >= 0; --b) v = (v << 8) | bytes[b];
    if (is_signed && width < 8 && (v >> (8 * width - 1)) != 0) v |= ~uint64_t{0} << (8 * width);
    out[i] = static_cast<int64_t>(v);
  }
}

template <typename T>
void read_values(const uint8_t* bytes, uint64_t count, std::vector<T>& out, MemoryBudget& budget,
                 const std::string& name) {
  budget.charge(count * sizeof(T), name);
  out.resize(count);
  if (count != 0) std::memcpy(out.data(), bytes, count * sizeof(T));
}

// Refuses, before anything is allocated, a rANS payload whose streams cannot
// hold the values its shape needs (see `rans_capacity`).
void check_rans_capacity(const TensorHeader& h, const uint8_t* stored) {
  uint64_t needed = h.numel;
  if (h.encoding == Encoding::kProductQuantized) needed = h.index_bits == 0 ? 0 : h.numel / h.block_size;
  uint64_t position = 4 + uint64_t{read_u32(stored)};
  DIFFQ_CHECK(position <= h.length, "tensor '", h.name, "': truncated rANS prefix");
  uint64_t capacity = 0;
  while (position < h.length && capacity < needed) {
    size_t stream_size = 0;
    const uint64_t most = rans_capacity(stored + position, h.length - position, stream_size);
    capacity = most > UINT64_MAX - capacity ? UINT64_MAX : capacity + most;
    position += stream_size;
  }
  DIFFQ_CHECK(capacity >= needed, "tensor '", h.name, "': its rANS streams (", h.length,
              " bytes) can hold at most ", capacity, " values, its shape needs ", needed);
}

}  // namespace

bool fixed_raw_length(const TensorHeader& h, uint64_t& length) {
  const uint64_t n = h.numel;
  switch (h.encoding) {
    case Encoding::kFloat32: length = checked_mul(n, 4, "payload length"); return true;
    case Encoding::kFloat16: length = checked_mul(n, 2, "payload length"); return true;
    case Encoding::kInteger:
      length = checked_mul(n, static_cast<uint64_t>(integer_width(h.dtype)), "payload length");
      return true;
    case Encoding::kUniform:
    case Encoding::kLSQ: length = packed_size(n, h.bits); return true;
    case Encoding::kPerChannelUniform:
      length = checked_add(checked_mul(h.channels, 8, "channel ranges"), packed_size(n, h.bits),
                           "payload length");
      return true;
    case Encoding::kProductQuantized:
      if (h.block_size == 0 || n % h.block_size != 0) return false;
      length = checked_add(checked_mul(checked_mul(h.num_centroids, h.block_size, "codebook"), 2,
                                       "codebook"),
                           packed_size(n / h.block_size, h.index_bits), "payload length");
      return true;
    case Encoding::kDiffQGroups:
      return false;
  }
  return false;
}

void decode_payload(const TensorHeader& h, const uint8_t* stored, TensorRecord& r,
                    MemoryBudget& budget, int threads) {
  const uint64_t n = h.numel;
  const std::string& name = h.name;
  uint64_t fixed_length = 0;
  if (fixed_raw_length(h, fixed_length)) {  // before anything is allocated
    DIFFQ_CHECK(fixed_length == h.raw_length, "tensor '", name, "': raw_length ", h.raw_length,
                " does not match its shape and parameters (", fixed_length, " bytes)");
  }
  std::vector<uint8_t> inflated;
  const uint8_t* raw = stored;
  if (h.coding == Coding::kNone) {
    DIFFQ_CHECK(h.length == h.raw_length, "tensor '", name, "': length ", h.length,
                " differs from raw_length ", h.raw_length, " with coding none");
  } else if (h.coding == Coding::kZstd) {
    zstd_check_frame(stored, h.length, h.raw_length);  // before anything is allocated
    budget.charge(h.raw_length, name);
    inflated.resize(h.raw_length);
    zstd_decompress(stored, h.length, inflated.data(), inflated.size());
    raw = inflated.data();
  }
  SectionReader reader(h, stored, raw);
  if (h.coding == Coding::kRans) check_rans_capacity(h, stored);
  uint64_t raw_length = 0;
  const auto stream_into = [&](uint64_t count, int bits, uint16_t* out) {
    raw_length = checked_add(raw_length, packed_size(count, bits), "payload length");
    reader.stream(count, bits, out, threads);
  };
  switch (h.encoding) {
    case Encoding::kFloat32: {
      raw_length = checked_mul(n, 4, "payload length");
      read_values(reader.prefix(raw_length), n, r.values_f32, budget, name);
      break;
    }
    case Encoding::kFloat16: {
      raw_length = checked_mul(n, 2, "payload length");
      read_values(reader.prefix(raw_length), n, r.values_f16, budget, name);
      break;
    }
    case Encoding::kInteger: {
      raw_length = checked_mul(n, static_cast<uint64_t>(integer_width(h.dtype)), "payload length");
      const uint8_t* bytes = reader.prefix(raw_length);
      budget.charge(checked_mul(n, 8, "integers"), name);
      read_integers(bytes, n, h.dtype, r.values_i64);
      break;
    }
    case Encoding::kPerChannelUniform: {
      r.bits = h.bits;
      raw_length = checked_mul(h.channels, 8, "channel ranges");
      const uint8_t* ranges = reader.prefix(raw_length);
      budget.charge(raw_length, name);
      r.channel_min.resize(h.channels);
      r.channel_max.resize(h.channels);
      for (uint64_t c = 0; c < h.channels; ++c) {
        r.channel_min[c] = bits_float(read_u32(ranges + 8 * c));
        r.channel_max[c] = bits_float(read_u32(ranges + 8 * c + 4));
      }
      budget.charge(checked_mul(n, 2, "levels"), name);
      r.levels.resize(n);
      stream_into(n, h.bits, r.levels.data());
      break;
    }
    case Encoding::kUniform:
    case Encoding::kLSQ: {
      r.bits = h.bits;
      if (h.encoding == Encoding::kUniform) {
        r.min = bits_float(h.min_f32);
        r.max = bits_float(h.max_f32);
      } else {
        r.step = bits_float(h.step_f32);
      }
      reader.prefix(0);
      budget.charge(checked_mul(n, 2, "levels"), name);
      r.levels.resize(n);
      stream_into(n, h.bits, r.levels.data());
      break;
    }
    case Encoding::kDiffQGroups: {
      r.group_size = static_cast<int64_t>(h.group_size);
      r.min_bits = h.min_bits;
      r.min = bits_float(h.min_f32);
      r.max = bits_float(h.max_f32);
      DIFFQ_CHECK(h.group_size == 0 || n % h.group_size == 0, "tensor '", name, "': group size ",
                  h.group_size, " does not divide ", n, " elements");
      const uint64_t groups = static_cast<uint64_t>(r.group_count());
      const uint64_t extent = static_cast<uint64_t>(r.group_extent());
      raw_length = packed_size(groups, h.width_bits);
      const uint8_t* width_bytes = reader.prefix(raw_length);
      budget.charge(checked_mul(groups, 3, "group widths"), name);
      std::vector<uint16_t> widths(groups);
      unpack(width_bytes, groups, h.width_bits, widths.data(), threads);
      DIFFQ_CHECK(padding_is_zero(width_bytes, groups, h.width_bits), "tensor '", name,
                  "': non-zero padding bits after the group widths");
      r.group_bits.resize(groups);
      uint64_t per_width[17] = {};
      for (uint64_t g = 0; g < groups; ++g) {
        const int width = widths[g] + h.width_offset;
        DIFFQ_CHECK(width >= 1 && width <= 16, "tensor '", name, "': group ", g, " has bit-width ",
                    width, " outside 1..16");
        r.group_bits[g] = static_cast<uint8_t>(width);
        per_width[width] += extent;
      }
      widths = {};
      budget.charge(checked_mul(n, 2, "levels"), name);
      r.levels.resize(n);
      int used = 0, only = 0;
      for (int w = 1; w <= 16; ++w) {
        if (per_width[w] != 0) ++used, only = w;
      }
      if (used == 1) {
        stream_into(n, only, r.levels.data());
        break;
      }
      // Decode every width's stream, then place the groups in one pass.
      std::vector<std::vector<uint16_t>> values(17);
      for (int w = 1; w <= 16; ++w) {
        if (per_width[w] == 0) continue;
        budget.charge(checked_mul(per_width[w], 2, "levels"), name);
        values[w].resize(per_width[w]);
        stream_into(per_width[w], w, values[w].data());
      }
      uint64_t cursor[17] = {};
      for (uint64_t g = 0; g < groups; ++g) {
        const int w = r.group_bits[g];
        std::memcpy(r.levels.data() + g * extent, values[w].data() + cursor[w], extent * 2);
        cursor[w] += extent;
      }
      break;
    }
    case Encoding::kProductQuantized: {
      r.block_size = static_cast<int64_t>(h.block_size);
      r.num_centroids = static_cast<int64_t>(h.num_centroids);
      DIFFQ_CHECK(n % h.block_size == 0, "tensor '", name, "': block size ", h.block_size,
                  " does not divide ", n, " elements");
      const uint64_t entries = checked_mul(h.num_centroids, h.block_size, "codebook");
      raw_length = checked_mul(entries, 2, "codebook");
      read_values(reader.prefix(raw_length), entries, r.codebook, budget, name);
      const uint64_t blocks = n / h.block_size;
      budget.charge(checked_mul(blocks, 2, "indices"), name);
      r.levels.resize(blocks);
      stream_into(blocks, h.index_bits, r.levels.data());
      break;
    }
  }
  reader.finish(raw_length);
}

std::string fingerprint_text(const QuantizedState& state, uint32_t format_version) {
  DIFFQ_CHECK(format_version >= kOldestFormatVersion && format_version <= kFormatVersion,
              "no model fingerprint for format version ", format_version);
  std::string text;
  for (const auto& r : state.tensors) {
    text += r.name;
    for (const auto& alias : r.aliases) text += "=" + alias;
    text += ":";
    if (format_version >= 2) {
      text += record_kind_name(r.kind);
      text += ":";
    }
    text += dtype_name(r.dtype);
    text += ":";
    for (size_t i = 0; i < r.shape.size(); ++i) {
      if (i != 0) text += "x";
      text += std::to_string(r.shape[i]);
    }
    text += "\n";
  }
  return text;
}

void bits_histogram(const TensorRecord& r, std::array<int64_t, 17>& histogram) {
  switch (r.encoding) {
    case Encoding::kUniform:
    case Encoding::kLSQ:
    case Encoding::kPerChannelUniform:
      histogram[r.bits] += r.numel();
      break;
    case Encoding::kDiffQGroups: {
      const int64_t extent = r.group_extent();
      for (uint8_t b : r.group_bits) histogram[b] += extent;
      break;
    }
    case Encoding::kProductQuantized:
      histogram[index_bits_for(static_cast<uint64_t>(r.num_centroids))] +=
          static_cast<int64_t>(r.levels.size());
      break;
    default:
      break;
  }
}

}  // namespace detail
}  // namespace diffq
