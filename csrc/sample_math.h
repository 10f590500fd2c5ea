// Neighbour sampling math that the CPU and the CUDA kernel share, so that one seed gives the
// same sample on both, whatever the thread count or schedule: every random number is a hash of
// (seed, node, draw index) (a counter-based generator, splitmix64's finaliser), not a draw from
// a stream, and each row's sample depends only on its own numbers.
#pragma once

#include <stdint.h>

#include "hd_math.h"

namespace gkd {

GKD_HD uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The i-th random word of `node` under `seed`.
GKD_HD uint64_t draw_word(uint64_t seed, int64_t node, int64_t i) {
  return mix64(mix64(seed ^ mix64(static_cast<uint64_t>(node))) + static_cast<uint64_t>(i));
}

// A uniform integer in [0, n) from a random word: the high word of r * n (Lemire's reduction;
// its bias is below n / 2^64).
GKD_HD int64_t below(uint64_t r, int64_t n) {
#ifdef __CUDA_ARCH__
  return static_cast<int64_t>(__umul64hi(r, static_cast<uint64_t>(n)));
#else
  return static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(n)) >> 64);
#endif
}

// How many of a row's `deg` edges a sample keeps: all with fanout < 0; min(deg, fanout)
// without replacement; fanout draws with replacement (none from an empty row).
GKD_HD int64_t sample_count(int64_t deg, int64_t fanout, bool replace) {
  if (fanout < 0) return deg;
  if (replace) return deg > 0 ? fanout : 0;
  return deg < fanout ? deg : fanout;
}

// Writes the sampled positions within the row (in [0, deg)), ascending, to out[0, count):
// every position when count == deg without replacement; else `count` uniform draws with
// replacement, or a uniform `count`-subset by Floyd's algorithm (count draws whatever the
// degree, O(count^2) membership tests, so a hub costs no more than a leaf).
GKD_HD void sample_row(uint64_t seed, int64_t node, int64_t deg, int64_t count, bool replace,
                       int64_t* out) {
  if (!replace && count == deg) {
    for (int64_t q = 0; q < count; ++q) out[q] = q;
    return;
  }
  if (replace) {
    for (int64_t q = 0; q < count; ++q) out[q] = below(draw_word(seed, node, q), deg);
  } else {
    int64_t m = 0;
    for (int64_t j = deg - count; j < deg; ++j) {
      const int64_t t = below(draw_word(seed, node, j), j + 1);
      bool seen = false;
      for (int64_t q = 0; q < m; ++q) seen = seen || out[q] == t;
      out[m++] = seen ? j : t;
    }
  }
  for (int64_t a = 1; a < count; ++a) {  // insertion sort: the row's edges in CSR order
    const int64_t v = out[a];
    int64_t b = a - 1;
    while (b >= 0 && out[b] > v) {
      out[b + 1] = out[b];
      --b;
    }
    out[b + 1] = v;
  }
}

}  // namespace gkd
