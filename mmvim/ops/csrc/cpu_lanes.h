// Vectors of floats for mmvim's CPU kernels, written with GCC/Clang vector
// types: built with -O3 and the installing machine's instruction set they
// become AVX-512, AVX2 or NEON registers. The transcendentals give the same
// bits as cpu_math.h's scalar ones, so a vectorised path and a scalar path
// of one kernel agree exactly.
#pragma once

#ifdef __AVX__
#include <immintrin.h>
#endif

#include "cpu_math.h"
#include "stable_tensor.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mmvim {

// Math<float>::exp2 on a vector of floats V (I: its int32 twin): the same
// clamp, rounding to nearest even, polynomial and power of two, so both give
// the same bits. AVX-512 has an instruction each for the reduction and the
// scaling by 2^k; elsewhere the scaling adds k to the exponent field of the
// polynomial's value (in [2^-0.5, 2^0.5], so the result stays a normal
// number for every clamped k and equals p * 2^k exactly), an integer add
// that leaves the multiply units to the scan. kNonPositive: the caller knows
// x <= 0 (dt >= 0, A <= 0, as in every Mamba layer), so the upper clamp,
// which never applies there, is skipped; kAboveLow: it knows x >= -115 too,
// and the lower clamp goes as well (one vector operation: 1.65 -> 1.55 ns
// per 8 decays on Zen 3 with the degree-6 polynomial of the time).
template <typename V, typename I, bool kNonPositive = false, bool kAboveLow = false>
inline V exp2_vec(V x) {
  static_assert(kNonPositive || !kAboveLow, "kAboveLow is for x in [-115, 0]");
  const V low = V{} - 115.f, high = V{} + 126.f;
  if constexpr (!kAboveLow) {
#if defined(__AVX__)
    if constexpr (sizeof(V) == 32) {
      x = (V)_mm256_max_ps((__m256)x, (__m256)low);  // one instruction, not compare + blend
    } else {
      x = x < low ? low : x;
    }
#else
    x = x < low ? low : x;
#endif
  }
  if constexpr (!kNonPositive) x = x > high ? high : x;
#ifdef __AVX512F__
  constexpr bool kAvx512 = sizeof(V) == 64;
#else
  constexpr bool kAvx512 = false;
#endif
  V k, f;
  I k_int;
  if constexpr (kAvx512) {
#ifdef __AVX512DQ__
    // f = x - rint(x) in one instruction, then k = x - f (both exact, so
    // the same f and k): VRNDSCALEPS is two micro-ops on Intel's vector
    // port 0, VREDUCEPS one, and the scan's recurrence is bound by those
    // ports (10% faster on a Xeon, same bits).
    f = (V)_mm512_maskz_reduce_ps(0xffff, (__m512)x, _MM_FROUND_TO_NEAREST_INT);
    k = x - f;
#elif defined(__AVX512F__)
    k = (V)_mm512_maskz_roundscale_ps(0xffff, (__m512)x, _MM_FROUND_TO_NEAREST_INT);
    f = x - k;
#endif
  } else {
#if defined(__AVX__)
    if constexpr (sizeof(V) == 32) {
      // Converting rounds to nearest even (MXCSR's default), as the
      // 1.5 * 2^23 addition below does; two conversions, not three adds.
      k_int = (I)_mm256_cvtps_epi32((__m256)x);
      k = __builtin_convertvector(k_int, V);
    } else {
      k = (x + 12582912.f) - 12582912.f;  // 1.5 * 2^23: exact for |x| < 2^22
      k_int = __builtin_convertvector(k, I);
    }
#else
    k = (x + 12582912.f) - 12582912.f;  // 1.5 * 2^23: exact for |x| < 2^22
    k_int = __builtin_convertvector(k, I);
#endif
    f = x - k;
  }
  V p = exp2_reduced(f);
  if constexpr (kAvx512) {
#ifdef __AVX512F__
    return (V)_mm512_maskz_scalef_ps(0xffff, (__m512)p, (__m512)k);
#endif
  }
  I bits;
  std::memcpy(&bits, &p, sizeof(bits));
  bits += k_int << 23;
  std::memcpy(&p, &bits, sizeof(p));
  return p;
}

// A lane vector is one register of the build target: 16 floats with
// AVX-512, 8 with AVX2, 4 otherwise (SSE, NEON), so that a d_state-16 state
// fits the register file (16 lanes on AVX2 took twice its registers and ran
// 5x slower than 8). MMVIM_LANES (setup.py's MMVIM_CPU_LANES) imposes a
// width instead: the 16-lane code of AVX-512 machines then builds and is
// tested on an AVX2 one, each vector in two registers (slow, the same code).
#if defined(MMVIM_LANES)
#define MMVIM_LANE_COUNT MMVIM_LANES
#elif defined(__AVX512F__)
#define MMVIM_LANE_COUNT 16
#elif defined(__AVX__)
#define MMVIM_LANE_COUNT 8
#else
#define MMVIM_LANE_COUNT 4
#endif
constexpr int64_t kLanes = MMVIM_LANE_COUNT;
static_assert(kLanes == 4 || kLanes == 8 || kLanes == 16, "MMVIM_LANES: 4, 8 or 16");
typedef float LaneFloats __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t LaneInts __attribute__((vector_size(kLanes * sizeof(int32_t))));

// An unaligned load or store of a vector of floats V (a lane vector, or the
// row path's 16-float state).
template <typename V>
inline V load_vector(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename V>
inline void store_vector(float* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

inline LaneFloats load_lanes(const float* p) { return load_vector<LaneFloats>(p); }

inline void store_lanes(float* p, LaneFloats v) { store_vector(p, v); }

// Calls group(i0, std::integral_constant<int64_t, k>) over steps 0 .. n - 1:
// k = kGroup while a whole group is left, then k = 1 for the rest, so that
// the group's loops unroll at compile time (several tokens' or vectors'
// dependent chains side by side).
template <int64_t kGroup, typename Group>
inline void for_groups(int64_t n, const Group& group) {
  int64_t i = 0;
  for (; i + kGroup <= n; i += kGroup) group(i, std::integral_constant<int64_t, kGroup>{});
  for (; i < n; ++i) group(i, std::integral_constant<int64_t, 1>{});
}

// softplus and sigmoid of lane vectors: cpu_math.h's formulas with exp2_vec,
// so that the per-token work of a tile (a softplus and a sigmoid per token
// and channel, as many instructions as the scan's own when left to scalar
// libm-style code) runs in the lanes too.
inline LaneFloats exp_lanes(LaneFloats x) {
  return exp2_vec<LaneFloats, LaneInts>(x * float(kLog2e));
}

// The softplus of a lane vector in its two dependent halves, exp(-|x|) and
// then the rest: a caller with several vectors runs the first half over all
// of them, then the second, so that independent chains sit side by side.
// One vector's whole chain at a time (~100 cycles, a division among them)
// filled the scheduler before the next one's could start: the scan's
// forward ran 1.01-1.045x faster split (Xeon, Vim-Ti's call), same bits.
inline LaneFloats softplus_exp_lanes(LaneFloats x) {
  const LaneFloats zero{};
  const LaneFloats magnitude = x < zero ? -x : x;
  return exp2_vec<LaneFloats, LaneInts, true>(-magnitude * float(kLog2e));
}

inline LaneFloats softplus_from_exp_lanes(LaneFloats x, LaneFloats exp_minus_magnitude) {
  const LaneFloats zero{};
  return (x > zero ? x : zero) + log1p01_series(exp_minus_magnitude);
}

inline LaneFloats sigmoid_lanes(LaneFloats x) { return 1.f / (1.f + exp_lanes(-x)); }

typedef uint16_t LaneU16 __attribute__((vector_size(kLanes * sizeof(uint16_t))));
typedef uint32_t LaneU32 __attribute__((vector_size(kLanes * sizeof(uint32_t))));

// bf16 <-> float a lane vector at a time, bit for bit as c10::BFloat16
// converts one value (widening; rounding to nearest even, NaN to 0x7FC0):
// one value at a time, bf16 inputs made the scan slower than fp32 ones.
inline LaneFloats bf16_to_lanes(const c10::BFloat16* src) {
#if defined(__AVX512F__) && MMVIM_LANE_COUNT == 16
  // One widening instruction: GCC made the vector conversion below four.
  const LaneU32 bits = (LaneU32)_mm512_slli_epi32(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))), 16);
#else
  LaneU16 raw;
  std::memcpy(&raw, src, sizeof(raw));
  const LaneU32 bits = __builtin_convertvector(raw, LaneU32) << 16;
#endif
  LaneFloats v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// Each lane's bf16 bits, in the low half of its 32 bits.
inline LaneU32 bf16_bits(LaneFloats v) {
  LaneU32 bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const LaneU32 rounded = (bits + (((bits >> 16) & 1u) + 0x7FFFu)) >> 16;
  return v != v ? LaneU32{} + 0x7FC0u : rounded;
}

inline void lanes_to_bf16(LaneFloats v, c10::BFloat16* dst) {
  const LaneU32 bits = bf16_bits(v);
#if defined(__AVX2__) && MMVIM_LANE_COUNT == 8
  // 8 lanes: packing with unsigned saturation keeps values below 2^16 as
  // they are, with no mask first, as the generic narrowing below needs (AVX-512
  // narrows in one instruction).
  const __m256i packed = _mm256_packus_epi32((__m256i)bits, (__m256i)bits);
  const __m256i ordered = _mm256_permute4x64_epi64(packed, 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(ordered));
#elif defined(__AVX512F__) && MMVIM_LANE_COUNT == 16
  // One narrowing instruction: GCC made the vector conversion below a
  // two-register permute.
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16((__m512i)bits));
#else
  const LaneU16 narrow = __builtin_convertvector(bits, LaneU16);
  std::memcpy(dst, &narrow, sizeof(narrow));
#endif
}

// Element types a lane vector loads from and stores to in one go: float,
// and bf16 through the conversions above; other types go value by value.
template <typename T>
constexpr bool kLaneConverts =
    std::is_same<T, float>::value || std::is_same<T, c10::BFloat16>::value;

// kLanes adjacent values of T (kLaneConverts) as floats, and back.
template <typename T>
inline LaneFloats load_as_floats(const T* src) {
  if constexpr (std::is_same<T, float>::value) return load_lanes(src);
  else return bf16_to_lanes(src);
}

template <typename T>
inline void store_as(T* dst, LaneFloats v) {
  if constexpr (std::is_same<T, float>::value) store_lanes(dst, v);
  else lanes_to_bf16(v, dst);
}

// v rounded to bf16 and widened back, in 32-bit lanes: the value a bf16
// store then a load would give, without narrowing to 16 bits and back
// (which made the bf16 gate pass twice as slow as the float one on AVX2).
inline LaneFloats bf16_rounded_lanes(LaneFloats v) {
  const LaneU32 bits = bf16_bits(v) << 16;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

}  // namespace mmvim
