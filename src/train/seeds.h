#pragma once
// Seeds of the training library's random streams (private): each stream is
// a pure function of (run seed, position, purpose), so a resumed run draws
// exactly what an uninterrupted one does.
#include <cstdint>

#include <ATen/CPUGeneratorImpl.h>

namespace diffq {
namespace train {

/// Purposes of the streams derived from the run seed.
enum class Stream : uint64_t {
  kInit = 1,         ///< model initialisation (position 0)
  kOrder = 2,        ///< data order (position: epoch)
  kAugment = 3,      ///< augmentation (position: global step)
  kGlobal = 4,       ///< the global generator during a step (position: global step)
};

/// A 63-bit seed mixing (seed, position, purpose) (splitmix-style).
inline uint64_t derive_seed(uint64_t seed, uint64_t position, Stream purpose) {
  const uint64_t c = static_cast<uint64_t>(purpose);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ (position + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
               (c + 0x94D049BB133111EBull) * 0xD6E8FEB86659FD93ull;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x >> 1;  // positive as int64 (torch seeds)
}

/// A CPU generator seeded with `seed`.
inline at::Generator seeded_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

}  // namespace train
}  // namespace diffq
