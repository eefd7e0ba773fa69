// Quantized state: validation, dequantization, size accounting, half floats.
#include "diffq/quantized_state.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>

#include "diffq/error.h"

namespace diffq {

const char* encoding_name(Encoding encoding) {
  switch (encoding) {
    case Encoding::kFloat32: return "float32";
    case Encoding::kFloat16: return "float16";
    case Encoding::kUniform: return "uniform";
    case Encoding::kDiffQGroups: return "diffq";
    case Encoding::kLSQ: return "lsq";
    case Encoding::kProductQuantized: return "pq";
    case Encoding::kInteger: return "integer";
    case Encoding::kPerChannelUniform: return "per_channel";
  }
  return "unknown";
}

namespace {
// The value of enum E whose name(value) is `text`, among `values`.
template <typename E, typename NameOf>
E parse_named(const std::string& text, std::initializer_list<E> values, NameOf name_of,
              const char* what) {
  std::string known;
  for (E v : values) {
    if (text == name_of(v)) return v;
    known += (known.empty() ? "" : ", ") + std::string(name_of(v));
  }
  throw Error(detail::concat("unknown ", what, " '", text, "' (one of: ", known, ")"));
}
}  // namespace

Encoding parse_encoding(const std::string& name) {
  return parse_named(name,
                     {Encoding::kFloat32, Encoding::kFloat16, Encoding::kUniform,
                      Encoding::kDiffQGroups, Encoding::kLSQ, Encoding::kProductQuantized,
                      Encoding::kInteger, Encoding::kPerChannelUniform},
                     encoding_name, "encoding");
}

const char* record_kind_name(RecordKind kind) {
  return kind == RecordKind::kBuffer ? "buffer" : "parameter";
}

RecordKind parse_record_kind(const std::string& name) {
  return parse_named(name, {RecordKind::kParameter, RecordKind::kBuffer}, record_kind_name,
                     "record kind");
}

DType parse_dtype(const std::string& name) {
  return parse_named(name,
                     {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64,
                      DType::kInt64, DType::kInt32, DType::kInt16, DType::kInt8, DType::kUInt8,
                      DType::kBool},
                     dtype_name, "dtype");
}

bool is_integer(DType dtype) {
  switch (dtype) {
    case DType::kInt64:
    case DType::kInt32:
    case DType::kInt16:
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool:
      return true;
    default:
      return false;
  }
}

int integer_width(DType dtype) {
  switch (dtype) {
    case DType::kInt64: return 8;
    case DType::kInt32: return 4;
    case DType::kInt16: return 2;
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool:
      return 1;
    default:
      return 0;
  }
}

int64_t integer_min(DType dtype) {
  switch (dtype) {
    case DType::kInt64: return std::numeric_limits<int64_t>::min();
    case DType::kInt32: return std::numeric_limits<int32_t>::min();
    case DType::kInt16: return std::numeric_limits<int16_t>::min();
    case DType::kInt8: return std::numeric_limits<int8_t>::min();
    default: return 0;
  }
}

int64_t integer_max(DType dtype) {
  switch (dtype) {
    case DType::kInt64: return std::numeric_limits<int64_t>::max();
    case DType::kInt32: return std::numeric_limits<int32_t>::max();
    case DType::kInt16: return std::numeric_limits<int16_t>::max();
    case DType::kInt8: return std::numeric_limits<int8_t>::max();
    case DType::kUInt8: return std::numeric_limits<uint8_t>::max();
    case DType::kBool: return 1;
    default: return 0;
  }
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat64: return "float64";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kInt16: return "int16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
  }
  return "unknown";
}

int64_t TensorRecord::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    DIFFQ_CHECK(d >= 0, "tensor '", name, "' has a negative dimension ", d);
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      throw Error(detail::concat("tensor '", name, "' has too many elements"));
    }
    n *= d;
  }
  return n;
}

int64_t TensorRecord::group_count() const {
  if (encoding != Encoding::kDiffQGroups) return 0;
  const int64_t n = numel();
  if (group_size == 0) return n == 0 ? 0 : 1;
  return n / group_size;
}

int64_t TensorRecord::group_extent() const { return group_size == 0 ? numel() : group_size; }

int64_t TensorRecord::channel_count() const {
  if (encoding != Encoding::kPerChannelUniform) return 0;
  return shape.empty() ? 1 : shape[0];
}

int64_t TensorRecord::channel_extent() const {
  const int64_t channels = channel_count();
  return channels == 0 ? 0 : numel() / channels;
}

bool TensorRecord::is_quantized() const {
  switch (encoding) {
    case Encoding::kUniform:
    case Encoding::kDiffQGroups:
    case Encoding::kLSQ:
    case Encoding::kProductQuantized:
    case Encoding::kPerChannelUniform:
      return true;
    default:
      return false;
  }
}

namespace {

int64_t num_groups(const TensorRecord& r) { return r.group_count(); }

// Largest of n levels (a loop the compiler vectorises).
uint32_t max_level(const uint16_t* levels, int64_t n) {
  uint16_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = levels[i] > m ? levels[i] : m;
  return m;
}

int64_t group_of(const TensorRecord& r, int64_t index) {
  return r.group_size == 0 ? 0 : index / r.group_size;
}

}  // namespace

namespace {

// Checks that a payload has `expected` entries.
void check_size(const TensorRecord& r, size_t actual, int64_t expected, const char* what) {
  DIFFQ_CHECK(static_cast<int64_t>(actual) == expected, "tensor '", r.name, "': ", what, " has ", actual,
              " entries, expected ", expected);
}

void check_range(const TensorRecord& r) {
  DIFFQ_CHECK(std::isfinite(r.min) && std::isfinite(r.max) && r.min <= r.max, "tensor '", r.name,
              "': invalid range [", r.min, ", ", r.max, "]");
}

void validate_integer(const TensorRecord& r) {
  DIFFQ_CHECK(is_integer(r.dtype), "tensor '", r.name, "': integer payload for dtype ", dtype_name(r.dtype));
  check_size(r, r.values_i64.size(), r.numel(), "integer payload");
  const int64_t lo = integer_min(r.dtype), hi = integer_max(r.dtype);
  for (size_t i = 0; i < r.values_i64.size(); ++i)
    DIFFQ_CHECK(r.values_i64[i] >= lo && r.values_i64[i] <= hi, "tensor '", r.name, "': value ", r.values_i64[i],
                " at index ", i, " does not fit in ", dtype_name(r.dtype));
}

void validate_channel_ranges(const TensorRecord& r) {
  DIFFQ_CHECK(r.channel_min.size() == r.channel_max.size(), "tensor '", r.name, "': ", r.channel_min.size(),
              " channel minima but ", r.channel_max.size(), " channel maxima");
  check_size(r, r.channel_min.size(), r.channel_count(), "channel ranges");
  for (size_t c = 0; c < r.channel_min.size(); ++c) {
    const float lo = r.channel_min[c], hi = r.channel_max[c];
    DIFFQ_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "tensor '", r.name,
                "': invalid range of channel ", c, " [", lo, ", ", hi, "]");
  }
}

// uniform, lsq, per-channel: one bit-width for every level.
void validate_fixed_bits(const TensorRecord& r) {
  const int64_t n = r.numel();
  DIFFQ_CHECK(r.bits >= 1 && r.bits <= 16, "tensor '", r.name, "': bit-width ", r.bits, " outside 1..16");
  check_size(r, r.levels.size(), n, "levels");
  const uint32_t limit = 1u << r.bits;
  if (max_level(r.levels.data(), n) >= limit) {
    for (size_t i = 0; i < r.levels.size(); ++i)
      DIFFQ_CHECK(r.levels[i] < limit, "tensor '", r.name, "': level ", r.levels[i], " at index ", i,
                  " does not fit on ", r.bits, " bits");
  }
  if (r.encoding == Encoding::kUniform) check_range(r);
  else if (r.encoding == Encoding::kPerChannelUniform) validate_channel_ranges(r);
  else DIFFQ_CHECK(std::isfinite(r.step), "tensor '", r.name, "': step is not finite");
}

void validate_groups(const TensorRecord& r) {
  const int64_t n = r.numel();
  DIFFQ_CHECK(r.group_size >= 0, "tensor '", r.name, "': negative group size ", r.group_size);
  DIFFQ_CHECK(r.group_size == 0 || n % r.group_size == 0, "tensor '", r.name, "': group size ", r.group_size,
              " does not divide ", n, " elements");
  check_range(r);
  check_size(r, r.group_bits.size(), num_groups(r), "group bit-widths");
  for (size_t g = 0; g < r.group_bits.size(); ++g)
    DIFFQ_CHECK(r.group_bits[g] >= 1 && r.group_bits[g] <= 16, "tensor '", r.name, "': group ", g,
                " has bit-width ", int(r.group_bits[g]), " outside 1..16");
  check_size(r, r.levels.size(), n, "levels");
  const int64_t group = r.group_extent();
  for (int64_t start = 0; start < n; start += group) {
    const uint32_t limit = 1u << r.group_bits[group_of(r, start)];
    if (max_level(r.levels.data() + start, group) < limit) continue;
    for (int64_t i = start; i < start + group; ++i)
      DIFFQ_CHECK(r.levels[i] < limit, "tensor '", r.name, "': level ", r.levels[i], " at index ", i,
                  " does not fit on its group's ", int(r.group_bits[group_of(r, i)]), " bits");
  }
}

void validate_product(const TensorRecord& r) {
  const int64_t n = r.numel();
  DIFFQ_CHECK(r.block_size >= 1, "tensor '", r.name, "': block size ", r.block_size, " must be positive");
  DIFFQ_CHECK(n % r.block_size == 0, "tensor '", r.name, "': block size ", r.block_size, " does not divide ", n,
              " elements");
  DIFFQ_CHECK(r.num_centroids >= 1 && r.num_centroids <= 65536, "tensor '", r.name, "': number of centroids ",
              r.num_centroids, " outside 1..65536");
  check_size(r, r.codebook.size(), r.num_centroids * r.block_size, "codebook");
  check_size(r, r.levels.size(), n / r.block_size, "centroid indices");
  for (size_t i = 0; i < r.levels.size(); ++i)
    DIFFQ_CHECK(r.levels[i] < r.num_centroids, "tensor '", r.name, "': centroid index ", r.levels[i], " at ", i,
                " is not below ", r.num_centroids);
}

}  // namespace

void validate(const TensorRecord& r) {
  DIFFQ_CHECK(!is_integer(r.dtype) || r.encoding == Encoding::kInteger, "tensor '", r.name, "': dtype ",
              dtype_name(r.dtype), " needs the integer encoding, not ", encoding_name(r.encoding));
  switch (r.encoding) {
    case Encoding::kFloat32:
      return check_size(r, r.values_f32.size(), r.numel(), "float32 payload");
    case Encoding::kFloat16:
      return check_size(r, r.values_f16.size(), r.numel(), "float16 payload");
    case Encoding::kInteger:
      return validate_integer(r);
    case Encoding::kUniform:
    case Encoding::kLSQ:
    case Encoding::kPerChannelUniform:
      return validate_fixed_bits(r);
    case Encoding::kDiffQGroups:
      return validate_groups(r);
    case Encoding::kProductQuantized:
      return validate_product(r);
  }
  throw Error(detail::concat("tensor '", r.name, "': unknown encoding ", static_cast<int>(r.encoding)));
}

void validate(const QuantizedState& state) {
  std::set<std::string> names;
  for (const auto& record : state.tensors) {
    validate(record);
    DIFFQ_CHECK(names.insert(record.name).second, "tensor name '", record.name,
                "' appears twice in the state");
    for (const auto& alias : record.aliases) {
      DIFFQ_CHECK(names.insert(alias).second, "tensor name '", alias,
                  "' appears twice in the state");
    }
  }
}

namespace {
float uniform_value(uint32_t level, int bits, float min, float max) {
  // Same operation order as the evaluation path: level / (2^b - 1) * range + min.
  const float denom = static_cast<float>((1u << bits) - 1u);
  const float range = max - min;
  return static_cast<float>(level) / denom * range + min;
}

}  // namespace

void dequantize_range(const TensorRecord& r, int64_t begin, int64_t end, float* out) {
  switch (r.encoding) {
    case Encoding::kFloat32:
      std::copy(r.values_f32.begin() + begin, r.values_f32.begin() + end, out);
      break;
    case Encoding::kFloat16:
      for (int64_t i = begin; i < end; ++i) out[i - begin] = half_to_float(r.values_f16[i]);
      break;
    case Encoding::kInteger:
      for (int64_t i = begin; i < end; ++i) out[i - begin] = static_cast<float>(r.values_i64[i]);
      break;
    case Encoding::kPerChannelUniform: {
      // Per channel: one denominator and range, then a loop the compiler vectorises.
      const int64_t extent = r.channel_extent();
      const float denom = static_cast<float>((1u << r.bits) - 1u);
      int64_t i = begin;
      while (i < end) {
        const int64_t c = i / extent;
        const int64_t stop = std::min(end, (c + 1) * extent);
        const float lo = r.channel_min[c];
        const float range = r.channel_max[c] - lo;
        for (; i < stop; ++i) {
          out[i - begin] = static_cast<float>(r.levels[i]) / denom * range + lo;
        }
      }
      break;
    }
    case Encoding::kUniform:
      for (int64_t i = begin; i < end; ++i) {
        out[i - begin] = uniform_value(r.levels[i], r.bits, r.min, r.max);
      }
      break;
    case Encoding::kDiffQGroups:
      if (r.group_size == 0) {
        const int bits = r.group_bits.empty() ? 1 : r.group_bits[0];
        for (int64_t i = begin; i < end; ++i) {
          out[i - begin] = uniform_value(r.levels[i], bits, r.min, r.max);
        }
      } else {
        // Per group: one denominator, then a loop the compiler vectorises.
        const float range = r.max - r.min;
        int64_t i = begin;
        while (i < end) {
          const int64_t g = i / r.group_size;
          const int64_t stop = std::min(end, (g + 1) * r.group_size);
          const float denom = static_cast<float>((1u << r.group_bits[g]) - 1u);
          for (; i < stop; ++i) {
            out[i - begin] = static_cast<float>(r.levels[i]) / denom * range + r.min;
          }
        }
      }
      break;
    case Encoding::kLSQ: {
      const int32_t offset = 1 << (r.bits - 1);
      for (int64_t i = begin; i < end; ++i) {
        out[i - begin] = static_cast<float>(static_cast<int32_t>(r.levels[i]) - offset) * r.step;
      }
      break;
    }
    case Encoding::kProductQuantized: {
      const int64_t d = r.block_size;
      for (int64_t i = begin; i < end; ++i) {
        const int64_t block = i / d;
        out[i - begin] = half_to_float(r.codebook[static_cast<size_t>(r.levels[block]) * d + i % d]);
      }
      break;
    }
  }
}

std::vector<float> dequantize(const TensorRecord& r) {
  validate(r);
  std::vector<float> out(static_cast<size_t>(r.numel()));
  dequantize_range(r, 0, r.numel(), out.data());
  return out;
}

double TensorRecord::payload_bits() const {
  const double n = static_cast<double>(numel());
  switch (encoding) {
    case Encoding::kFloat32: return 32.0 * n;
    case Encoding::kFloat16: return 16.0 * n;
    case Encoding::kInteger: return 8.0 * integer_width(dtype) * n;
    case Encoding::kUniform:
    case Encoding::kLSQ:
    case Encoding::kPerChannelUniform:
      return bits * n;
    case Encoding::kDiffQGroups: {
      double sum = 0;
      for (uint8_t b : group_bits) sum += b;
      return static_cast<double>(group_extent()) * sum;
    }
    case Encoding::kProductQuantized:
      return static_cast<double>(levels.size()) * std::log2(static_cast<double>(num_centroids)) +
             16.0 * static_cast<double>(codebook.size());
  }
  return 0.0;
}

double TensorRecord::true_bits() const {
  const double payload = payload_bits();
  switch (encoding) {
    case Encoding::kUniform: return payload + 64.0;
    case Encoding::kLSQ: return payload + 32.0;
    case Encoding::kDiffQGroups: {
      int max_bits = 0;
      for (uint8_t b : group_bits) max_bits = std::max<int>(max_bits, b);
      const double bits_bits = std::ceil(std::log2(1.0 + std::max(0, max_bits - min_bits)));
      return payload + 64.0 + 8.0 + bits_bits * static_cast<double>(group_bits.size());
    }
    case Encoding::kPerChannelUniform:
      return payload + 64.0 * static_cast<double>(channel_count());
    default:
      return payload;
  }
}

double QuantizedState::true_bits() const {
  double total = 0;
  for (const auto& r : tensors)
    if (r.kind == RecordKind::kParameter) total += r.true_bits();
  return total;
}

double QuantizedState::buffer_bits() const {
  double total = 0;
  for (const auto& r : tensors)
    if (r.kind == RecordKind::kBuffer) total += r.true_bits();
  return total;
}

double QuantizedState::mean_bits() const {
  double bits = 0, n = 0;
  for (const auto& r : tensors) {
    if (r.kind != RecordKind::kParameter || !r.is_quantized()) continue;
    bits += r.payload_bits();
    n += static_cast<double>(r.numel());
  }
  return n > 0 ? bits / n : 32.0;
}

int64_t QuantizedState::parameter_count() const {
  int64_t n = 0;
  for (const auto& r : tensors)
    if (r.kind == RecordKind::kParameter) n += r.numel();
  return n;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ffu) << 13;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

uint16_t float_to_half(float value) {
  uint32_t f;
  std::memcpy(&f, &value, sizeof(f));
  const uint16_t sign = static_cast<uint16_t>((f >> 16) & 0x8000u);
  const uint32_t abs = f & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or nan
    return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
  }
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to infinity
  if (abs < 0x38800000u) {                         // subnormal half or zero
    if (abs < 0x33000000u) return sign;            // below half of the smallest subnormal
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14 + (113 - exponent) - ... in 14..24
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}

}  // namespace diffq
