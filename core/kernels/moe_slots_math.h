// The slot assignment of MoE routing, shared by the CPU and CUDA kernels (core/cpu/moe.cpp,
// core/cuda/moe.cu) so both devices give the same slots. One call handles one group of n
// tokens; groups are independent (CPU: one OpenMP iteration each, GPU: one thread each).
//
// Order (st-moe, and lucidrains' Top2Gating for k = 2; spec §3.2): choice-major, then sequence
// order; the j-th choices of expert e start after the kept choices 0..j-1 of e; a choice is kept
// iff its slot < capacity.
#pragma once
#include <cstdint>

#include "core/kernels/philox.h"  // MOEGRAD_HOST_DEVICE

namespace moegrad::core::moe_math {

struct SlotGroupArgs {
  const std::int64_t* expert;  // [G * n, k], local expert id in [0, E)
  const std::uint8_t* active;  // [G * n, k] or null (all routed)
  std::int64_t n, k, E, capacity;
  std::int64_t groups_per_outer;  // G / outer: groups that share one set of E experts
  std::int64_t* position;    // [G * n, k] out: slot, >= capacity when dropped, -1 not routed
  std::int64_t* padded_row;  // [G * n, k] out: row of the padded [X, G / outer, capacity] buffer or -1
  std::int64_t* routed;      // [G, E] out
  std::int64_t* kept;        // [G, E] out
};

// Assigns group g's slots; taken is scratch of E values. Returns the index of the first expert id
// outside [0, E) (whose choices are left unrouted), or -1.
MOEGRAD_HOST_DEVICE inline std::int64_t assign_group_slots(const SlotGroupArgs& a, std::int64_t g,
                                                           std::int64_t* taken) {
  std::int64_t bad = -1;
  std::int64_t* routed = a.routed + g * a.E;
  std::int64_t* kept = a.kept + g * a.E;
  for (std::int64_t e = 0; e < a.E; ++e) routed[e] = kept[e] = 0;
  // Flat expert x = outer block * E + e; rows of x: [x * Gl * c, (x + 1) * Gl * c), group-major.
  const std::int64_t outer_block = g / a.groups_per_outer, g_local = g % a.groups_per_outer;
  for (std::int64_t j = 0; j < a.k; ++j) {
    for (std::int64_t e = 0; e < a.E; ++e) taken[e] = kept[e];  // base: kept choices < j
    for (std::int64_t t = 0; t < a.n; ++t) {
      const std::int64_t i = (g * a.n + t) * a.k + j;
      a.position[i] = -1;
      a.padded_row[i] = -1;
      const std::int64_t e = a.expert[i];
      if (e < 0 || e >= a.E) {
        if (bad < 0) bad = i;
        continue;
      }
      if (a.active && !a.active[i]) continue;
      const std::int64_t slot = taken[e]++;
      a.position[i] = slot;
      ++routed[e];
      if (slot < a.capacity) {
        ++kept[e];
        const std::int64_t x = outer_block * a.E + e;
        a.padded_row[i] = (x * a.groups_per_outer + g_local) * a.capacity + slot;
      }
    }
  }
  return bad;
}

}  // namespace moegrad::core::moe_math
