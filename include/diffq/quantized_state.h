#pragma once
/// \file quantized_state.h
/// The quantized state of a model, in memory, independent of torch.
///
/// A `QuantizedState` is what a quantizer produces (`get_quantized_state()`),
/// what the model file stores, and what `restore` writes back into a model.
/// It holds, per stored tensor, its name(s), shape, original dtype, encoding
/// and payload. Levels are kept unpacked here (one `uint16_t` per element);
/// packing is the file format's job.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace diffq {

/// How a tensor's values are stored.
enum class Encoding : uint8_t {
  /// Raw IEEE float32 values (`values_f32`).
  kFloat32 = 0,
  /// IEEE float16 bit patterns (`values_f16`).
  kFloat16 = 1,
  /// Uniform levels on `bits` bits over the range [`min`, `max`]:
  /// `w = level / (2^bits - 1) * (max - min) + min`.
  kUniform = 2,
  /// DiffQ: one bit-width per group of `group_size` consecutive elements
  /// (`group_bits`), levels as for kUniform with the group's bit-width, one
  /// range per tensor. `group_size == 0` means one group for the tensor.
  kDiffQGroups = 3,
  /// LSQ: signed levels `q` in [-2^(bits-1), 2^(bits-1) - 1] stored as
  /// `level = q + 2^(bits-1)`; `w = q * step`.
  kLSQ = 4,
  /// Product quantization: `codebook` (K x d float16 patterns) and one index
  /// per subvector (`levels` holds indices). Reserved for Quant-Noise/iPQ.
  kProductQuantized = 5,
  /// Exact integers (`values_i64`), for integer buffers such as BatchNorm's
  /// `num_batches_tracked` (format version 2).
  kInteger = 6,
  /// Uniform levels on `bits` bits with one range per slice along dimension 0
  /// (per output channel), for per-channel scalar quantization (format
  /// version 2): `channel_min`, `channel_max` (one entry per channel, see
  /// `channel_count`) and `levels`; element i of channel c = i / (numel / C)
  /// is `w = level / (2^bits - 1) * (channel_max[c] - channel_min[c]) +
  /// channel_min[c]`, in float32, in that order.
  kPerChannelUniform = 7,
};

/// Returns a readable name for an encoding ("float32", "diffq", ...).
const char* encoding_name(Encoding encoding);
/// The encoding called `name` (inverse of `encoding_name`); throws
/// `diffq::Error` listing the known names.
Encoding parse_encoding(const std::string& name);

/// Whether a record holds a parameter of the model or a buffer (BatchNorm's
/// running statistics, user-registered persistent buffers).
enum class RecordKind : uint8_t {
  /// A trainable parameter (`named_parameters()`).
  kParameter = 0,
  /// A persistent buffer (`named_buffers()`).
  kBuffer = 1,
};

/// Returns "parameter" or "buffer".
const char* record_kind_name(RecordKind kind);
/// The kind called `name` (inverse of `record_kind_name`); throws `diffq::Error`.
RecordKind parse_record_kind(const std::string& name);

/// The element type a tensor had in the model.
enum class DType : uint8_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  kFloat64 = 3,
  kInt64 = 4,
  kInt32 = 5,
  kInt16 = 6,
  kInt8 = 7,
  kUInt8 = 8,
  kBool = 9,
};

/// Returns a readable name for a dtype ("float32", "int64", ...).
const char* dtype_name(DType dtype);
/// The dtype called `name` (inverse of `dtype_name`); throws `diffq::Error`.
DType parse_dtype(const std::string& name);
/// True for the integer dtypes and bool (stored exactly, `Encoding::kInteger`).
bool is_integer(DType dtype);
/// Bytes per element of an integer dtype in a kInteger payload (int64 8,
/// int32 4, int16 2, int8 / uint8 / bool 1); 0 for the float dtypes.
int integer_width(DType dtype);
/// Smallest value an integer dtype holds (0 for uint8 and bool; 0 for float dtypes).
int64_t integer_min(DType dtype);
/// Largest value an integer dtype holds (1 for bool; 0 for float dtypes).
int64_t integer_max(DType dtype);

/// One stored tensor.
struct TensorRecord {
  /// Dotted name of the tensor's first occurrence in the model.
  std::string name;
  /// Parameter or buffer.
  RecordKind kind = RecordKind::kParameter;
  /// Other names under which the same tensor is registered (tied parameters
  /// detected at quantization). Restore writes the same values to all.
  std::vector<std::string> aliases;
  /// Shape in the model.
  std::vector<int64_t> shape;
  /// Element type in the model.
  DType dtype = DType::kFloat32;
  /// How `values_*` / `levels` are to be read.
  Encoding encoding = Encoding::kFloat32;

  /// kFloat32 payload.
  std::vector<float> values_f32;
  /// kFloat16 payload (IEEE half bit patterns).
  std::vector<uint16_t> values_f16;
  /// kInteger payload (every integer dtype widened to int64; bool as 0/1).
  std::vector<int64_t> values_i64;

  /// kUniform / kLSQ / kPerChannelUniform: bit-width of every level (1..16).
  int bits = 0;
  /// kPerChannelUniform: lower end of each channel's range (`channel_count()` entries).
  std::vector<float> channel_min;
  /// kPerChannelUniform: upper end of each channel's range (`channel_count()` entries).
  std::vector<float> channel_max;

  /// kUniform / kDiffQGroups: range of the tensor.
  float min = 0.f;
  /// kUniform / kDiffQGroups: range of the tensor.
  float max = 0.f;
  /// kLSQ: the learned step size.
  float step = 0.f;
  /// kDiffQGroups: elements per group (0 = whole tensor).
  int64_t group_size = 0;
  /// kDiffQGroups: bit-width of each group (1..16).
  std::vector<uint8_t> group_bits;
  /// kDiffQGroups: the quantizer's `min_bits`, the offset of the per-group
  /// bit-width field in the size formula (bits_bits).
  int min_bits = 0;
  /// kUniform / kDiffQGroups / kLSQ: one level per element, each below
  /// 2^(bits of its group). kProductQuantized: one index per subvector.
  std::vector<uint16_t> levels;

  /// kProductQuantized: subvector length d.
  int64_t block_size = 0;
  /// kProductQuantized: number of centroids K.
  int64_t num_centroids = 0;
  /// kProductQuantized: K x d centroids as IEEE half bit patterns.
  std::vector<uint16_t> codebook;

  /// Number of elements (product of `shape`; 1 for a 0-d tensor).
  int64_t numel() const;
  /// kDiffQGroups: number of groups (`numel / group_size`; one group when
  /// `group_size` is 0, none for an empty tensor). 0 for other encodings.
  int64_t group_count() const;
  /// kDiffQGroups: elements per group (`numel` when `group_size` is 0).
  int64_t group_extent() const;
  /// kPerChannelUniform: number of channels C, `shape[0]` (1 for a 0-d
  /// tensor). 0 for other encodings.
  int64_t channel_count() const;
  /// kPerChannelUniform: elements per channel (`numel / C`; 0 when C is 0).
  int64_t channel_extent() const;
  /// True for the encodings that quantize (uniform, diffq, lsq, pq,
  /// per-channel); false for float32, float16 and integer records.
  bool is_quantized() const;
  /// Bits of the element payload alone, without per-tensor headers: bits x
  /// elements (diffq: sum over groups of extent x bits; pq: log2(K) per
  /// index plus 16 per codebook entry). 32 / 16 per element for float
  /// records; for integer records the dtype's stored width, 8 x
  /// `integer_width(dtype)` per element (64 for int64, 8 for int8 and bool).
  double payload_bits() const;
  /// Size in bits of a perfect packing of this record (spec section 5):
  /// `payload_bits()` plus the per-tensor header of the spec's formulas
  /// (uniform 64, lsq 32, diffq 64 + 8 + bits_bits per group,
  /// per-channel 64 per channel: its two float32 ranges).
  double true_bits() const;
};

/// The quantized state of a whole model.
struct QuantizedState {
  /// The method that produced it ("diffq", "uniform", "lsq", "float", ...).
  std::string method;
  /// The method's options, as text (e.g. {"group_size": "16"}).
  std::map<std::string, std::string> options;
  /// Every stored tensor of the model, parameters and buffers (see
  /// `TensorRecord::kind`), in the model's registration order.
  std::vector<TensorRecord> tensors;

  /// Size in bits of a perfect packing of the model's PARAMETERS: the size
  /// formulas of the spec (section 5) applied to what is stored (buffers are
  /// not counted, as in the reference).
  double true_bits() const;
  /// `true_bits()` in MiB (bits / 8 / 2^20).
  double true_mib() const { return true_bits() / 8.0 / 1048576.0; }
  /// Size in bits of the stored buffers (their `true_bits()`).
  double buffer_bits() const;
  /// Mean bit-width over the elements of the quantized records
  /// (`payload_bits / numel`); 32 when nothing is quantized.
  double mean_bits() const;
  /// Number of parameter elements (aliases counted once).
  int64_t parameter_count() const;
};

/// Checks a record's internal consistency (payload lengths match the
/// shape, levels below 2^bits, bit-widths in range, group size divides the
/// element count, integer values fit their dtype, integer dtypes stored as
/// kInteger, one finite range with min <= max per channel); throws
/// `diffq::Error` naming the record and the problem.
void validate(const TensorRecord& record);

/// Checks every record of `state`, and that names are unique.
void validate(const QuantizedState& state);

/// Dequantizes a record into float32 values, one per element, in the
/// flattened order of the tensor. Uses the exact float arithmetic of the
/// quantizers' evaluation path, so the result is bit-identical to the
/// weights the model saw in evaluation.
std::vector<float> dequantize(const TensorRecord& record);

/// Dequantizes elements [begin, end) of a record that passed `validate`
/// into out[0 .. end - begin), with the same arithmetic as `dequantize`.
/// Safe to call concurrently on disjoint ranges.
void dequantize_range(const TensorRecord& record, int64_t begin, int64_t end, float* out);

/// Converts an IEEE half bit pattern to float.
float half_to_float(uint16_t bits);
/// Converts a float to the nearest IEEE half bit pattern (round to even).
uint16_t float_to_half(float value);

}  // namespace diffq
