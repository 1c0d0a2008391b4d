// Transcendentals for mmvim's CPU kernels, written so that loops calling
// them vectorise (std::exp stays a scalar libm call without -ffast-math).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mmvim {

constexpr double kLog2e = 1.4426950408889634;

// Transcendentals in a form the vectoriser handles. float: exp2 by range
// reduction to [-0.5, 0.5] and a degree-5 polynomial fitted here for relative
// error (9e-8 before rounding, 1.7e-7 as evaluated in float: within 1.5 ulp
// of exp2f, where a degree-6 one is within 0.7). Degree 5, not 6: the scan's
// recurrence is bound by its multiply-add units, and the sixth multiply-add
// of every decay took 13% of its time (Zen 3, AVX2). Inputs are
// clamped to [-115, 126]: 2^-115 keeps every factor a normal number (x86
// processes subnormals up to a hundred times slower) and changes no result
// representable next to the state it decays (below 1e-34 of it).
template <typename acc_t>
struct Math;

// log(1 + y) for y in [0, 1] as 2 atanh(y / (2 + y)): no cancellation for
// small y, series error below 2e-8 relative. T: float or a vector of floats
// (the scan's lanes).
template <typename T>
inline T log1p01_series(T y) {
  const T s = y / (2.f + y);
  const T s2 = s * s;
  T p = s2 * (1.f / 13.f) + 1.f / 11.f;
  p = p * s2 + 1.f / 9.f;
  p = p * s2 + 1.f / 7.f;
  p = p * s2 + 1.f / 5.f;
  p = p * s2 + 1.f / 3.f;
  p = p * s2 + 1.f;
  return 2.f * s * p;
}

// 2^f for f in [-0.5, 0.5] (the polynomial above), Horner's rule. T: float
// or a vector of floats, so that the scalar and vector exp2 give the same bits.
template <typename T>
inline T exp2_reduced(T f) {
  T p = f * 1.326472731e-03f + 9.671512991e-03f;
  p = p * f + 5.550733581e-02f;
  p = p * f + 2.402224243e-01f;
  p = p * f + 6.931470037e-01f;
  return p * f + 1.0f;
}

template <>
struct Math<float> {
  static inline float exp2(float x) {
    x = std::min(std::max(x, -115.f), 126.f);
    const float k = __builtin_rintf(x);
    const float f = x - k;
    const float p = exp2_reduced(f);
    const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
  }
  static inline float exp(float x) { return exp2(x * float(kLog2e)); }
  static inline float log1p01(float y) { return log1p01_series(y); }
};

template <>
struct Math<double> {
  static inline double exp2(double x) { return std::exp2(x); }
  static inline double exp(double x) { return std::exp(x); }
  static inline double log1p01(double y) { return std::log1p(y); }
};

template <typename acc_t>
inline acc_t softplus(acc_t x) {
  // max(x, 0) + log(1 + exp(-|x|)): overflow-free, exact for large |x|.
  return std::max(x, acc_t(0)) + Math<acc_t>::log1p01(Math<acc_t>::exp(-std::abs(x)));
}

template <typename acc_t>
inline acc_t sigmoid(acc_t x) {
  return acc_t(1) / (acc_t(1) + Math<acc_t>::exp(-x));
}

}  // namespace mmvim
