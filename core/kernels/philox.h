// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the counter-based generator behind moegrad's RNG. Same constants as curand and
// PyTorch. Header-only and free of the standard library so CUDA kernels can share it.
//
// How moegrad maps a generator state (seed, offset) to numbers
// -------------------------------------------------------------
// key     = seed split in two u32: k0 = low 32 bits, k1 = high 32 bits.
// counter = 128 bits; the block index b (a u64) sits in the low 64 bits: c0 = lo32(b),
//           c1 = hi32(b), c2 = c3 = 0. One block = philox(counter, key) = 4 x u32 lanes.
// An op drawing n values takes blocks offset, offset + 1, ... and advances the generator's
// offset by the number of blocks it used (Generator::advance):
//   f32 uniform  : element i = lane i%4 of block offset + i/4;  U = (u >> 8) * 2^-24 in [0,1).
//                  ceil(n/4) blocks.
//   f64 uniform  : element i = lanes 2(i%2) (low word) and 2(i%2)+1 (high word) of block
//                  offset + i/2; U = (u64 >> 11) * 2^-53 in [0,1). ceil(n/2) blocks.
//   normal       : element i uses the whole block offset + i (n blocks). Box-Muller, cos branch:
//                  z = sqrt(-2 log u1) * cos(2 pi u2), u1 = 1 - U_a in (0,1], u2 = U_b in [0,1);
//                  f32: U_a, U_b = lanes 0, 1 as f32 uniforms; f64: lanes (0,1), (2,3) as f64.
//   uniform(lo,hi): lo + (hi - lo) * U (same draws as rand), kept below hi.
//   gumbel       : same draws as rand; G = -log(max(-log(max(U, 1e-20)), 1e-20)) in the
//                  output dtype.
// Everything is a pure function of (seed, block index, lane): results do not depend on the
// thread count or the device.
#pragma once
#include <cstdint>

#ifndef MOEGRAD_HOST_DEVICE
#ifdef __CUDACC__
#define MOEGRAD_HOST_DEVICE __host__ __device__
#else
#define MOEGRAD_HOST_DEVICE
#endif
#endif

namespace moegrad::core {

struct PhiloxBlock {
  std::uint32_t v[4];
};

struct Philox4x32 {
  static constexpr std::uint32_t kM0 = 0xD2511F53u;
  static constexpr std::uint32_t kM1 = 0xCD9E8D57u;
  static constexpr std::uint32_t kW0 = 0x9E3779B9u;  // golden ratio
  static constexpr std::uint32_t kW1 = 0xBB67AE85u;  // sqrt(3) - 1
  static constexpr int kRounds = 10;

  // The raw bijection: 10 rounds on a 128-bit counter under a 64-bit key.
  MOEGRAD_HOST_DEVICE static inline PhiloxBlock apply(PhiloxBlock c, std::uint32_t k0,
                                                      std::uint32_t k1) {
    for (int r = 0; r < kRounds; ++r) {
      if (r > 0) {
        k0 += kW0;
        k1 += kW1;
      }
      const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c.v[0];
      const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c.v[2];
      const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
      const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
      c = PhiloxBlock{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    }
    return c;
  }

  // Block `index` of the stream keyed by `seed` (the mapping documented above).
  MOEGRAD_HOST_DEVICE static inline PhiloxBlock block(std::uint64_t seed, std::uint64_t index) {
    PhiloxBlock c{{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32), 0u, 0u}};
    return apply(c, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  }
};

// u32 -> f32 in [0, 1) with 24 random bits.
MOEGRAD_HOST_DEVICE inline float philox_uniform_f32(std::uint32_t u) {
  return static_cast<float>(u >> 8) * (1.0f / 16777216.0f);
}
// (low, high) u32 -> f64 in [0, 1) with 53 random bits.
MOEGRAD_HOST_DEVICE inline double philox_uniform_f64(std::uint32_t lo, std::uint32_t hi) {
  const std::uint64_t x = (static_cast<std::uint64_t>(hi) << 32) | lo;
  return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);
}

// splitmix64 (Steele, Lea, Flood 2014): a 64-bit mixer that derives independent seeds and keys
// from a seed (the data streams' Philox keys, each micro-batch's draw seed).
MOEGRAD_HOST_DEVICE inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace moegrad::core
