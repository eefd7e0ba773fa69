// Reading model files: preamble, header and layout validation, decoding.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <set>
#include <stdexcept>

#include "diffq/regular_file.h"
#include "format_internal.h"

namespace diffq {
namespace {

using nlohmann::json;
using detail::TensorHeader;

uint64_t get_u64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(get_u64(p) & 0xffffffffu);
}

/// Typed access to JSON fields with errors naming the field and its owner.
class Fields {
 public:
  Fields(const json& object, std::string owner) : object_(object), owner_(std::move(owner)) {
    DIFFQ_CHECK(object.is_object(), owner_, " is not a JSON object");
  }

  const json& at(const char* key) const {
    const auto it = object_.find(key);
    DIFFQ_CHECK(it != object_.end(), owner_, " has no field '", key, "'");
    return *it;
  }

  bool has(const char* key) const { return object_.find(key) != object_.end(); }

  uint64_t unsigned_int(const char* key, uint64_t max = std::numeric_limits<uint64_t>::max()) const {
    const json& value = at(key);
    DIFFQ_CHECK(value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0),
                owner_, ": field '", key, "' is not a non-negative integer");
    const uint64_t v = value.get<uint64_t>();
    DIFFQ_CHECK(v <= max, owner_, ": field '", key, "' = ", v, " exceeds ", max);
    return v;
  }

  int64_t signed_int(const char* key, int64_t min, int64_t max) const {
    const json& value = at(key);
    DIFFQ_CHECK(value.is_number_integer(), owner_, ": field '", key, "' is not an integer");
    DIFFQ_CHECK(value.is_number_unsigned() ? value.get<uint64_t>() <= static_cast<uint64_t>(max)
                                           : (value.get<int64_t>() >= min && value.get<int64_t>() <= max),
                owner_, ": field '", key, "' outside ", min, "..", max);
    return value.get<int64_t>();
  }

  std::string string(const char* key) const {
    const json& value = at(key);
    DIFFQ_CHECK(value.is_string(), owner_, ": field '", key, "' is not a string");
    return value.get<std::string>();
  }

  /// Rejects keys other than `allowed`.
  void only(std::initializer_list<const char*> allowed) const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      bool known = false;
      for (const char* key : allowed) known = known || it.key() == key;
      DIFFQ_CHECK(known, owner_, " has unknown field '", it.key(), "'");
    }
  }

 private:
  const json& object_;
  std::string owner_;
};

/// `parse(text)` (one of the public `parse_*`), its error prefixed by `owner`.
template <typename Parse>
auto parse_named(const Parse& parse, const std::string& text, const std::string& owner) {
  try {
    return parse(text);
  } catch (const Error& e) {
    throw Error(detail::concat(owner, ": ", e.what()));
  }
}

detail::Coding parse_coding(const std::string& text, const std::string& owner) {
  for (detail::Coding c : {detail::Coding::kNone, detail::Coding::kZstd, detail::Coding::kRans}) {
    if (text == detail::coding_name(c)) return c;
  }
  throw Error(detail::concat("unknown coding '", text, "' in ", owner));
}

uint64_t parse_hex(const std::string& text, const std::string& owner) {
  DIFFQ_CHECK(text.size() == 16, owner, ": checksum '", text, "' is not 16 hex digits");
  uint64_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else throw Error(detail::concat(owner, ": checksum '", text, "' is not lowercase hex"));
    value = (value << 4) | static_cast<uint64_t>(digit);
  }
  return value;
}

void parse_params(const json& params, TensorHeader& h, const std::string& owner) {
  const Fields f(params, owner + " params");
  switch (h.encoding) {
    case Encoding::kFloat32:
    case Encoding::kFloat16:
    case Encoding::kInteger:
      f.only({});
      break;
    case Encoding::kPerChannelUniform: {
      f.only({"bits", "channels"});
      h.bits = static_cast<int>(f.signed_int("bits", 1, 16));
      h.channels = f.unsigned_int("channels", uint64_t{1} << 62);
      const uint64_t expected = h.shape.empty() ? 1 : static_cast<uint64_t>(h.shape[0]);
      DIFFQ_CHECK(h.channels == expected, owner, ": has ", h.channels,
                  " channel ranges, expected ", expected, " (its first dimension)");
      break;
    }
    case Encoding::kUniform:
      f.only({"bits", "min_f32", "max_f32"});
      h.bits = static_cast<int>(f.signed_int("bits", 1, 16));
      h.min_f32 = static_cast<uint32_t>(f.unsigned_int("min_f32", 0xffffffffu));
      h.max_f32 = static_cast<uint32_t>(f.unsigned_int("max_f32", 0xffffffffu));
      break;
    case Encoding::kLSQ:
      f.only({"bits", "step_f32"});
      h.bits = static_cast<int>(f.signed_int("bits", 1, 16));
      h.step_f32 = static_cast<uint32_t>(f.unsigned_int("step_f32", 0xffffffffu));
      break;
    case Encoding::kDiffQGroups:
      f.only({"group_size", "min_bits", "min_f32", "max_f32", "width_offset", "width_bits"});
      h.group_size = f.unsigned_int("group_size", uint64_t{1} << 62);
      h.min_bits = static_cast<int>(f.signed_int("min_bits", std::numeric_limits<int32_t>::min(),
                                                 std::numeric_limits<int32_t>::max()));
      h.min_f32 = static_cast<uint32_t>(f.unsigned_int("min_f32", 0xffffffffu));
      h.max_f32 = static_cast<uint32_t>(f.unsigned_int("max_f32", 0xffffffffu));
      h.width_offset = static_cast<int>(f.signed_int("width_offset", 1, 16));
      h.width_bits = static_cast<int>(f.signed_int("width_bits", 0, 4));
      break;
    case Encoding::kProductQuantized:
      f.only({"block_size", "num_centroids", "index_bits"});
      h.block_size = f.unsigned_int("block_size", uint64_t{1} << 62);
      DIFFQ_CHECK(h.block_size >= 1, owner, ": block size must be positive");
      h.num_centroids = f.unsigned_int("num_centroids", 65536);
      DIFFQ_CHECK(h.num_centroids >= 1, owner, ": number of centroids must be positive");
      h.index_bits = static_cast<int>(f.signed_int("index_bits", 0, 16));
      DIFFQ_CHECK(h.index_bits == detail::index_bits_for(h.num_centroids), owner, ": index_bits ",
                  h.index_bits, " does not match ", h.num_centroids, " centroids");
      break;
  }
}

TensorHeader parse_tensor(const json& entry, size_t index, uint32_t version) {
  TensorHeader h;
  const std::string where = detail::concat("tensor #", index);
  const Fields f(entry, where);
  if (version >= 2) {
    f.only({"name", "kind", "aliases", "shape", "dtype", "encoding", "params", "coding", "offset",
            "length", "raw_length", "xxh3"});
  } else {
    f.only({"name", "aliases", "shape", "dtype", "encoding", "params", "coding", "offset",
            "length", "raw_length", "xxh3"});
  }
  h.name = f.string("name");
  DIFFQ_CHECK(!h.name.empty(), where, " has an empty name");
  const std::string owner = "tensor '" + h.name + "'";
  if (version >= 2) h.kind = parse_named(parse_record_kind, Fields(entry, owner).string("kind"), owner);
  const json& aliases = f.at("aliases");
  DIFFQ_CHECK(aliases.is_array(), owner, ": aliases is not an array");
  for (const json& alias : aliases) {
    DIFFQ_CHECK(alias.is_string() && !alias.get<std::string>().empty(), owner,
                ": aliases must be non-empty strings");
    h.aliases.push_back(alias.get<std::string>());
  }
  const json& shape = f.at("shape");
  DIFFQ_CHECK(shape.is_array(), owner, ": shape is not an array");
  DIFFQ_CHECK(shape.size() <= detail::kMaxDims, owner, ": shape has ", shape.size(),
              " dimensions, more than ", detail::kMaxDims);
  h.numel = 1;
  for (const json& d : shape) {
    DIFFQ_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), owner,
                ": dimensions must be non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    DIFFQ_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), owner,
                ": dimension ", dim, " too large");
    h.shape.push_back(static_cast<int64_t>(dim));
    h.numel = detail::checked_mul(h.numel, dim, "the element count");
  }
  DIFFQ_CHECK(h.numel <= (uint64_t{1} << 56), owner, ": ", h.numel, " elements is too many");
  h.dtype = parse_named(parse_dtype, f.string("dtype"), owner);
  h.encoding = parse_named(parse_encoding, f.string("encoding"), owner);
  DIFFQ_CHECK(version >= 2 || !is_integer(h.dtype), owner, ": dtype '", dtype_name(h.dtype),
              "' needs format version 2 (file has version ", version, ")");
  DIFFQ_CHECK(version >= 2 || (h.encoding != Encoding::kInteger &&
                               h.encoding != Encoding::kPerChannelUniform),
              owner, ": encoding '", encoding_name(h.encoding),
              "' needs format version 2 (file has version ", version, ")");
  DIFFQ_CHECK(is_integer(h.dtype) == (h.encoding == Encoding::kInteger), owner, ": dtype '",
              dtype_name(h.dtype), "' cannot be stored with encoding '", encoding_name(h.encoding),
              "' (integer dtypes need the integer encoding, which holds nothing else)");
  parse_params(f.at("params"), h, owner);
  h.coding = parse_coding(f.string("coding"), owner);
  DIFFQ_CHECK(h.coding != detail::Coding::kRans || detail::rans_applies(h.encoding), owner, ": coding 'rans' does not apply to encoding '", encoding_name(h.encoding), "'");
  h.offset = f.unsigned_int("offset", uint64_t{1} << 62);
  h.length = f.unsigned_int("length", uint64_t{1} << 62);
  h.raw_length = f.unsigned_int("raw_length", uint64_t{1} << 62);
  h.checksum = parse_hex(f.string("xxh3"), owner);
  return h;
}

json parse_json(const uint8_t* begin, const uint8_t* end) {
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    DIFFQ_CHECK(depth <= detail::kMaxJsonDepth, "header nests deeper than ",
                detail::kMaxJsonDepth, " levels");
    return true;
  };
  try {
    return json::parse(begin, end, limit_depth);
  } catch (const json::exception& e) {
    throw Error(detail::concat("header is not valid JSON: ", e.what()));
  }
}

/// A file whose preamble, header and layout were checked.
struct ParsedFile {
  uint32_t version = 0;
  uint64_t data_offset = 0;
  json header;
  std::vector<TensorHeader> tensors;
};

ParsedFile parse_file(const uint8_t* data, size_t size, const LoadOptions& options) {
  ParsedFile file;
  DIFFQ_CHECK(size >= 8, "truncated at offset ", size, ": a model file starts with an 8-byte magic");
  DIFFQ_CHECK(std::memcmp(data, detail::kMagic, 8) == 0, "not a diffq model file (bad magic)");
  DIFFQ_CHECK(size >= detail::kPreambleSize, "truncated at offset ", size, ": the preamble needs ",
              detail::kPreambleSize, " bytes");
  file.version = get_u32(data + 8);
  DIFFQ_CHECK(file.version >= kOldestFormatVersion, "invalid format version ", file.version);
  DIFFQ_CHECK(file.version <= kFormatVersion, "format version ", file.version,
              " is newer than supported ", kFormatVersion);
  DIFFQ_CHECK(get_u32(data + 12) == 0, "unknown flags ", get_u32(data + 12), " in the preamble");
  const uint64_t header_length = get_u64(data + 16);
  DIFFQ_CHECK(header_length >= 2 && header_length <= detail::kMaxHeaderLength, "header length ",
              header_length, " outside 2..", detail::kMaxHeaderLength);
  const uint64_t header_end = detail::kPreambleSize + header_length;
  file.data_offset = get_u64(data + 24);
  DIFFQ_CHECK(file.data_offset == detail::align_up(header_end), "data offset ", file.data_offset,
              " should be ", detail::align_up(header_end));
  DIFFQ_CHECK(size >= file.data_offset, "truncated at offset ", size, ": the header needs ",
              file.data_offset, " bytes");
  if (options.verify_checksums()) {
    XXH3_state_t* hash = XXH3_createState();
    DIFFQ_CHECK(hash != nullptr, "out of memory");
    XXH3_64bits_reset(hash);
    XXH3_64bits_update(hash, data, 32);
    XXH3_64bits_update(hash, data + detail::kPreambleSize, header_length);
    const uint64_t digest = XXH3_64bits_digest(hash);
    XXH3_freeState(hash);
    DIFFQ_CHECK(digest == get_u64(data + 32), "checksum mismatch in the header");
  }
  for (uint64_t i = header_end; i < file.data_offset; ++i) {
    DIFFQ_CHECK(data[i] == 0, "non-zero padding byte at offset ", i);
  }
  file.header = parse_json(data + detail::kPreambleSize, data + header_end);
  const Fields top(file.header, "header");
  DIFFQ_CHECK(top.string("format") == "diffq", "header: format is not 'diffq'");
  DIFFQ_CHECK(top.unsigned_int("format_version") == file.version, "header: format_version ",
              top.at("format_version").dump(), " differs from the preamble's ", file.version);
  top.string("method");
  const json& opts = top.at("options");
  DIFFQ_CHECK(opts.is_object(), "header: options is not an object");
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    DIFFQ_CHECK(it->is_string(), "header: option '", it.key(), "' is not a string");
  }
  const json& tensors = top.at("tensors");
  DIFFQ_CHECK(tensors.is_array(), "header: tensors is not an array");
  uint64_t expected_offset = file.data_offset;
  uint64_t end = file.data_offset;
  for (size_t i = 0; i < tensors.size(); ++i) {
    TensorHeader h = parse_tensor(tensors[i], i, file.version);
    expected_offset = detail::align_up(end);
    DIFFQ_CHECK(h.offset >= expected_offset, "payload of tensor '", h.name, "' at offset ",
                h.offset, " overlaps the previous one (ends at ", end, ")");
    DIFFQ_CHECK(h.offset == expected_offset, "hole before the payload of tensor '", h.name,
                "': offset ", h.offset, ", expected ", expected_offset);
    end = detail::checked_add(h.offset, h.length, "a payload end");
    DIFFQ_CHECK(end <= size, "truncated at offset ", size, ": tensor '", h.name,
                "' needs bytes up to ", end);
    file.tensors.push_back(std::move(h));
  }
  // Zero padding between payloads, and no bytes after the last one.
  uint64_t previous_end = file.data_offset;
  for (const auto& h : file.tensors) {
    for (uint64_t i = previous_end; i < h.offset; ++i) {
      DIFFQ_CHECK(data[i] == 0, "non-zero padding byte at offset ", i);
    }
    previous_end = h.offset + h.length;
  }
  DIFFQ_CHECK(end == size, "file has ", size - end, " unexpected bytes after offset ", end);
  const Fields fingerprint(top.at("fingerprint"), "header fingerprint");
  parse_hex(fingerprint.string("xxh3"), "header fingerprint");
  DIFFQ_CHECK(fingerprint.unsigned_int("tensors") == file.tensors.size(),
              "header fingerprint: tensor count differs from the table");
  return file;
}

QuantizedState decode(const uint8_t* data, size_t size, const LoadOptions& options,
                      ParsedFile* parsed_out) {
  ParsedFile file = parse_file(data, size, options);
  QuantizedState state;
  const Fields top(file.header, "header");
  state.method = top.string("method");
  for (auto it = top.at("options").begin(); it != top.at("options").end(); ++it) {
    state.options[it.key()] = it->get<std::string>();
  }
  detail::MemoryBudget budget(options.max_memory());
  std::set<std::string> names;
  uint64_t elements = 0;
  state.tensors.reserve(file.tensors.size());
  for (const TensorHeader& h : file.tensors) {
    DIFFQ_CHECK(names.insert(h.name).second, "tensor name '", h.name, "' appears twice");
    for (const auto& alias : h.aliases) {
      DIFFQ_CHECK(names.insert(alias).second, "tensor name '", alias, "' appears twice");
    }
    const uint8_t* stored = data + h.offset;
    if (options.verify_checksums()) {
      DIFFQ_CHECK(XXH3_64bits(stored, h.length) == h.checksum, "checksum mismatch in tensor '",
                  h.name, "'");
    }
    TensorRecord record;
    record.name = h.name;
    record.kind = h.kind;
    record.aliases = h.aliases;
    record.shape = h.shape;
    record.dtype = h.dtype;
    record.encoding = h.encoding;
    detail::decode_payload(h, stored, record, budget, options.threads());
    elements = detail::checked_add(elements, h.numel, "the element count");
    state.tensors.push_back(std::move(record));
  }
  const Fields fingerprint(top.at("fingerprint"), "header fingerprint");
  DIFFQ_CHECK(fingerprint.unsigned_int("elements") == elements,
              "header fingerprint: element count differs from the table");
  DIFFQ_CHECK(parse_hex(fingerprint.string("xxh3"), "header fingerprint") ==
                  model_fingerprint(state, file.version),
              "model fingerprint mismatch: the tensor table does not match the recorded model");
  validate(state);
  if (parsed_out != nullptr) *parsed_out = std::move(file);
  return state;
}

QuantizedState guarded_decode(const uint8_t* data, size_t size, const LoadOptions& options,
                              ParsedFile* parsed) {
  DIFFQ_CHECK(data != nullptr || size == 0, "null model file buffer");
  try {
    return decode(data, size, options, parsed);
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Error("out of memory while loading the model file");
  } catch (const std::length_error&) {
    throw Error("model file asks for an impossibly large allocation");
  } catch (const nlohmann::json::exception& e) {
    throw Error(detail::concat("invalid model file header: ", e.what()));
  }
}

std::vector<uint8_t> read_file(const std::string& path) {
  // A FIFO or a device is refused before it is opened for reading (opening
  // a FIFO blocks until a writer comes); O_NONBLOCK covers a swap in between.
  require_regular_file(path, "the model file");
  struct stat info {};
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  DIFFQ_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw Error(detail::concat("'", path, "' is not a regular file"));
  }
  std::vector<uint8_t> bytes;
  try {
    bytes.resize(static_cast<size_t>(info.st_size));
  } catch (const std::bad_alloc&) {
    ::close(fd);
    throw Error(detail::concat("'", path, "': out of memory reading ", info.st_size, " bytes"));
  }
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  DIFFQ_CHECK(got == bytes.size(), "cannot read '", path, "'");
  return bytes;
}

FileInfo describe(const uint8_t* data, size_t size, const LoadOptions& options) {
  ParsedFile parsed;
  const QuantizedState state = guarded_decode(data, size, options, &parsed);
  FileInfo info;
  const json& header = parsed.header;
  info.format_version = parsed.version;
  if (header.contains("library") && header["library"].is_object() &&
      header["library"].contains("version") && header["library"]["version"].is_string()) {
    info.library_version = header["library"]["version"].get<std::string>();
  }
  if (header.contains("created") && header["created"].is_object() &&
      header["created"].contains("utc") && header["created"]["utc"].is_string()) {
    info.created_utc = header["created"]["utc"].get<std::string>();
  }
  info.method = state.method;
  info.options = state.options;
  info.fingerprint = header["fingerprint"]["xxh3"].get<std::string>();
  info.file_bytes = size;
  info.header_bytes = parsed.data_offset;
  uint64_t end = parsed.data_offset;
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    const TensorRecord& r = state.tensors[i];
    const TensorHeader& h = parsed.tensors[i];
    TensorInfo t;
    t.name = r.name;
    t.kind = r.kind;
    t.aliases = r.aliases;
    t.shape = r.shape;
    t.dtype = r.dtype;
    t.encoding = r.encoding;
    t.coding = detail::coding_name(h.coding);
    t.numel = r.numel();
    detail::bits_histogram(r, t.bits_histogram);
    t.stored_bytes = h.length;
    t.raw_bytes = h.raw_length;
    t.true_bits = r.true_bits();
    t.mean_bits = r.numel() > 0 ? r.payload_bits() / static_cast<double>(r.numel()) : 0.0;
    info.total_elements += t.numel;
    info.total_stored_bytes += t.stored_bytes;
    info.padding_bytes += h.offset - end;
    end = h.offset + h.length;
    if (r.kind == RecordKind::kBuffer) {
      info.buffer_bytes += t.stored_bytes;
      info.buffer_elements += t.numel;
    } else {
      info.parameter_bytes += t.stored_bytes;
    }
    for (int b = 0; b <= 16; ++b) info.bits_histogram[b] += t.bits_histogram[b];
    info.tensors.push_back(std::move(t));
  }
  info.true_bits = state.true_bits();
  info.buffer_true_bits = state.buffer_bits();
  return info;
}

}  // namespace

QuantizedState load_from_memory(const uint8_t* data, size_t size, const LoadOptions& options) {
  return guarded_decode(data, size, options, nullptr);
}

QuantizedState load(const std::string& path, const LoadOptions& options) {
  const std::vector<uint8_t> bytes = read_file(path);
  try {
    return load_from_memory(bytes.data(), bytes.size(), options);
  } catch (const Error& e) {
    throw Error(detail::concat("'", path, "': ", e.what()));
  }
}

FileInfo inspect_memory(const uint8_t* data, size_t size, const LoadOptions& options) {
  return describe(data, size, options);
}

FileInfo inspect(const std::string& path, const LoadOptions& options) {
  const std::vector<uint8_t> bytes = read_file(path);
  try {
    return describe(bytes.data(), bytes.size(), options);
  } catch (const Error& e) {
    throw Error(detail::concat("'", path, "': ", e.what()));
  }
}

}  // namespace diffq
