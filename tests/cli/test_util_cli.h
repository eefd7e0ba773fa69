#pragma once
// Helpers of the command-line tool's tests.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"

namespace cli_test {

struct Run {
  int status = 0;
  std::string out, err;
};

inline Run run(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  Run r;
  r.status = diffq::cli::run(args, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

/// A fresh directory private to this test process (ctest runs tests in
/// parallel, each in its own process: the pid keeps them apart).
inline std::string temp_dir(const std::string& name) {
  auto p = std::filesystem::path(::testing::TempDir()) /
           ("diffq_cli_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

inline std::vector<uint8_t> idx_bytes(const std::vector<int64_t>& shape, const std::vector<uint8_t>& values) {
  std::vector<uint8_t> b = {0, 0, 0x08, uint8_t(shape.size())};
  for (auto d : shape)
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t((d >> s) & 0xff));
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

// A synthetic, learnable Fashion-MNIST-shaped data set (plain IDX files
// under the .gz names; the reader detects gzip by its magic): class c has a
// bright 6x6 square at a class-dependent position, plus noise.
inline std::string tiny_fashion(int64_t train = 256, int64_t test = 128) {
  static std::string dir;
  if (!dir.empty()) return dir;
  dir = temp_dir("tiny_fashion");
  uint32_t state = 12345;
  auto rnd = [&] { state = state * 1664525u + 1013904223u; return state >> 24; };
  for (auto split : {std::make_pair(std::string("train"), train), std::make_pair(std::string("t10k"), test)}) {
    const int64_t n = split.second;
    std::vector<uint8_t> images(static_cast<size_t>(n * 784));
    std::vector<uint8_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int c = int(i % 10);
      labels[size_t(i)] = uint8_t(c);
      for (int p = 0; p < 784; ++p) images[size_t(i * 784 + p)] = uint8_t(rnd() / 4);
      const int r0 = 2 + (c / 5) * 12, c0 = 2 + (c % 5) * 5;
      for (int y = r0; y < r0 + 6; ++y)
        for (int x = c0; x < c0 + 4; ++x) images[size_t(i * 784 + y * 28 + x)] = 250;
    }
    write_bytes(dir + "/" + split.first + "-images-idx3-ubyte.gz", idx_bytes({n, 28, 28}, images));
    write_bytes(dir + "/" + split.first + "-labels-idx1-ubyte.gz", idx_bytes({n}, labels));
  }
  return dir;
}

inline bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

}  // namespace cli_test
