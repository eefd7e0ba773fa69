// Bit-packing: dispatch to the kernels, tails, and threading over chunks.
#include "diffq/packing.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <thread>

#include "diffq/error.h"
#include "packing_kernels.h"

namespace diffq {
namespace {

using PackKernel = void (*)(const uint16_t*, size_t, int, uint8_t*);
using UnpackKernel = void (*)(const uint8_t*, size_t, int, uint16_t*);

struct Kernels {
  PackKernel pack;
  UnpackKernel unpack;
};

Kernels select_kernels() {
#if defined(DIFFQ_HAVE_AVX2_KERNELS) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx2")) {
    return {detail::avx2::pack_whole_groups, detail::avx2::unpack_whole_groups};
  }
#endif
  return {detail::generic::pack_whole_groups, detail::generic::unpack_whole_groups};
}

const Kernels& kernels() {
  static const Kernels selected = select_kernels();
  return selected;
}

// Below this many values per thread, threads cost more than they save.
constexpr size_t kMinValuesPerThread = size_t{1} << 19;

void check_bits(int bits) {
  DIFFQ_CHECK(bits >= 0 && bits <= 16, "bit-width ", bits, " outside 0..16");
}

int thread_count(int threads, size_t count) {
  DIFFQ_CHECK(threads >= 0, "thread count ", threads, " is negative");
  size_t wanted = threads == 0 ? std::max(1u, std::thread::hardware_concurrency())
                               : static_cast<size_t>(threads);
  wanted = std::min(wanted, std::max<size_t>(1, count / kMinValuesPerThread));
  return static_cast<int>(wanted);
}

// Runs body(begin, end) over [0, count) split into `parts` chunks whose
// boundaries are multiples of 64 values (whole words at any bit-width).
template <typename Body>
void for_chunks(size_t count, int parts, const Body& body) {
  if (parts <= 1) {
    body(size_t{0}, count);
    return;
  }
  const size_t per = ((count / parts) + 63) / 64 * 64;
  std::vector<std::thread> workers;
  size_t begin = 0;
  for (int t = 0; t < parts - 1 && begin + per < count; ++t, begin += per) {
    workers.emplace_back(body, begin, begin + per);
  }
  body(begin, count);
  for (auto& worker : workers) worker.join();
}

// Values [begin, end) where begin is a multiple of 8: whole groups by the
// kernel, the final partial group bit by bit. `out` is the whole stream.
void pack_range(const uint16_t* values, size_t begin, size_t end, int bits, uint8_t* out) {
  const size_t whole_end = begin + (end - begin) / 8 * 8;
  kernels().pack(values + begin, whole_end - begin, bits, out + begin / 8 * bits);
  const uint32_t mask = (1u << bits) - 1u;
  for (size_t i = whole_end; i < end; ++i) {
    uint32_t value = values[i] & mask;
    size_t bit = i * bits;
    for (int left = bits; left > 0;) {
      const int shift = static_cast<int>(bit & 7);
      const int take = std::min(left, 8 - shift);
      out[bit >> 3] = static_cast<uint8_t>(out[bit >> 3] | ((value & ((1u << take) - 1u)) << shift));
      value >>= take;
      bit += take;
      left -= take;
    }
  }
}

void unpack_range(const uint8_t* packed, size_t begin, size_t end, int bits, uint16_t* out) {
  const size_t whole_end = begin + (end - begin) / 8 * 8;
  kernels().unpack(packed + begin / 8 * bits, whole_end - begin, bits, out + begin);
  for (size_t i = whole_end; i < end; ++i) {
    uint32_t value = 0;
    size_t bit = i * bits;
    for (int got = 0; got < bits;) {
      const int shift = static_cast<int>(bit & 7);
      const int take = std::min(bits - got, 8 - shift);
      value |= ((static_cast<uint32_t>(packed[bit >> 3]) >> shift) & ((1u << take) - 1u)) << got;
      got += take;
      bit += take;
    }
    out[i] = static_cast<uint16_t>(value);
  }
}

}  // namespace

int bit_length(uint32_t value) {
  int n = 0;
  while (value != 0) {
    ++n;
    value >>= 1;
  }
  return n;
}

size_t packed_size(size_t count, int bits) {
  check_bits(bits);
  DIFFQ_CHECK(count <= std::numeric_limits<size_t>::max() / 16 - 64, "cannot pack ", count,
              " values: too many");
  return (count * static_cast<size_t>(bits) + 63) / 64 * 8;
}

void pack(const uint16_t* values, size_t count, int bits, uint8_t* out, int threads) {
  const size_t bytes = packed_size(count, bits);
  if (bits == 0 || count == 0) return;
  // The tail and padding are OR-ed into zeroed bytes.
  const size_t whole_bytes = count / 8 * bits;
  std::memset(out + whole_bytes, 0, bytes - whole_bytes);
  for_chunks(count, thread_count(threads, count), [&](size_t begin, size_t end) {
    pack_range(values, begin, end, bits, out);
  });
}

void unpack(const uint8_t* packed, size_t count, int bits, uint16_t* out, int threads) {
  check_bits(bits);
  if (count == 0) return;
  if (bits == 0) {
    std::fill(out, out + count, uint16_t{0});
    return;
  }
  for_chunks(count, thread_count(threads, count), [&](size_t begin, size_t end) {
    unpack_range(packed, begin, end, bits, out);
  });
}

std::vector<uint8_t> pack(const std::vector<uint16_t>& values, int bits, int threads) {
  std::vector<uint8_t> out(packed_size(values.size(), bits));
  pack(values.data(), values.size(), bits, out.data(), threads);
  return out;
}

std::vector<uint16_t> unpack(const std::vector<uint8_t>& packed, size_t count, int bits,
                             int threads) {
  const size_t bytes = packed_size(count, bits);
  DIFFQ_CHECK(packed.size() == bytes, "packed stream of ", count, " values at ", bits,
              " bits needs ", bytes, " bytes, got ", packed.size());
  std::vector<uint16_t> out(count);
  unpack(packed.data(), count, bits, out.data(), threads);
  return out;
}

bool padding_is_zero(const uint8_t* packed, size_t count, int bits) {
  const size_t bytes = packed_size(count, bits);
  const size_t used_bits = count * static_cast<size_t>(bits);
  size_t byte = used_bits / 8;
  if (used_bits % 8 != 0) {
    if ((packed[byte] >> (used_bits % 8)) != 0) return false;
    ++byte;
  }
  for (; byte < bytes; ++byte) {
    if (packed[byte] != 0) return false;
  }
  return true;
}

}  // namespace diffq
