/* rng.c - the library's deterministic random numbers, the same on every
 * backend and machine: initialization and the epochs' permutations. */
#include <math.h>

#include "internal.h"

/* ---- RNG: SplitMix64 seeds xoshiro256** (Blackman & Vigna). ---- */
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void bp_rng_seed(bp_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; ++i) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bp_rng_next(bp_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double bp_rng_uniform(bp_rng *rng) { return (double)(bp_rng_next(rng) >> 11) * 0x1.0p-53; }

double bp_rng_normal(bp_rng *rng) {
  /* Box-Muller with u1 in (0, 1] so log never sees 0; one value per call keeps
   * the draw order trivially reproducible. */
  double u1 = 1.0 - bp_rng_uniform(rng);
  double u2 = bp_rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

uint64_t bp_rng_below(bp_rng *rng, uint64_t bound) {
  /* Rejection sampling removes the modulo bias. */
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t r = bp_rng_next(rng);
    if (r >= threshold) return r % bound;
  }
}
