#pragma once
/// \file format.h
/// The diffq model file: saving, loading and inspecting a `QuantizedState`
/// (torch-free). The byte layout is specified in docs/format.md.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "diffq/quantized_state.h"

namespace diffq {

/// The newest file format version this library reads and the one it writes.
constexpr uint32_t kFormatVersion = 2;
/// The oldest file format version this library reads.
constexpr uint32_t kOldestFormatVersion = 1;

/// Entropy coding of tensor payloads, chosen at save time.
enum class EntropyCoding : uint8_t {
  /// Payloads are stored bit-packed, uncompressed (fastest to load).
  kNone = 0,
  /// Each payload is one zstd frame.
  kZstd = 1,
  /// Level streams are coded with a static rANS over their histogram
  /// (float payloads stay uncompressed).
  kRans = 2,
  /// Per tensor, the smallest of none, zstd and rANS.
  kAuto = 3,
};

/// Returns the file-format name of a coding ("none", "zstd", "rans", "auto").
const char* entropy_coding_name(EntropyCoding coding);
/// The coding called `name` (inverse of `entropy_coding_name`); throws
/// `diffq::Error` listing the known names.
EntropyCoding parse_entropy_coding(const std::string& name);

/// Options of `save` and `serialize`.
struct SaveOptions {
  /// Entropy coding of the payloads (default: none).
  SaveOptions& entropy_coding(EntropyCoding value) { entropy_coding_ = value; return *this; }
  /// zstd compression level 1..22 (default 3).
  SaveOptions& zstd_level(int value) { zstd_level_ = value; return *this; }
  /// Threads for packing large tensors (0 = all hardware threads).
  SaveOptions& threads(int value) { threads_ = value; return *this; }
  /// Creation time recorded in the header, in seconds since the Unix epoch
  /// (UTC); -1 (default) means now. A fixed value makes files reproducible.
  SaveOptions& creation_time(int64_t value) { creation_time_ = value; return *this; }

  /// See the setter.
  EntropyCoding entropy_coding() const { return entropy_coding_; }
  /// See the setter.
  int zstd_level() const { return zstd_level_; }
  /// See the setter.
  int threads() const { return threads_; }
  /// See the setter.
  int64_t creation_time() const { return creation_time_; }

 private:
  EntropyCoding entropy_coding_ = EntropyCoding::kNone;
  int zstd_level_ = 3;
  int threads_ = 0;
  int64_t creation_time_ = -1;
};

/// The default memory cap of a load: half of the machine's physical memory,
/// or half of the address-space limit (`ulimit -v`) when that is lower.
uint64_t default_max_memory();

/// Options of `load` and `load_from_memory`.
struct LoadOptions {
  /// Threads for unpacking large tensors (0 = all hardware threads).
  LoadOptions& threads(int value) { threads_ = value; return *this; }
  /// Upper bound, in bytes, of the memory a load may allocate for decoded
  /// payloads (0 = unlimited; default `default_max_memory()`). Every
  /// declared size is checked against it before anything is allocated.
  /// Protects against small hostile files.
  LoadOptions& max_memory(uint64_t value) { max_memory_ = value; return *this; }
  /// Whether to verify the XXH3 checksums (default true). Turning it off
  /// only serves fuzzing, to reach the decoders with mutated files.
  LoadOptions& verify_checksums(bool value) { verify_checksums_ = value; return *this; }

  /// See the setter.
  int threads() const { return threads_; }
  /// See the setter.
  uint64_t max_memory() const { return max_memory_; }
  /// See the setter.
  bool verify_checksums() const { return verify_checksums_; }

 private:
  int threads_ = 0;
  uint64_t max_memory_ = default_max_memory();
  bool verify_checksums_ = true;
};

/// Serializes `state` to the bytes of a model file. Validates the state first.
std::vector<uint8_t> serialize(const QuantizedState& state, const SaveOptions& options = {});

/// Writes `state` to `path` atomically: a temporary file in the same
/// directory is written, flushed, fsync'ed and renamed over `path`, then the
/// directory is fsync'ed. On error the temporary is removed, `path` is left
/// as it was, and `diffq::Error` is thrown. Stale temporaries of `path` left
/// by killed writers are removed first (see `remove_stale_temporaries`).
void save(const QuantizedState& state, const std::string& path, const SaveOptions& options = {});

/// Reads and fully validates a model file (checksums, layout, encodings,
/// then `diffq::validate`). Throws `diffq::Error` naming the problem.
QuantizedState load(const std::string& path, const LoadOptions& options = {});

/// Same as `load`, from the `size` bytes of a file at `data`.
QuantizedState load_from_memory(const uint8_t* data, size_t size,
                                const LoadOptions& options = {});

/// Removes the temporary files `save` left next to `path` when its writer
/// process was killed (writer process no longer running). Returns how many
/// were removed.
int remove_stale_temporaries(const std::string& path);

/// XXH3-64 model fingerprint of a state: ordered names, aliases, kinds,
/// dtypes and shapes (docs/format.md 2.2, current version). Identifies the
/// architecture, not the values.
uint64_t model_fingerprint(const QuantizedState& state);

/// The fingerprint as defined by file format `format_version` (1: without
/// the record kinds; 2: as `model_fingerprint(state)`). Throws for other
/// versions.
uint64_t model_fingerprint(const QuantizedState& state, uint32_t format_version);

/// What `inspect` reports about one stored tensor.
struct TensorInfo {
  /// Name of the tensor.
  std::string name;
  /// Parameter or buffer.
  RecordKind kind = RecordKind::kParameter;
  /// Other names of the tensor (tied parameters).
  std::vector<std::string> aliases;
  /// Shape in the model.
  std::vector<int64_t> shape;
  /// Element type in the model.
  DType dtype = DType::kFloat32;
  /// Storage encoding.
  Encoding encoding = Encoding::kFloat32;
  /// Entropy coding of the payload ("none", "zstd", "rans").
  std::string coding;
  /// Number of elements.
  int64_t numel = 0;
  /// Elements stored at each bit-width 0..16 (index = bits; quantized
  /// encodings only, pq counts its indices at their width).
  std::array<int64_t, 17> bits_histogram{};
  /// Bytes of the payload in the file.
  uint64_t stored_bytes = 0;
  /// Bytes of the payload before entropy coding.
  uint64_t raw_bytes = 0;
  /// Size of a perfect packing (spec section 5), in bits (`TensorRecord::true_bits`).
  double true_bits = 0.0;
  /// Bits per element of the payload (`TensorRecord::payload_bits` / elements;
  /// 32 / 16 for float records, the dtype's width for integer ones).
  double mean_bits = 0.0;
};

/// What `inspect` reports about a model file.
struct FileInfo {
  /// Format version of the file.
  uint32_t format_version = 0;
  /// Library version that wrote the file.
  std::string library_version;
  /// Creation time, ISO-8601 UTC.
  std::string created_utc;
  /// Quantizer kind (`QuantizedState::method`).
  std::string method;
  /// Quantizer options.
  std::map<std::string, std::string> options;
  /// Model fingerprint, 16 hex digits.
  std::string fingerprint;
  /// Size of the file in bytes.
  uint64_t file_bytes = 0;
  /// Bytes of the preamble, header and its padding.
  uint64_t header_bytes = 0;
  /// Zero bytes aligning the payloads (between them, after the header's padding).
  uint64_t padding_bytes = 0;
  /// Stored payload bytes of the parameters.
  uint64_t parameter_bytes = 0;
  /// Stored payload bytes of the buffers. `file_bytes == header_bytes +
  /// padding_bytes + parameter_bytes + buffer_bytes`.
  uint64_t buffer_bytes = 0;
  /// Per tensor, in stored order.
  std::vector<TensorInfo> tensors;
  /// Sum of the tensors' element counts (parameters and buffers).
  int64_t total_elements = 0;
  /// Sum of the buffers' element counts.
  int64_t buffer_elements = 0;
  /// Sum of the payload bytes (`parameter_bytes + buffer_bytes`).
  uint64_t total_stored_bytes = 0;
  /// Sum of the bit-width histograms.
  std::array<int64_t, 17> bits_histogram{};
  /// Size of a perfect packing of the state's parameters, in bits
  /// (`QuantizedState::true_bits()`).
  double true_bits = 0.0;
  /// Size of a perfect packing of the state's buffers, in bits
  /// (`QuantizedState::buffer_bits()`).
  double buffer_true_bits = 0.0;
};

/// Loads and validates the model file at `path` (within `options`' memory
/// cap) and describes it. Non-regular files are refused without being read.
FileInfo inspect(const std::string& path, const LoadOptions& options = {});

/// Same as `inspect`, from the bytes of a file in memory.
FileInfo inspect_memory(const uint8_t* data, size_t size, const LoadOptions& options = {});

}  // namespace diffq
