// Writing model files: header, layout, and the atomic save.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include "diffq/version.h"
#include "diffq/version.h"
#include "format_internal.h"


namespace diffq {
namespace {

using nlohmann::json;

/// A file ready to be written: preamble + header + padding, then payloads.
struct EncodedFile {
  std::vector<uint8_t> head;
  std::vector<std::vector<uint8_t>> payloads;
  uint64_t size = 0;
};

void put_u64(uint8_t* p, uint64_t value) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(value >> (8 * i));
}

std::string utc_time(int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm parts{};
  DIFFQ_CHECK(gmtime_r(&t, &parts) != nullptr, "invalid creation time ", seconds);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

EncodedFile encode_file(const QuantizedState& state, const SaveOptions& options) {
  validate(state);
  DIFFQ_CHECK(options.zstd_level() >= 1 && options.zstd_level() <= 22, "zstd level ",
              options.zstd_level(), " outside 1..22");
  EncodedFile file;
  json tensors = json::array();
  std::vector<detail::EncodedPayload> encoded;
  encoded.reserve(state.tensors.size());
  int64_t elements = 0;
  for (const auto& record : state.tensors) {
    encoded.push_back(detail::encode_payload(record, options));
    elements += record.numel();
  }
  // Offsets depend on the header length, which depends on the offsets'
  // digits: iterate until the data offset is stable.
  uint64_t data_offset = detail::kAlignment;
  std::string header_text;
  for (int attempt = 0;; ++attempt) {
    DIFFQ_CHECK(attempt < 8, "could not lay out the file header");
    tensors = json::array();
    uint64_t offset = data_offset;
    for (size_t i = 0; i < state.tensors.size(); ++i) {
      const auto& r = state.tensors[i];
      const auto& p = encoded[i];
      offset = detail::align_up(offset);
      tensors.push_back({{"name", r.name},
                         {"kind", record_kind_name(r.kind)},
                         {"aliases", r.aliases},
                         {"shape", r.shape},
                         {"dtype", dtype_name(r.dtype)},
                         {"encoding", encoding_name(r.encoding)},
                         {"params", p.params},
                         {"coding", detail::coding_name(p.coding)},
                         {"offset", offset},
                         {"length", p.bytes.size()},
                         {"raw_length", p.raw_length},
                         {"xxh3", detail::to_hex(XXH3_64bits(p.bytes.data(), p.bytes.size()))}});
      offset += p.bytes.size();
      file.size = offset;
    }
    if (state.tensors.empty()) file.size = data_offset;
    const int64_t now = options.creation_time() >= 0
                            ? options.creation_time()
                            : static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count());
    json header = {
        {"format", "diffq"},
        {"format_version", kFormatVersion},
        {"library", {{"name", "diffq"}, {"version", kVersion}}},
        {"created", {{"utc", utc_time(now)}}},
        {"method", state.method},
        {"options", state.options},
        {"fingerprint", {{"xxh3", detail::to_hex(model_fingerprint(state))},
                         {"tensors", state.tensors.size()},
                         {"elements", elements}}},
        {"tensors", tensors}};
    try {
      header_text = header.dump();
    } catch (const json::exception& e) {
      throw Error(detail::concat("cannot write the header (names and options must be UTF-8): ",
                                 e.what()));
    }
    const uint64_t needed = detail::align_up(detail::kPreambleSize + header_text.size());
    if (needed == data_offset) break;
    data_offset = needed;
  }
  file.head.assign(data_offset, 0);
  std::memcpy(file.head.data(), detail::kMagic, 8);
  const uint32_t version = kFormatVersion;
  for (int i = 0; i < 4; ++i) file.head[8 + i] = static_cast<uint8_t>(version >> (8 * i));
  put_u64(file.head.data() + 16, header_text.size());
  put_u64(file.head.data() + 24, data_offset);
  std::memcpy(file.head.data() + detail::kPreambleSize, header_text.data(), header_text.size());
  XXH3_state_t* hash = XXH3_createState();
  DIFFQ_CHECK(hash != nullptr, "out of memory");
  XXH3_64bits_reset(hash);
  XXH3_64bits_update(hash, file.head.data(), 32);
  XXH3_64bits_update(hash, header_text.data(), header_text.size());
  put_u64(file.head.data() + 32, XXH3_64bits_digest(hash));
  XXH3_freeState(hash);
  for (auto& p : encoded) file.payloads.push_back(std::move(p.bytes));
  return file;
}

/// Calls `write(bytes, size)` for every piece of the file, padding included.
template <typename Write>
void write_pieces(const EncodedFile& file, const Write& write) {
  static const uint8_t zeros[detail::kAlignment] = {};
  uint64_t at = file.head.size();
  write(file.head.data(), file.head.size());
  for (const auto& payload : file.payloads) {
    const uint64_t aligned = detail::align_up(at);
    if (aligned != at) write(zeros, aligned - at);
    write(payload.data(), payload.size());
    at = aligned + payload.size();
  }
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string temporary_prefix(const std::string& path) {
  return "." + base_of(path) + ".diffq-tmp.";
}

}  // namespace

std::vector<uint8_t> serialize(const QuantizedState& state, const SaveOptions& options) {
  const EncodedFile file = encode_file(state, options);
  std::vector<uint8_t> out;
  out.reserve(file.size);
  write_pieces(file, [&](const uint8_t* bytes, size_t size) { out.insert(out.end(), bytes, bytes + size); });
  return out;
}

int remove_stale_temporaries(const std::string& path) {
  const std::string directory = directory_of(path);
  const std::string prefix = temporary_prefix(path);
  DIR* dir = opendir(directory.c_str());
  if (dir == nullptr) return 0;
  std::vector<std::string> stale;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    // The rest is "<pid>.<random>".
    const std::string rest = name.substr(prefix.size());
    char* end = nullptr;
    const long pid = std::strtol(rest.c_str(), &end, 10);
    if (end == rest.c_str() || *end != '.' || pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // writer alive
    stale.push_back(directory + "/" + name);
  }
  closedir(dir);
  int removed = 0;
  for (const auto& file : stale) removed += ::unlink(file.c_str()) == 0 ? 1 : 0;
  return removed;
}

void save(const QuantizedState& state, const std::string& path, const SaveOptions& options) {
  DIFFQ_CHECK(!path.empty() && path.back() != '/', "invalid model file path '", path, "'");
  const EncodedFile file = encode_file(state, options);
  remove_stale_temporaries(path);
  const std::string directory = directory_of(path);
  std::random_device entropy;
  const std::string temporary = directory + "/" + temporary_prefix(path) +
                                std::to_string(getpid()) + "." +
                                detail::to_hex((uint64_t{entropy()} << 32) | entropy());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  DIFFQ_CHECK(fd >= 0, "cannot create '", temporary, "': ", std::strerror(errno));
  FILE* out = fdopen(fd, "wb");
  if (out == nullptr) {
    const int error = errno;
    ::close(fd);
    ::unlink(temporary.c_str());
    throw Error(detail::concat("cannot open '", temporary, "': ", std::strerror(error)));
  }
  const auto fail = [&](const char* step, int error) {
    if (out != nullptr) std::fclose(out);
    ::unlink(temporary.c_str());
    throw Error(detail::concat("cannot save '", path, "': ", step, " failed: ",
                               std::strerror(error)));
  };
  write_pieces(file, [&](const uint8_t* bytes, size_t size) {
    if (size != 0 && std::fwrite(bytes, 1, size, out) != size) fail("write", errno);
  });
  if (std::fflush(out) != 0) fail("flush", errno);
  if (::fsync(fileno(out)) != 0) fail("fsync", errno);
  const int closed = std::fclose(out);
  out = nullptr;
  if (closed != 0) fail("close", errno);
  if (std::rename(temporary.c_str(), path.c_str()) != 0) fail("rename", errno);
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIFFQ_CHECK(dir_fd >= 0, "saved '", path, "' but cannot open its directory to sync it: ",
              std::strerror(errno));
  const int synced = ::fsync(dir_fd);
  const int error = errno;
  ::close(dir_fd);
  DIFFQ_CHECK(synced == 0, "saved '", path, "' but cannot sync its directory: ",
              std::strerror(error));
}

}  // namespace diffq
