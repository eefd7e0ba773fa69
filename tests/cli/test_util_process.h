#pragma once
// Helpers of the reliability tests: the tool as a child process (signals,
// time, peak memory), and model files rewritten as a hostile user would.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace cli_test {

/// The tool running as a child process, its stdout and stderr in files.
struct Child {
  pid_t pid = -1;
  std::string out_path, err_path;
};

/// How a child ended.
struct Ended {
  /// False when it was still running at the deadline (then killed).
  bool ended = false;
  /// Its exit status, or 128 + the signal that killed it.
  int status = -1;
  /// True when a signal ended it (`status` is then 128 + the signal).
  bool signaled = false;
  /// Peak resident memory, in kB.
  long max_rss_kb = 0;
};

/// Starts the tool with `args`, stdout and stderr into files under `dir`
/// named after `name`.
inline Child spawn(const std::vector<std::string>& args, const std::string& dir, const std::string& name) {
  Child c;
  c.out_path = dir + "/" + name + ".out";
  c.err_path = dir + "/" + name + ".err";
  std::vector<std::string> all = {DIFFQ_TOOL};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  c.pid = ::fork();
  if (c.pid == 0) {  // only async-signal-safe calls until exec
    const int out = ::open(c.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(c.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return c;
}

/// Waits at most `seconds` for `child` to end (then kills it).
inline Ended wait_for(const Child& child, double seconds) {
  Ended e;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  struct rusage usage {};
  while (true) {
    const pid_t got = ::wait4(child.pid, &status, WNOHANG, &usage);
    if (got == child.pid) {
      e.ended = true;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(child.pid, SIGKILL);
      ::wait4(child.pid, &status, 0, &usage);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  e.signaled = WIFSIGNALED(status);
  e.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  e.max_rss_kb = usage.ru_maxrss;
  return e;
}

/// Waits (at most `seconds`) until `pid` has a handler installed for
/// `signal` (its SigCgt mask in /proc); false at the deadline.
inline bool wait_for_handler(pid_t pid, int signal, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("SigCgt:", 0) == 0 && ((std::stoull(line.substr(7), nullptr, 16) >> (signal - 1)) & 1)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

/// The whole text of a file.
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// The bytes of a file.
inline std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string text = read_text(path);
  return std::vector<uint8_t>(text.begin(), text.end());
}

/// A model file taken apart: its header and its tensors' payloads.
struct FileParts {
  nlohmann::json header;
  std::vector<std::vector<uint8_t>> payloads;
};

inline uint64_t get_u64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + size_t(i)];
  return v;
}

inline void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
}

inline std::string hex16(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

inline FileParts take_apart(const std::vector<uint8_t>& bytes) {
  FileParts p;
  const uint64_t length = get_u64(bytes, 16);
  p.header = nlohmann::json::parse(bytes.begin() + 40, bytes.begin() + 40 + long(length));
  for (const auto& t : p.header["tensors"]) {
    const uint64_t at = t["offset"], n = t["length"];
    p.payloads.emplace_back(bytes.begin() + long(at), bytes.begin() + long(at + n));
  }
  return p;
}

/// Rebuilds a model file from (edited) parts: offsets, lengths, payload and
/// header checksums recomputed, so that only what the edit means is wrong.
inline std::vector<uint8_t> put_together(FileParts p) {
  const auto align = [](uint64_t v) { return (v + 63) / 64 * 64; };
  for (size_t i = 0; i < p.payloads.size(); ++i) {
    p.header["tensors"][i]["length"] = p.payloads[i].size();
    p.header["tensors"][i]["xxh3"] = hex16(XXH3_64bits(p.payloads[i].data(), p.payloads[i].size()));
  }
  std::string text;
  for (int pass = 0; pass < 4; ++pass) {  // offsets change the header's length, which moves them
    text = p.header.dump();
    uint64_t end = align(40 + text.size());
    for (size_t i = 0; i < p.payloads.size(); ++i) {
      end = align(end);
      p.header["tensors"][i]["offset"] = end;
      end += p.payloads[i].size();
    }
  }
  text = p.header.dump();
  const uint64_t data_offset = align(40 + text.size());
  std::vector<uint8_t> out(data_offset, 0);
  const uint8_t magic[8] = {0x89, 'D', 'I', 'F', 'F', 'Q', '\r', '\n'};
  std::copy(magic, magic + 8, out.begin());
  put_u64(out, 8, p.header["format_version"].get<uint64_t>());
  put_u64(out, 16, text.size());
  put_u64(out, 24, data_offset);
  std::copy(text.begin(), text.end(), out.begin() + 40);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, out.data(), 32);
  XXH3_64bits_update(state, out.data() + 40, text.size());
  put_u64(out, 32, XXH3_64bits_digest(state));
  XXH3_freeState(state);
  for (size_t i = 0; i < p.payloads.size(); ++i) {
    out.resize(p.header["tensors"][i]["offset"].get<uint64_t>(), 0);
    out.insert(out.end(), p.payloads[i].begin(), p.payloads[i].end());
  }
  return out;
}

}  // namespace cli_test
