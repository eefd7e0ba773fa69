// Bit-packing throughput per bit-width (1 thread and all threads) against the
// reference packer's figures, and entropy-coded bits/level on Gaussian
// weights quantized uniformly. Prints tables and writes JSON:
//   bench_packing [output.json]   (default bench_packing.json)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "diffq/entropy.h"
#include "diffq/packing.h"

namespace {

using Clock = std::chrono::steady_clock;

// Reference packer (spec section 9), M levels/s at 2 / 4 / 8 bits.
double reference_pack(int bits) { return bits == 2 ? 622 : bits == 4 ? 330 : bits == 8 ? 171 : 0; }
double reference_unpack(int bits) { return bits == 2 ? 390 : bits == 4 ? 234 : bits == 8 ? 115 : 0; }

template <typename F>
double best_seconds(int repeats, const F& run) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

std::vector<uint16_t> gaussian_levels(size_t n, int bits, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> w(n);
  for (auto& x : w) x = normal(rng);
  const float mn = *std::min_element(w.begin(), w.end());
  const float mx = *std::max_element(w.begin(), w.end());
  const float top = static_cast<float>((1u << bits) - 1u);
  std::vector<uint16_t> levels(n);
  for (size_t i = 0; i < n; ++i) {
    levels[i] = static_cast<uint16_t>(std::nearbyint((w[i] - mn) / (mx - mn) * top));
  }
  return levels;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "bench_packing.json";
  CLI::App app{"bench_packing: bit-packing and entropy-coding throughput"};
  app.add_option("--json", out_path, "JSON output")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const size_t n = size_t{16} << 20;
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::mt19937 rng(2024);
  std::vector<uint16_t> values(n), back(n);
  nlohmann::json report = {{"levels", n}, {"threads", all}};

  std::printf("Bit-packing, %zu levels, M levels/s (best of 5); ref = reference packer\n", n);
  std::printf("%4s | %9s %9s %9s %7s | %9s %9s %9s %7s\n", "bits", "pack 1t", "pack all",
              "ref", "x ref", "unpack 1t", "unpack all", "ref", "x ref");
  for (int bits = 1; bits <= 16; ++bits) {
    for (auto& v : values) v = static_cast<uint16_t>(rng() & ((1u << bits) - 1u));
    std::vector<uint8_t> packed(diffq::packed_size(n, bits));
    double rates[4];
    int k = 0;
    for (int threads : {1, all}) {
      const double pack_s = best_seconds(5, [&] { diffq::pack(values.data(), n, bits, packed.data(), threads); });
      const double unpack_s = best_seconds(5, [&] { diffq::unpack(packed.data(), n, bits, back.data(), threads); });
      if (back != values) {
        std::fprintf(stderr, "round trip failed at %d bits\n", bits);
        return 1;
      }
      rates[k++] = n / pack_s / 1e6;
      rates[k++] = n / unpack_s / 1e6;
    }
    const double rp = reference_pack(bits), ru = reference_unpack(bits);
    char pack_ratio[16] = "-", unpack_ratio[16] = "-", rp_text[16] = "-", ru_text[16] = "-";
    if (rp > 0) {
      std::snprintf(pack_ratio, sizeof(pack_ratio), "%.1fx", std::max(rates[0], rates[2]) / rp);
      std::snprintf(unpack_ratio, sizeof(unpack_ratio), "%.1fx", std::max(rates[1], rates[3]) / ru);
      std::snprintf(rp_text, sizeof(rp_text), "%.0f", rp);
      std::snprintf(ru_text, sizeof(ru_text), "%.0f", ru);
    }
    std::printf("%4d | %9.0f %9.0f %9s %7s | %9.0f %9.0f %9s %7s\n", bits, rates[0], rates[2],
                rp_text, pack_ratio, rates[1], rates[3], ru_text, unpack_ratio);
    report["packing"].push_back({{"bits", bits},
                                 {"pack_1_thread", rates[0]},
                                 {"pack_all_threads", rates[2]},
                                 {"unpack_1_thread", rates[1]},
                                 {"unpack_all_threads", rates[3]},
                                 {"reference_pack", rp},
                                 {"reference_unpack", ru}});
  }

  const size_t m = size_t{4} << 20;
  std::printf("\nEntropy coding of Gaussian weights quantized uniformly (%zu levels), bits/level\n", m);
  std::printf("%4s | %8s %8s %8s %8s | %10s %10s\n", "bits", "entropy", "rANS", "zstd-3",
              "zstd-19", "rANS enc", "rANS dec");
  for (int bits : {2, 3, 4, 5, 6, 8, 10, 12}) {
    const auto levels = gaussian_levels(m, bits, rng);
    const double entropy = diffq::empirical_entropy(levels.data(), m);
    std::vector<uint8_t> coded;
    const double enc_s = best_seconds(2, [&] { coded = diffq::rans_encode(levels.data(), m, bits); });
    std::vector<uint16_t> decoded(m);
    const double dec_s = best_seconds(2, [&] { diffq::rans_decode(coded.data(), coded.size(), m, bits, decoded.data()); });
    const auto packed = diffq::pack(levels, bits);
    const auto z3 = diffq::zstd_compress(packed.data(), packed.size(), 3);
    const auto z19 = diffq::zstd_compress(packed.data(), packed.size(), 19);
    const double rans_bits = 8.0 * coded.size() / m;
    const double z3_bits = 8.0 * z3.size() / m, z19_bits = 8.0 * z19.size() / m;
    std::printf("%4d | %8.3f %8.3f %8.3f %8.3f | %8.0f/s %8.0f/s  (M levels)\n", bits, entropy,
                rans_bits, z3_bits, z19_bits, m / enc_s / 1e6, m / dec_s / 1e6);
    report["entropy"].push_back({{"bits", bits},
                                 {"empirical_entropy", entropy},
                                 {"rans_bits_per_level", rans_bits},
                                 {"zstd3_bits_per_level", z3_bits},
                                 {"zstd19_bits_per_level", z19_bits},
                                 {"rans_encode_mlevels_s", m / enc_s / 1e6},
                                 {"rans_decode_mlevels_s", m / dec_s / 1e6}});
  }
  std::ofstream(out_path) << report.dump(2) << "\n";
  std::printf("\nwrote %s\n", out_path.c_str());
  return 0;
}
