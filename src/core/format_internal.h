#pragma once
// Internal pieces of the model file format shared by the writer and the
// reader (docs/format.md). Not installed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/quantized_state.h"

namespace diffq {
namespace detail {

/// "\x89DIFFQ\r\n".
constexpr uint8_t kMagic[8] = {0x89, 'D', 'I', 'F', 'F', 'Q', '\r', '\n'};
/// Bytes of the fixed preamble.
constexpr uint64_t kPreambleSize = 40;
/// Alignment of the data section and of every payload.
constexpr uint64_t kAlignment = 64;
/// Largest accepted JSON header.
constexpr uint64_t kMaxHeaderLength = uint64_t{1} << 30;
/// Deepest accepted JSON nesting.
constexpr int kMaxJsonDepth = 16;
/// Most dimensions of a stored tensor.
constexpr size_t kMaxDims = 64;

/// a + b, throwing `diffq::Error` (mentioning `what`) on overflow.
uint64_t checked_add(uint64_t a, uint64_t b, const char* what);
/// a * b, throwing `diffq::Error` (mentioning `what`) on overflow.
uint64_t checked_mul(uint64_t a, uint64_t b, const char* what);
/// `value` rounded up to a multiple of `kAlignment`, overflow-checked.
uint64_t align_up(uint64_t value);

/// 16 lowercase hex digits of `value`.
std::string to_hex(uint64_t value);

/// Counts bytes a load allocates and refuses to exceed a limit.
class MemoryBudget {
 public:
  /// A budget of `limit` bytes (0 = unlimited).
  explicit MemoryBudget(uint64_t limit) : limit_(limit) {}
  /// Accounts for `bytes` more, throwing when over the limit.
  void charge(uint64_t bytes, const std::string& what);

 private:
  uint64_t limit_;
  uint64_t used_ = 0;
};

/// The coding of a stored payload.
enum class Coding : uint8_t { kNone, kZstd, kRans };

/// One tensor record of the header, as parsed and checked.
struct TensorHeader {
  std::string name;
  RecordKind kind = RecordKind::kParameter;
  std::vector<std::string> aliases;
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  DType dtype = DType::kFloat32;
  Encoding encoding = Encoding::kFloat32;
  Coding coding = Coding::kNone;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t raw_length = 0;
  uint64_t checksum = 0;
  // Encoding parameters (those of `encoding` only are meaningful).
  int bits = 0;
  uint32_t min_f32 = 0;
  uint32_t max_f32 = 0;
  uint32_t step_f32 = 0;
  uint64_t group_size = 0;
  int min_bits = 0;
  int width_offset = 0;
  int width_bits = 0;
  uint64_t block_size = 0;
  uint64_t num_centroids = 0;
  int index_bits = 0;
  uint64_t channels = 0;
};

/// A payload ready to be written.
struct EncodedPayload {
  Coding coding = Coding::kNone;
  std::vector<uint8_t> bytes;
  uint64_t raw_length = 0;
  nlohmann::json params;
};

/// Name of a coding in the file ("none", "zstd", "rans").
const char* coding_name(Coding coding);

/// Whether the `rans` coding applies to payloads of `encoding` (those with
/// level streams: uniform, lsq, diffq, pq, per_channel; docs/format.md 4).
bool rans_applies(Encoding encoding);

/// Encodes one (validated) record's payload with the coding the options ask for.
EncodedPayload encode_payload(const TensorRecord& record, const SaveOptions& options);

/// Decodes the stored payload of `header` (`header.length` bytes at
/// `stored`) into `record`, whose name/shape/encoding fields are already set.
void decode_payload(const TensorHeader& header, const uint8_t* stored, TensorRecord& record,
                    MemoryBudget& budget, int threads);

/// ceil(log2(k)) for k >= 1: the bit-width of a product-quantization index.
int index_bits_for(uint64_t num_centroids);

/// The canonical text hashed into the model fingerprint of file format
/// `format_version` (docs/format.md 2.2); throws for unknown versions.
std::string fingerprint_text(const QuantizedState& state, uint32_t format_version);

/// The raw payload length of a header whose encoding fixes it from the
/// header alone (float32, float16, integer, per_channel, uniform, lsq, pq);
/// `false` for diffq, whose length depends on the stored group widths.
bool fixed_raw_length(const TensorHeader& header, uint64_t& length);

/// Elements at each bit-width of a record (for `inspect`).
void bits_histogram(const TensorRecord& record, std::array<int64_t, 17>& histogram);

}  // namespace detail
}  // namespace diffq
