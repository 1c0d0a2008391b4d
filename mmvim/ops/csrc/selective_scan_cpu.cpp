// mmvim's selective scan for CPUs: forward and backward, both directions of a
// Vim layer in one call.
//
// Per (batch, channel) row the state h (d_state floats) is updated token by
// token:  h_t = exp(dt_t A) * h_{t-1} + dt_t u_t B_t,  y_t = <C_t, h_t> + D u_t,
// gated by silu(z_t). Rows are independent: they are spread over threads in
// tiles of adjacent channels. The forward in float runs a tile's channels
// in the lanes of one vector register (each token's B_n, C_n broadcast, the
// readout summed in lanes); tiles that straddle a direction or group, and
// float64, take the row path, vectorised over d_state, as does the backward.
// The vector code is written with GCC/Clang vector types: built with -O3 and
// the installing machine's instruction set it becomes AVX-512, AVX2 or NEON.
// Per-token scalars (softplus, the silu gate) are computed for a chunk of
// tokens at a time, vectorised over the tokens.
//
// Rows from `reverse_from` on scan from the last token to the first: the index
// is mirrored, nothing is copied. With averaged directions (reverse_from =
// d/2) channel c and c + d/2 write one output row: the task that scans c
// writes it, then scans c + d/2 and averages into it. The forward saves the
// state at the start of every chunk of kChunk tokens (unless told no
// gradient will be taken); the backward recomputes each chunk's states
// from there (kChunk x d_state floats, in L1) and walks it backwards, so no
// (batch, channels, length, d_state) tensor ever exists.
#include "cpu_lanes.h"
#include "cpu_math.h"
#include "cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

namespace mmvim {
namespace {

constexpr int64_t kChunk = 64;
// Channels of one backward task: each task sums its channels' dB and dC in a
// buffer of its own, summed over tasks in a fixed order afterwards, so the
// result does not depend on the number of threads.
constexpr int64_t kBackwardBlock = 64;

// d_state = 16 (Vim's) in float has a path written with GCC/Clang vector
// types, lowered to AVX-512, AVX2 or NEON registers by the build target: the
// auto-vectoriser left the readout as 16 dependent scalar additions and the
// backward's loops scalar (it cannot prove their arrays apart). Sums over
// the state are a tree of halves: two shuffles and adds on AVX-512.
typedef float Float16 __attribute__((vector_size(64)));
typedef float Float8 __attribute__((vector_size(32)));
typedef float Float4 __attribute__((vector_size(16)));

typedef int32_t Int16 __attribute__((vector_size(64)));

inline Float16 exp2_16(Float16 x) { return exp2_vec<Float16, Int16>(x); }

inline float tree_sum16(Float16 v) {
  const Float8 eight = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                       __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const Float4 four = __builtin_shufflevector(eight, eight, 0, 1, 2, 3) +
                      __builtin_shufflevector(eight, eight, 4, 5, 6, 7);
  return (four[0] + four[2]) + (four[1] + four[3]);
}

// A (batch, channels, length) tensor accessed through its strides; T is
// const for the inputs.
template <typename T>
struct StridedRows {
  T* data = nullptr;
  int64_t batch_stride = 0, channel_stride = 0, token_stride = 0;
  int64_t channels = 0;  // z may have half the channels: row c reads c % channels

  StridedRows() = default;
  explicit StridedRows(const Tensor& t)
      : data(data_of<std::remove_const_t<T>>(t)),
        batch_stride(t.stride(0)),
        channel_stride(t.stride(1)),
        token_stride(t.stride(2)),
        channels(t.size(1)) {}
  T* row(int64_t b, int64_t c) const {
    return data + b * batch_stride + (c % channels) * channel_stride;
  }
};

template <typename scalar_t>
using Rows = StridedRows<const scalar_t>;
// The output y, contiguous or channel-last.
template <typename scalar_t>
using OutRows = StridedRows<scalar_t>;

template <typename scalar_t, typename acc_t>
struct ScanInputs {
  Rows<scalar_t> u, delta, z;  // delta unset when given low-rank
  const acc_t *A, *Bt, *Ct, *D, *bias;  // D, bias may be null
  // delta given low-rank: its factor (b, g, l, rank) token-major and the
  // weight (d, rank); null otherwise.
  const acc_t *dt_factor = nullptr, *delta_weight = nullptr;
  int64_t rank = 0;
  bool softplus, has_z;
  bool average;  // channels from reverse_from on average into row c - reverse_from
  int64_t batch, channels, length, n_state, groups, reverse_from, num_chunks;

  // Whether row c averages into an output row the other direction wrote.
  bool averages(int64_t c) const { return average && c >= reverse_from; }

  int64_t token(int64_t step, int64_t c) const {
    return c >= reverse_from ? length - 1 - step : step;
  }
  int64_t group(int64_t c) const { return c / (channels / groups); }
  const acc_t* Bt_of(int64_t b, int64_t c) const {
    return Bt + (b * groups + group(c)) * length * n_state;
  }
  const acc_t* Ct_of(int64_t b, int64_t c) const {
    return Ct + (b * groups + group(c)) * length * n_state;
  }
  const acc_t* dt_factor_of(int64_t b, int64_t c) const {
    return dt_factor + (b * groups + group(c)) * length * rank;
  }
  // delta of row c at token t from the low-rank factor: the weight row's
  // products with the token's factor, summed in rank order.
  acc_t low_rank_delta(int64_t b, int64_t c, int64_t t) const {
    const acc_t* factor = dt_factor_of(b, c) + t * rank;
    const acc_t* weight = delta_weight + c * rank;
    acc_t sum = 0;
    for (int64_t k = 0; k < rank; ++k) sum += weight[k] * factor[k];
    return sum;
  }
};

// (a + b) / 2 of two outputs in their dtype, rounded as torch's add and
// division of two such tensors round: the sum, then the half.
template <typename scalar_t>
inline scalar_t average_of(scalar_t a, scalar_t b) {
  using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
  const scalar_t sum = static_cast<scalar_t>(static_cast<acc_t>(a) + static_cast<acc_t>(b));
  return static_cast<scalar_t>(static_cast<acc_t>(sum) * acc_t(0.5));
}

// The per-token scalars of one chunk of a row, in step order.
template <typename acc_t>
struct ChunkScalars {
  std::vector<acc_t> u, pre, dt, du, z;
  explicit ChunkScalars() : u(kChunk), pre(kChunk), dt(kChunk), du(kChunk), z(kChunk) {}

  template <typename scalar_t>
  void load(const ScanInputs<scalar_t, acc_t>& in, int64_t b, int64_t c, int64_t first,
            int64_t len) {
    const scalar_t* u_row = in.u.row(b, c);
    const scalar_t* delta_row = in.delta_weight ? nullptr : in.delta.row(b, c);
    const acc_t bias = in.bias ? in.bias[c] : acc_t(0);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t t = in.token(first + j, c);
      u[j] = static_cast<acc_t>(u_row[t * in.u.token_stride]);
      pre[j] = (delta_row ? static_cast<acc_t>(delta_row[t * in.delta.token_stride])
                          : in.low_rank_delta(b, c, t)) +
               bias;
    }
    if (in.has_z) {
      const scalar_t* z_row = in.z.row(b, c);
      for (int64_t j = 0; j < len; ++j)
        z[j] = static_cast<acc_t>(z_row[in.token(first + j, c) * in.z.token_stride]);
    }
    acc_t* __restrict dt_ = dt.data();
    acc_t* __restrict du_ = du.data();
    const acc_t* __restrict pre_ = pre.data();
    const acc_t* __restrict u_ = u.data();
    if (in.softplus) {
      for (int64_t j = 0; j < len; ++j) dt_[j] = softplus(pre_[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) dt_[j] = pre_[j];
    }
    for (int64_t j = 0; j < len; ++j) du_[j] = dt_[j] * u_[j];
  }
};

// One token of the scan over the state: h = a * prev + du * B with
// a = exp2(dt * A2); stores a in `decay` when given; returns <C, h>.
// `prev` may be `h` (the forward updates in place).
template <typename acc_t, int kN>
inline acc_t forward_token(int64_t N, acc_t dt, acc_t du, const acc_t* A2, const acc_t* B,
                           const acc_t* C, const acc_t* prev, acc_t* h, acc_t* decay) {
  if constexpr (kN == 16 && std::is_same<acc_t, float>::value) {
    const Float16 a = exp2_16(dt * load_vector<Float16>(A2));
    const Float16 state = a * load_vector<Float16>(prev) + du * load_vector<Float16>(B);
    store_vector(h, state);
    if (decay) store_vector(decay, a);
    return tree_sum16(state * load_vector<Float16>(C));
  } else {
    acc_t readout = 0;
    for (int64_t n = 0; n < N; ++n) {
      const acc_t a = Math<acc_t>::exp2(dt * A2[n]);
      h[n] = a * prev[n] + du * B[n];
      if (decay) decay[n] = a;
      readout += h[n] * C[n];
    }
    return readout;
  }
}

// One token of the backward walk, over the state: with
// lambda_n = g C_n + carry_n (carry = a_{t+1} lambda_{t+1}) and
// w_n = lambda_n a_n h_{t-1,n} = dL/d(dt A_n), accumulates grad_A += w dt,
// dB += lambda du, dC += g h, sets carry = a lambda, and returns
// sum_n w_n A_n and sum_n lambda_n B_n.
template <typename acc_t, int kN>
inline void backward_token(int64_t N, acc_t g, acc_t dt, acc_t du, const acc_t* A,
                           const acc_t* a, const acc_t* prev, const acc_t* h, const acc_t* B,
                           const acc_t* C, acc_t* carry, acc_t* grad_A, acc_t* dB, acc_t* dC,
                           acc_t& sum_wA, acc_t& sum_lambdaB) {
  if constexpr (kN == 16 && std::is_same<acc_t, float>::value) {
    // Written with vector types: the vectoriser leaves this loop scalar
    // (it cannot prove the seven arrays apart).
    const Float16 lambda = g * load_vector<Float16>(C) + load_vector<Float16>(carry);
    const Float16 w = lambda * load_vector<Float16>(a) * load_vector<Float16>(prev);
    store_vector(grad_A, load_vector<Float16>(grad_A) + w * dt);
    store_vector(dB, load_vector<Float16>(dB) + lambda * du);
    store_vector(dC, load_vector<Float16>(dC) + g * load_vector<Float16>(h));
    store_vector(carry, load_vector<Float16>(a) * lambda);
    sum_wA = tree_sum16(w * load_vector<Float16>(A));
    sum_lambdaB = tree_sum16(lambda * load_vector<Float16>(B));
  } else {
    sum_wA = sum_lambdaB = 0;
    for (int64_t n = 0; n < N; ++n) {
      const acc_t lambda = g * C[n] + carry[n];
      const acc_t w = lambda * a[n] * prev[n];
      grad_A[n] += w * dt;
      dB[n] += lambda * du;
      dC[n] += g * h[n];
      carry[n] = a[n] * lambda;
      sum_wA += w * A[n];
      sum_lambdaB += lambda * B[n];
    }
  }
}

// Forward of one chunk of row c, from and into its state h; A2 = A log2(e).
// kN is d_state when known at compile time (0: runtime).
template <typename scalar_t, typename acc_t, int kN>
void forward_chunk(const ScanInputs<scalar_t, acc_t>& in, int64_t b, int64_t c, int64_t chunk,
                   acc_t* h, const acc_t* A2, const OutRows<scalar_t>& out, acc_t* states,
                   ChunkScalars<acc_t>& s) {
  const int64_t N = kN ? kN : in.n_state;
  const int64_t first = chunk * kChunk;
  const int64_t len = std::min(kChunk, in.length - first);
  const acc_t* Bt = in.Bt_of(b, c);
  const acc_t* Ct = in.Ct_of(b, c);
  const acc_t D = in.D ? in.D[c] : acc_t(0);
  if (states) {
    std::copy(h, h + N, states + ((b * in.channels + c) * in.num_chunks + chunk) * N);
  }
  s.load(in, b, c, first, len);
  acc_t y[kChunk];
  for (int64_t j = 0; j < len; ++j) {
    const int64_t t = in.token(first + j, c);
    y[j] = forward_token<acc_t, kN>(N, s.dt[j], s.du[j], A2, Bt + t * N, Ct + t * N, h, h,
                                    nullptr) +
           D * s.u[j];
  }
  if (in.has_z) {
    for (int64_t j = 0; j < len; ++j) y[j] *= s.z[j] * sigmoid(s.z[j]);
  }
  scalar_t* out_row = out.row(b, c);
  for (int64_t j = 0; j < len; ++j) {
    scalar_t& dst = out_row[in.token(first + j, c) * out.token_stride];
    dst = in.averages(c) ? average_of(dst, static_cast<scalar_t>(y[j]))
                         : static_cast<scalar_t>(y[j]);
  }
}

// The forward of a tile of kLanes channels side by side, one channel per
// lane of a vector: the state is N vectors (in registers for N = 16), each
// token's B_n and C_n are broadcast to every lane, and the readout
// accumulates in lanes, so there is no sum across a vector. It takes float
// compute (fp32/bf16/fp16 inputs) and tiles that scan one way and read one
// group of B and C; other tiles take the row path. A lane vector is one
// register of the build target (cpu_lanes.h).

// The sum of a vector's lanes, in lane order.
inline float lane_sum(LaneFloats v) {
  float sum = 0.f;
  for (int64_t r = 0; r < kLanes; ++r) sum += v[r];
  return sum;
}

// One (b, d, l) tensor seen from a lane tile: the kLanes values of its rows
// first .. first + kLanes - 1 at a token, one vector load or store where
// they are adjacent floats (channel-last), else one per lane. T is const for
// the inputs.
template <typename T>
struct TileRows {
  T* base;
  int64_t token_stride, channel_stride;

  TileRows(const StridedRows<T>& rows, int64_t b, int64_t first)
      : base(rows.row(b, first)),
        token_stride(rows.token_stride),
        channel_stride(rows.channel_stride) {}

  LaneFloats at(int64_t t) const {
    using scalar_t = std::remove_const_t<T>;
    const T* src = base + t * token_stride;
    if (channel_stride == 1) {
      if constexpr (kLaneConverts<scalar_t>) return load_as_floats(src);
    }
    LaneFloats v;
    for (int64_t r = 0; r < kLanes; ++r) v[r] = static_cast<float>(src[r * channel_stride]);
    return v;
  }

  // Asks the cache for token t's values ahead of their use: a tile reads
  // one line a token, rows kilobytes apart, a stride that Intel's L1
  // prefetcher (2 KiB at most) and its L2 streamer (within a 4 KiB page)
  // do not follow (4-8% of a Vim-Ti layer's call on a Xeon).
  void prefetch(int64_t t) const {
    const T* src = base + t * token_stride;
    __builtin_prefetch(src);
    __builtin_prefetch(src + (kLanes - 1) * channel_stride);
  }

  void store(int64_t t, LaneFloats v) const {
    T* dst = base + t * token_stride;
    if (channel_stride == 1) {
      if constexpr (kLaneConverts<T>) return store_as(dst, v);
    }
    for (int64_t r = 0; r < kLanes; ++r) dst[r * channel_stride] = static_cast<T>(v[r]);
  }
};

// A lane vector rounded to scalar_t and back (the value a store then a load
// would give).
template <typename scalar_t>
inline LaneFloats rounded_to(LaneFloats v) {
  if constexpr (std::is_same<scalar_t, float>::value) {
    return v;
  } else if constexpr (std::is_same<scalar_t, c10::BFloat16>::value) {
    return bf16_rounded_lanes(v);
  } else {
    for (int64_t r = 0; r < kLanes; ++r) v[r] = static_cast<float>(static_cast<scalar_t>(v[r]));
    return v;
  }
}

// average_of for lanes: `written` (the other direction's stored output, read
// back) and this direction's unrounded y.
template <typename scalar_t>
inline LaneFloats average_lanes(LaneFloats written, LaneFloats y) {
  return rounded_to<scalar_t>(written + rounded_to<scalar_t>(y)) * 0.5f;
}

// The values of one (b, d, l) input for kLanes rows and a chunk of tokens,
// lane-interleaved: dst[j * kLanes + r] is row first + r at step first_step + j.
template <typename scalar_t>
void gather_lanes(const ScanInputs<scalar_t, float>& in, const Rows<scalar_t>& rows, int64_t b,
                  int64_t first, int64_t first_step, int64_t len, float* dst) {
  const TileRows<const scalar_t> tile_rows(rows, b, first);
  for (int64_t j = 0; j < len; ++j)
    store_lanes(dst + j * kLanes, tile_rows.at(in.token(first_step + j, first)));
}

// States a pass of the lane scan keeps in registers: all 16 with AVX-512's
// 32 vector registers; with 16 (AVX2, NEON) or fewer, 8 per pass over the
// chunk, the output accumulating in L1 between passes. There the pass first
// computes its decays for the whole chunk into L1, then runs the recurrence
// reading them: the exp's polynomial constants and temporaries leave no
// registers for more than 4 states in one loop, and its 40-cycle chain per
// token, interleaved with the recurrence, kept the vector units half idle.
constexpr int kLaneStatesPerPass = kLanes >= 16 ? 16 : 8;
constexpr bool kDecaysFirst = kLanes < 16;
// Whether the backward's walk computes each decay again rather than reading
// the one its recompute made: where the recurrence computes them inline
// (AVX-512), storing a decay per state and token and loading it back cost
// more than its exp (the backward 1.13-1.18x faster without, Xeon); where
// they are made first into memory, they are kept there.
constexpr bool kWalkRecomputesDecays = !kDecaysFirst;

// The scan over one chunk in lanes; h (N * kLanes floats) in and out. y
// holds D u on entry and gets <C, h> added, state by state in order (the
// sum is the same whatever the passes). kKeep (the backward's recompute):
// every step's states are written to states_out and, unless
// kWalkRecomputesDecays, its decays to decays_out, (len, N, kLanes), the
// forward's arithmetic giving the same bits.
template <int kN, bool kNonPositive, bool kAboveLow, bool kKeep = false>
inline void lane_chunk_scan(int64_t N, int64_t len, const float* dt, const float* du,
                            const float* A2, const float* Bt, const float* Ct, int64_t token0,
                            int64_t token_step, float* h, float* y,
                            float* decays_out = nullptr, float* states_out = nullptr) {
  if constexpr (kN > 0) {
    constexpr int kPass = kN % kLaneStatesPerPass == 0 ? kLaneStatesPerPass : kN;
    for (int n0 = 0; n0 < kN; n0 += kPass) {
      LaneFloats hv[kPass], a2v[kPass];
      for (int n = 0; n < kPass; ++n) {
        hv[n] = load_lanes(h + (n0 + n) * kLanes);
        a2v[n] = load_lanes(A2 + (n0 + n) * kLanes);
      }
      // With kDecaysFirst, the chunk's decays first, into L1 (decays_out
      // with kKeep).
      alignas(64) float decays[kDecaysFirst && !kKeep ? kChunk * kPass * kLanes : 1];
      const auto decay_at = [&](int64_t j, int n) {
        if constexpr (kKeep) return decays_out + (j * kN + n0 + n) * kLanes;
        return decays + (j * kPass + n) * kLanes;
      };
      const auto decay = [&](LaneFloats dtv, int n) {
        return exp2_vec<LaneFloats, LaneInts, kNonPositive, kAboveLow>(dtv * a2v[n]);
      };
      if constexpr (kDecaysFirst) {
        for (int64_t j = 0; j < len; ++j) {
          const LaneFloats dtv = load_lanes(dt + j * kLanes);
#pragma GCC unroll 16
          for (int n = 0; n < kPass; ++n) store_lanes(decay_at(j, n), decay(dtv, n));
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        const float* B = Bt + (token0 + j * token_step) * kN + n0;
        const float* C = Ct + (token0 + j * token_step) * kN + n0;
        const LaneFloats dtv = load_lanes(dt + j * kLanes), duv = load_lanes(du + j * kLanes);
        LaneFloats acc = load_lanes(y + j * kLanes);
#pragma GCC unroll 16
        for (int n = 0; n < kPass; ++n) {
          const LaneFloats a = kDecaysFirst ? load_lanes(decay_at(j, n)) : decay(dtv, n);
          hv[n] = a * hv[n] + duv * B[n];
          if constexpr (kKeep) store_lanes(states_out + (j * kN + n0 + n) * kLanes, hv[n]);
          acc += hv[n] * C[n];
        }
        store_lanes(y + j * kLanes, acc);
      }
      for (int n = 0; n < kPass; ++n) store_lanes(h + (n0 + n) * kLanes, hv[n]);
    }
  } else {
    for (int64_t j = 0; j < len; ++j) {
      const float* B = Bt + (token0 + j * token_step) * N;
      const float* C = Ct + (token0 + j * token_step) * N;
      const LaneFloats dtv = load_lanes(dt + j * kLanes), duv = load_lanes(du + j * kLanes);
      LaneFloats acc = load_lanes(y + j * kLanes);
      for (int64_t n = 0; n < N; ++n) {
        const LaneFloats decay =
            exp2_vec<LaneFloats, LaneInts, kNonPositive, kAboveLow>(dtv * load_lanes(A2 + n * kLanes));
        const LaneFloats state = decay * load_lanes(h + n * kLanes) + duv * B[n];
        store_lanes(h + n * kLanes, state);
        if constexpr (kKeep) {
          if constexpr (!kWalkRecomputesDecays) store_lanes(decays_out + (j * N + n) * kLanes, decay);
          store_lanes(states_out + (j * N + n) * kLanes, state);
        }
        acc += state * C[n];
      }
      store_lanes(y + j * kLanes, acc);
    }
  }
}

// One lane tile's state between chunks.
struct LaneTile {
  int64_t first;  // its first channel
  bool reverse, A_non_positive;
  const float *Bt, *Ct, *dt_factor;  // dt_factor: null unless delta is low-rank
  std::vector<float> h, A2;  // (N, kLanes): state; A log2(e)
  std::vector<float> delta_weight;  // (rank, kLanes) when delta is low-rank
  LaneFloats A2_min{};  // each lane's smallest A log2(e)
};

template <typename scalar_t>
LaneTile make_lane_tile(const ScanInputs<scalar_t, float>& in, int64_t b, int64_t first) {
  const int64_t N = in.n_state;
  LaneTile tile{first,
                first >= in.reverse_from,
                true,
                in.Bt_of(b, first),
                in.Ct_of(b, first),
                in.delta_weight ? in.dt_factor_of(b, first) : nullptr,
                std::vector<float>(N * kLanes, 0.f),
                std::vector<float>(N * kLanes),
                std::vector<float>(in.rank * kLanes)};
  for (int64_t r = 0; r < kLanes; ++r) {
    for (int64_t n = 0; n < N; ++n)
      tile.A2[n * kLanes + r] = in.A[(first + r) * N + n] * float(kLog2e);
    for (int64_t k = 0; k < in.rank; ++k)
      tile.delta_weight[k * kLanes + r] = in.delta_weight[(first + r) * in.rank + k];
  }
  tile.A_non_positive =
      std::all_of(tile.A2.begin(), tile.A2.end(), [](float v) { return v <= 0.f; });
  tile.A2_min = load_lanes(tile.A2.data());
  for (int64_t n = 1; n < N; ++n) {
    const LaneFloats a2 = load_lanes(tile.A2.data() + n * kLanes);
    tile.A2_min = a2 < tile.A2_min ? a2 : tile.A2_min;
  }
  return tile;
}

// A chunk's per-token lane vectors: u, delta + bias before the softplus,
// dt, du and the output y.
struct LaneScratch {
  alignas(64) float u[kChunk * kLanes], pre[kChunk * kLanes], dt[kChunk * kLanes],
      du[kChunk * kLanes], y[kChunk * kLanes];
};

// Tokens load_lane_chunk handles together: its per-token work (the
// low-rank delta's r products, the softplus) is a chain of dependent
// instructions, tens of cycles long; a few tokens' chains side by side keep
// the vector units busy where one token at a time left them waiting.
constexpr int64_t kTokensTogether = 8;

// What a chunk's decay exponents dt A (log2 e) are known to stay within,
// so that exp2_vec can skip its clamps: <= 0 (A <= 0 and dt >= 0, every
// Mamba layer), and >= -115 as well (dt too small to reach the lower clamp
// with the tile's most negative A: trained Vim layers' dt throughout).
struct DecayBounds {
  bool non_positive, above_low;
};

// Calls f(non_positive, above_low) with the bounds as std::bool_constant
// arguments, for exp2_vec's template flags.
template <typename F>
inline void with_decay_bounds(const DecayBounds& bounds, const F& f) {
  if (bounds.above_low)
    f(std::true_type{}, std::true_type{});
  else if (bounds.non_positive)
    f(std::true_type{}, std::false_type{});
  else
    f(std::false_type{}, std::false_type{});
}

// Fills s.u, s.pre, s.dt, s.du and s.y = D u for the `len` tokens of one
// chunk of `tile` (token0 + j * token_step), in one pass, and returns what
// bounds its decay exponents. A low-rank delta is made here, as
// ScanInputs::low_rank_delta makes it for a row (the same products in the
// same order). next_chunk: +1 where the caller walks the chunks forward
// (the forward), -1 where it walks them back (the backward), for the
// prefetch of the chunk it reads next.
template <typename scalar_t>
DecayBounds load_lane_chunk(const ScanInputs<scalar_t, float>& in, int64_t b,
                            const LaneTile& tile, int64_t token0, int64_t token_step,
                            int64_t len, int64_t next_chunk, LaneScratch& s) {
  const int64_t first = tile.first;
  const TileRows<const scalar_t> u(in.u, b, first);
  const std::optional<TileRows<const scalar_t>> delta =
      tile.dt_factor ? std::nullopt : std::make_optional<TileRows<const scalar_t>>(in.delta, b, first);
  const LaneFloats bias = in.bias ? load_lanes(in.bias + first) : LaneFloats{};
  const LaneFloats D = in.D ? load_lanes(in.D + first) : LaneFloats{};
  LaneInts non_negative = LaneInts{} - 1;  // lane masks: every dt so far >= 0 (false for NaN)
  LaneFloats dt_max{};
  // kCount tokens from step j0 on.
  const auto load_tokens = [&](int64_t j0, auto count) {
    constexpr int64_t kCount = decltype(count)::value;
    LaneFloats pre[kCount];
    if (delta) {
      for (int64_t q = 0; q < kCount; ++q) pre[q] = delta->at(token0 + (j0 + q) * token_step);
    } else {
      const float* factor[kCount];
      for (int64_t q = 0; q < kCount; ++q) {
        factor[q] = tile.dt_factor + (token0 + (j0 + q) * token_step) * in.rank;
        pre[q] = LaneFloats{};
      }
      for (int64_t k = 0; k < in.rank; ++k) {
        const LaneFloats weight = load_lanes(tile.delta_weight.data() + k * kLanes);
        for (int64_t q = 0; q < kCount; ++q) pre[q] += weight * factor[q][k];
      }
    }
    LaneFloats exp_part[kCount];  // the softplus's first half, all tokens first
    for (int64_t q = 0; q < kCount; ++q) {
      if (in.bias) pre[q] += bias;
      if (in.softplus) exp_part[q] = softplus_exp_lanes(pre[q]);
    }
    for (int64_t q = 0; q < kCount; ++q) {
      const int64_t j = j0 + q;
      // The tile's next chunk, read a few tiles' scans from now.
      const int64_t ahead = token0 + (j + next_chunk * kChunk) * token_step;
      if (ahead >= 0 && ahead < in.length) u.prefetch(ahead);
      const LaneFloats uv = u.at(token0 + j * token_step);
      const LaneFloats dt = in.softplus ? softplus_from_exp_lanes(pre[q], exp_part[q]) : pre[q];
      store_lanes(s.u + j * kLanes, uv);
      store_lanes(s.pre + j * kLanes, pre[q]);
      store_lanes(s.dt + j * kLanes, dt);
      store_lanes(s.du + j * kLanes, dt * uv);
      store_lanes(s.y + j * kLanes, D * uv);
      non_negative &= dt >= 0.f;
      dt_max = dt > dt_max ? dt : dt_max;
    }
  };
  for_groups<kTokensTogether>(len, load_tokens);
  const LaneInts above_low = non_negative & (dt_max * tile.A2_min >= -115.f);
  bool all_non_negative = true, all_above_low = true;
  for (int64_t r = 0; r < kLanes; ++r) {
    all_non_negative &= non_negative[r] != 0;
    all_above_low &= above_low[r] != 0;
  }
  // A softplus's dt is >= 0 or, from a NaN delta, NaN: that lane's
  // non_negative is false, so its chunk keeps the lower clamp, as before.
  const bool non_positive = tile.A_non_positive && (in.softplus || all_non_negative);
  return {non_positive, non_positive && all_above_low};
}

// Tokens the gate handles together, for the same reason as load_lane_chunk:
// a token's sigmoid, product and (with bf16 outputs) three roundings to bf16
// are one long chain. 4, not 8: 8 tokens' chains did not fit the registers
// and made the fp32 gate slower; 4 took bf16 calls from 7-9% slower than
// fp32 ones to 3-5% at L = 1025 and from 4-6% to 0-0.5% at 4097 (Zen 3),
// fp32 unchanged.
constexpr int64_t kGateTokens = 4;

// One chunk of one lane tile: from and into tile.h.
template <typename scalar_t, int kN>
void forward_lane_chunk(const ScanInputs<scalar_t, float>& in, int64_t b, int64_t chunk,
                        LaneTile& tile, const OutRows<scalar_t>& out, float* states,
                        LaneScratch& s) {
  const int64_t N = in.n_state, L = in.length, first = tile.first;
  const int64_t first_step = chunk * kChunk;
  const int64_t len = std::min(kChunk, L - first_step);
  if (states) {
    for (int64_t r = 0; r < kLanes; ++r)
      for (int64_t n = 0; n < N; ++n)
        states[((b * in.channels + first + r) * in.num_chunks + chunk) * N + n] =
            tile.h[n * kLanes + r];
  }
  const int64_t token0 = in.token(first_step, first), token_step = tile.reverse ? -1 : 1;
  // The gate's z and output rows, asked for now and read after the scan.
  const TileRows<scalar_t> out_rows(out, b, first);
  const std::optional<TileRows<const scalar_t>> z_rows =
      in.has_z ? std::make_optional<TileRows<const scalar_t>>(in.z, b, first) : std::nullopt;
  for (int64_t j = 0; j < len; ++j) {
    if (z_rows) z_rows->prefetch(token0 + j * token_step);
    out_rows.prefetch(token0 + j * token_step);
  }
  // y starts as D u; the scan adds <C, h>.
  with_decay_bounds(load_lane_chunk(in, b, tile, token0, token_step, len, 1, s),
                    [&](auto non_positive, auto above_low) {
                      lane_chunk_scan<kN, decltype(non_positive)::value,
                                      decltype(above_low)::value>(
                          N, len, s.dt, s.du, tile.A2.data(), tile.Bt, tile.Ct, token0,
                          token_step, tile.h.data(), s.y);
                    });
  // The gate, read from z as the output is written: one pass over the chunk.
  const bool averages = in.averages(first);
  const auto write = [&](int64_t t, LaneFloats y) {
    out_rows.store(t, averages ? average_lanes<scalar_t>(out_rows.at(t), y) : y);
  };
  if (z_rows) {
    const auto gate_tokens = [&](int64_t j0, auto count) {
      constexpr int64_t kCount = decltype(count)::value;
      LaneFloats gated[kCount];
      for (int64_t q = 0; q < kCount; ++q) {
        const LaneFloats z = z_rows->at(token0 + (j0 + q) * token_step);
        gated[q] = load_lanes(s.y + (j0 + q) * kLanes) * (z * sigmoid_lanes(z));
      }
      for (int64_t q = 0; q < kCount; ++q) write(token0 + (j0 + q) * token_step, gated[q]);
    };
    for_groups<kGateTokens>(len, gate_tokens);
  } else {
    for (int64_t j = 0; j < len; ++j)
      write(token0 + j * token_step, load_lanes(s.y + j * kLanes));
  }
}

// Whether channels [first, first + kLanes) can scan in lanes: one direction,
// one group, and z's rows (c % its channels) in one run.
template <typename scalar_t, typename acc_t>
bool lane_tile(const ScanInputs<scalar_t, acc_t>& in, int64_t first) {
  if (!std::is_same<acc_t, float>::value || first + kLanes > in.channels) return false;
  const int64_t last = first + kLanes - 1;
  return (first >= in.reverse_from) == (last >= in.reverse_from) &&
         in.group(first) == in.group(last) &&
         (!in.has_z || first % in.z.channels + kLanes <= in.z.channels);
}

template <typename scalar_t, typename acc_t>
struct ScanGrads {
  Rows<scalar_t> grad_y;
  scalar_t *grad_u, *grad_delta, *grad_z;  // (b, d, l) contiguous; grad_z may be null
  acc_t *grad_A, *grad_D, *grad_bias;      // (b, d, n), (b, d), (b, d); D, bias may be null
  acc_t *grad_Bt_blocks, *grad_Ct_blocks;  // (b, g, blocks per group, l, n)
};

// What the backward carries for one row from chunk to chunk.
template <typename acc_t>
struct RowAdjoint {
  const acc_t* A2;  // A log2(e), (N)
  acc_t* carry;     // a_{t+1} lambda_{t+1}, (N)
  acc_t* grad_A;  // (N)
  acc_t grad_D, grad_bias;
};

// Backward of one chunk of row c, walking it from its last token to its
// first; dB and dC accumulate into the task's buffers. `scratch` holds
// 2 * kChunk * N values: the chunk's recomputed decays and states.
template <typename scalar_t, typename acc_t, int kN>
void backward_chunk(const ScanInputs<scalar_t, acc_t>& in, const ScanGrads<scalar_t, acc_t>& gr,
                    const acc_t* states, int64_t b, int64_t c, int64_t chunk,
                    RowAdjoint<acc_t>& adj, acc_t* grad_Bt, acc_t* grad_Ct,
                    ChunkScalars<acc_t>& s, acc_t* scratch) {
  const int64_t N = kN ? kN : in.n_state;
  const int64_t L = in.length;
  const int64_t first = chunk * kChunk;
  const int64_t len = std::min(kChunk, L - first);
  const acc_t* A_row = in.A + c * N;
  acc_t* __restrict decays = scratch;           // (kChunk, N)
  acc_t* __restrict hs = scratch + kChunk * N;  // (kChunk, N)
  const acc_t* Bt = in.Bt_of(b, c);
  const acc_t* Ct = in.Ct_of(b, c);
  const acc_t D = in.D ? in.D[c] : acc_t(0);
  const int64_t row = b * in.channels + c;
  const acc_t* __restrict h0 = states + (row * in.num_chunks + chunk) * N;
  s.load(in, b, c, first, len);
  // Recompute the chunk's decays and states from its saved start state.
  acc_t y[kChunk], g[kChunk], grad_z[kChunk], dsoftplus[kChunk];
  for (int64_t j = 0; j < len; ++j) {
    const int64_t t = in.token(first + j, c);
    y[j] = forward_token<acc_t, kN>(N, s.dt[j], s.du[j], adj.A2, Bt + t * N, Ct + t * N,
                                    j ? hs + (j - 1) * N : h0, hs + j * N, decays + j * N) +
           D * s.u[j];
  }
  // g = dL/d(scan output); the gate's own gradient.
  const scalar_t* grad_y_row = gr.grad_y.row(b, c);
  for (int64_t j = 0; j < len; ++j)
    g[j] = static_cast<acc_t>(grad_y_row[in.token(first + j, c) * gr.grad_y.token_stride]);
  if (in.has_z) {
    for (int64_t j = 0; j < len; ++j) {
      const acc_t z = s.z[j], sig = sigmoid(z);
      grad_z[j] = g[j] * y[j] * sig * (acc_t(1) + z * (acc_t(1) - sig));
      g[j] *= z * sig;
    }
  }
  if (in.softplus) {
    for (int64_t j = 0; j < len; ++j) dsoftplus[j] = sigmoid(s.pre[j]);
  }
  // Walk the chunk backwards: lambda_t = g_t C_t + a_{t+1} lambda_{t+1}.
  for (int64_t j = len - 1; j >= 0; --j) {
    const int64_t t = in.token(first + j, c);
    const acc_t dt = s.dt[j], du = s.du[j], gj = g[j];
    acc_t grad_dtA, lambda_B;
    backward_token<acc_t, kN>(N, gj, dt, du, A_row, decays + j * N,
                              j ? hs + (j - 1) * N : h0, hs + j * N, Bt + t * N, Ct + t * N,
                              adj.carry, adj.grad_A, grad_Bt + t * N, grad_Ct + t * N,
                              grad_dtA, lambda_B);
    const acc_t grad_dt = grad_dtA + lambda_B * s.u[j];
    const acc_t grad_pre = in.softplus ? grad_dt * dsoftplus[j] : grad_dt;
    adj.grad_D += gj * s.u[j];
    adj.grad_bias += grad_pre;
    gr.grad_u[row * L + t] = static_cast<scalar_t>(dt * lambda_B + D * gj);
    gr.grad_delta[row * L + t] = static_cast<scalar_t>(grad_pre);
    if (gr.grad_z) gr.grad_z[row * L + t] = static_cast<scalar_t>(grad_z[j]);
  }
}

// The scan's arguments as the kernels read them: Bt, Ct (b, g, l, n) and
// A, D, bias contiguous in the compute dtype.
// The backward of a lane tile (kLanes channels in the lanes of a vector, as
// the forward): what it carries from chunk to chunk, walking the chunks from
// the last to the first, per state and lane: the adjoint carry
// a_{t+1} lambda_{t+1} and grad_A; and per lane grad_D and grad_bias.
struct LaneAdjoint {
  LaneTile tile;
  std::vector<float> A, carry, grad_A;  // (N, kLanes)
  LaneFloats grad_D{}, grad_bias{};
};

template <typename scalar_t>
LaneAdjoint make_lane_adjoint(const ScanInputs<scalar_t, float>& in, int64_t b, int64_t first) {
  const int64_t N = in.n_state;
  LaneAdjoint adjoint{make_lane_tile(in, b, first), std::vector<float>(N * kLanes),
                      std::vector<float>(N * kLanes, 0.f), std::vector<float>(N * kLanes, 0.f)};
  for (int64_t r = 0; r < kLanes; ++r)
    for (int64_t n = 0; n < N; ++n) adjoint.A[n * kLanes + r] = in.A[(first + r) * N + n];
  return adjoint;
}

// One recomputed chunk of a lane tile: its states and (unless
// kWalkRecomputesDecays) decays, (kChunk, N, kLanes); its start state and a
// copy the recompute advances; the per-token vectors of the walk.
struct LaneBackwardScratch {
  std::vector<float> decay, h, start, end;
  LaneScratch in;
  alignas(64) float g[kChunk * kLanes], z[kChunk * kLanes], grad_z[kChunk * kLanes],
      sum_wA[kChunk * kLanes], lambda_B[kChunk * kLanes], grad_u[kChunk * kLanes],
      grad_pre[kChunk * kLanes];
  explicit LaneBackwardScratch(int64_t N)
      : decay(kWalkRecomputesDecays ? 0 : kChunk * N * kLanes),
        h(kChunk * N * kLanes),
        start(N * kLanes),
        end(N * kLanes) {}
};

// Lane r of `len` lane vectors (token-major scratch) into dst[j * step].
template <typename scalar_t>
inline void write_lane_row(const float* lanes, int64_t r, int64_t len, scalar_t* dst,
                           int64_t step) {
  for (int64_t j = 0; j < len; ++j) dst[j * step] = static_cast<scalar_t>(lanes[j * kLanes + r]);
}

// The backward of one chunk of one lane tile, from the saved state at its
// start: recompute its states (the forward's arithmetic, so the same bits),
// then walk it from its last token to its first with the adjoint
// lambda_t = g_t C_t + a_{t+1} lambda_{t+1}, state by state (a state's
// carry and grad_A stay in registers; every sum over the states keeps the
// states' order). dB and dC, sums over the channels, accumulate in lanes in
// dB_lanes, dC_lanes ((kChunk, N, kLanes), the task's), summed across the
// lanes once per chunk by the caller.
template <typename scalar_t, int kN>
void backward_lane_chunk(const ScanInputs<scalar_t, float>& in,
                         const ScanGrads<scalar_t, float>& gr, const float* states, int64_t b,
                         int64_t chunk, LaneAdjoint& adjoint, LaneBackwardScratch& s,
                         float* dB_lanes, float* dC_lanes) {
  const int64_t N = kN ? kN : in.n_state, L = in.length;
  const LaneTile& tile = adjoint.tile;
  const int64_t first = tile.first, first_step = chunk * kChunk;
  const int64_t len = std::min(kChunk, L - first_step), n_values = len * kLanes;
  const int64_t token0 = in.token(first_step, first), token_step = tile.reverse ? -1 : 1;
  const DecayBounds bounds = load_lane_chunk(in, b, tile, token0, token_step, len, -1, s.in);
  for (int64_t r = 0; r < kLanes; ++r)
    for (int64_t n = 0; n < N; ++n)
      s.start[n * kLanes + r] =
          states[((b * in.channels + first + r) * in.num_chunks + chunk) * N + n];
  const auto B_of = [&](int64_t j) { return tile.Bt + (token0 + j * token_step) * N; };
  const auto C_of = [&](int64_t j) { return tile.Ct + (token0 + j * token_step) * N; };
  const LaneFloats D = in.D ? load_lanes(in.D + first) : LaneFloats{};
  float* y = s.in.y;  // the scan's output before the gate (D u so far), for its gradient
  // Recompute the chunk's decays and states with the forward's scan, from a
  // copy of its start state (the walk reads the start state too).
  std::copy(s.start.begin(), s.start.end(), s.end.begin());
  with_decay_bounds(bounds, [&](auto non_positive, auto above_low) {
    lane_chunk_scan<kN, decltype(non_positive)::value, decltype(above_low)::value, true>(
        N, len, s.in.dt, s.in.du, tile.A2.data(), tile.Bt, tile.Ct, token0, token_step,
        s.end.data(), y, s.decay.data(), s.h.data());
  });
  // g = dL/d(scan output): the gradient through the gate, and the gate's own.
  gather_lanes(in, gr.grad_y, b, first, first_step, len, s.g);
  if (in.has_z) {
    gather_lanes(in, in.z, b, first, first_step, len, s.z);
    for (int64_t i = 0; i < n_values; i += kLanes) {
      const LaneFloats z = load_lanes(s.z + i), sig = sigmoid_lanes(z);
      const LaneFloats g = load_lanes(s.g + i);
      store_lanes(s.grad_z + i, g * load_lanes(y + i) * sig * (1.f + z * (1.f - sig)));
      store_lanes(s.g + i, g * (z * sig));
    }
  }
  std::fill(s.sum_wA, s.sum_wA + n_values, 0.f);
  std::fill(s.lambda_B, s.lambda_B + n_values, 0.f);
  // In passes of a few states (as the forward's), each token's vectors read
  // once per pass; within a pass the states go in order, so every sum over
  // the states keeps the states' order.
  const int64_t pass = N % kLaneStatesPerPass == 0 ? kLaneStatesPerPass : 1;
  for (int64_t n0 = 0; n0 < N; n0 += pass) {
    LaneFloats carry[kLaneStatesPerPass], grad_A[kLaneStatesPerPass];
    for (int64_t n = 0; n < pass; ++n) {
      carry[n] = load_lanes(adjoint.carry.data() + (n0 + n) * kLanes);
      grad_A[n] = load_lanes(adjoint.grad_A.data() + (n0 + n) * kLanes);
    }
    LaneFloats a2[kLaneStatesPerPass];
    for (int64_t n = 0; n < pass; ++n) a2[n] = load_lanes(tile.A2.data() + (n0 + n) * kLanes);
    // The decay the recompute used, under the same bounds (the same bits).
    const auto decay_of = [&](LaneFloats dt, int64_t n, int64_t state, auto non_positive,
                              auto above_low) {
      if constexpr (kWalkRecomputesDecays)
        return exp2_vec<LaneFloats, LaneInts, decltype(non_positive)::value,
                        decltype(above_low)::value>(dt * a2[n]);
      else
        return load_lanes(s.decay.data() + state);
    };
    with_decay_bounds(bounds, [&](auto non_positive, auto above_low) {
      for (int64_t j = len - 1; j >= 0; --j) {
        const LaneFloats g = load_lanes(s.g + j * kLanes), dt = load_lanes(s.in.dt + j * kLanes);
        const LaneFloats du = load_lanes(s.in.du + j * kLanes);
        LaneFloats sum_wA = load_lanes(s.sum_wA + j * kLanes);
        LaneFloats lambda_B = load_lanes(s.lambda_B + j * kLanes);
        const float* B = B_of(j) + n0;
        const float* C = C_of(j) + n0;
#pragma GCC unroll 16
        for (int64_t n = 0; n < pass; ++n) {
          const int64_t state = (j * N + n0 + n) * kLanes;
          const LaneFloats a = decay_of(dt, n, state, non_positive, above_low);
          const LaneFloats previous = load_lanes(
              j ? s.h.data() + state - N * kLanes : s.start.data() + (n0 + n) * kLanes);
          const LaneFloats lambda = g * C[n] + carry[n];
          const LaneFloats w = lambda * a * previous;  // dL/d(dt A_n)
          grad_A[n] += w * dt;
          sum_wA += w * load_lanes(adjoint.A.data() + (n0 + n) * kLanes);
          lambda_B += lambda * B[n];
          store_lanes(dB_lanes + state, load_lanes(dB_lanes + state) + lambda * du);
          store_lanes(dC_lanes + state, load_lanes(dC_lanes + state) +
                                            g * load_lanes(s.h.data() + state));
          carry[n] = a * lambda;
        }
        store_lanes(s.sum_wA + j * kLanes, sum_wA);
        store_lanes(s.lambda_B + j * kLanes, lambda_B);
      }
    });
    for (int64_t n = 0; n < pass; ++n) {
      store_lanes(adjoint.carry.data() + (n0 + n) * kLanes, carry[n]);
      store_lanes(adjoint.grad_A.data() + (n0 + n) * kLanes, grad_A[n]);
    }
  }
  // The per-token gradients, walked in the same order as the row path.
  for (int64_t j = len - 1; j >= 0; --j) {
    const LaneFloats u = load_lanes(s.in.u + j * kLanes), g = load_lanes(s.g + j * kLanes);
    const LaneFloats lambda_B = load_lanes(s.lambda_B + j * kLanes);
    const LaneFloats grad_dt = load_lanes(s.sum_wA + j * kLanes) + lambda_B * u;
    const LaneFloats grad_pre =
        in.softplus ? grad_dt * sigmoid_lanes(load_lanes(s.in.pre + j * kLanes)) : grad_dt;
    adjoint.grad_D += g * u;
    adjoint.grad_bias += grad_pre;
    store_lanes(s.grad_u + j * kLanes, load_lanes(s.in.dt + j * kLanes) * lambda_B + D * g);
    store_lanes(s.grad_pre + j * kLanes, grad_pre);
  }
  // Written a (d, l) row at a time, the chunk's tokens adjacent there: a
  // token at a time, each of its kLanes values went to another row, a
  // scalar store kilobytes from the last (a third of the backward's time on
  // a Xeon).
  for (int64_t r = 0; r < kLanes; ++r) {
    const int64_t row = (b * in.channels + first + r) * L + token0;
    write_lane_row(s.grad_u, r, len, gr.grad_u + row, token_step);
    write_lane_row(s.grad_pre, r, len, gr.grad_delta + row, token_step);
    if (gr.grad_z) write_lane_row(s.grad_z, r, len, gr.grad_z + row, token_step);
  }
}

template <typename scalar_t, typename acc_t>
ScanInputs<scalar_t, acc_t> make_inputs(const Tensor& u, const Tensor& delta, const Tensor& A,
                                        const Tensor& Bt, const Tensor& Ct,
                                        const std::optional<Tensor>& D,
                                        const std::optional<Tensor>& z,
                                        const std::optional<Tensor>& bias, bool softplus,
                                        int64_t reverse_from, bool average = false,
                                        const std::optional<Tensor>& dt_factor = std::nullopt,
                                        const std::optional<Tensor>& delta_weight = std::nullopt) {
  ScanInputs<scalar_t, acc_t> in;
  in.u = Rows<scalar_t>(u);
  if (dt_factor.has_value()) {
    in.dt_factor = data_of<acc_t>(*dt_factor);
    in.delta_weight = data_of<acc_t>(*delta_weight);
    in.rank = delta_weight->size(1);
  } else {
    in.delta = Rows<scalar_t>(delta);
  }
  in.has_z = z.has_value();
  if (in.has_z) in.z = Rows<scalar_t>(*z);
  in.A = data_of<acc_t>(A);
  in.Bt = data_of<acc_t>(Bt);
  in.Ct = data_of<acc_t>(Ct);
  in.D = data_of<acc_t>(D);
  in.bias = data_of<acc_t>(bias);
  in.softplus = softplus;
  in.batch = u.size(0);
  in.channels = u.size(1);
  in.length = u.size(2);
  in.n_state = A.size(1);
  in.groups = Bt.size(1);
  in.reverse_from = reverse_from;
  in.average = average;
  in.num_chunks = (in.length + kChunk - 1) / kChunk;
  return in;
}

// Rows go through the chunks in tiles of kTile adjacent channels: the tile's
// reads of channel-last inputs (the mixer's delta and z) share cache lines,
// and its B, C chunk stays in L1 while every row of the tile uses it.
constexpr int64_t kTile = kLanes;

// Lane tiles go through the sequence side by side, 64 channels of them
// chunk by chunk: a channel-last input's token is then read as one run of
// 256 bytes rather than a tile's 16 to 64 bytes per page-sized stride,
// which left the forward waiting on memory.
constexpr int64_t kTilesPerTask = 64 / kLanes;

// The forward's channel ranges, each tiled from its start: all channels, or
// with averaged directions the two halves, whose blocks a task takes in
// pairs, the forward half first (it writes the rows the backward half then
// averages into).
struct ForwardSegments {
  int64_t count, length;
};

template <typename scalar_t, typename acc_t, int kN>
void forward_all(const ScanInputs<scalar_t, acc_t>& in, const OutRows<scalar_t>& out,
                 acc_t* states) {
  const int64_t N = in.n_state;
  const ForwardSegments segments =
      in.average ? ForwardSegments{2, in.reverse_from} : ForwardSegments{1, in.channels};
  const int64_t tiles = (segments.length + kTile - 1) / kTile;
  const int64_t blocks = (tiles + kTilesPerTask - 1) / kTilesPerTask;
  torch::stable::parallel_for(0, in.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    ChunkScalars<acc_t> scalars;
    std::vector<acc_t> h(kTile * N), A2(kTile * N);
    const auto lane_scratch =
        std::is_same<acc_t, float>::value ? std::make_unique<LaneScratch>() : nullptr;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t first_tile = (task % blocks) * kTilesPerTask;
      const int64_t end_tile = std::min(tiles, first_tile + kTilesPerTask);
      for (int64_t segment = 0; segment < segments.count; ++segment) {
        const int64_t offset = segment * segments.length;
        const int64_t segment_end = offset + segments.length;
        std::vector<int64_t> row_tiles;  // their first channels
        if constexpr (std::is_same<acc_t, float>::value) {
          std::vector<LaneTile> lanes;
          for (int64_t tile = first_tile; tile < end_tile; ++tile) {
            const int64_t first = offset + tile * kTile;
            // lane_tile keeps a tile in one direction, so inside its half.
            if (lane_tile(in, first))
              lanes.push_back(make_lane_tile(in, b, first));
            else
              row_tiles.push_back(first);
          }
          for (int64_t chunk = 0; chunk < in.num_chunks; ++chunk)
            for (auto& lane : lanes)
              forward_lane_chunk<scalar_t, kN>(in, b, chunk, lane, out, states, *lane_scratch);
        } else {
          for (int64_t tile = first_tile; tile < end_tile; ++tile)
            row_tiles.push_back(offset + tile * kTile);
        }
        for (const int64_t first : row_tiles) {
          const int64_t rows = std::min(kTile, segment_end - first);
          std::fill(h.begin(), h.end(), acc_t(0));
          for (int64_t i = 0; i < rows * N; ++i) A2[i] = in.A[first * N + i] * acc_t(kLog2e);
          for (int64_t chunk = 0; chunk < in.num_chunks; ++chunk)
            for (int64_t r = 0; r < rows; ++r)
              forward_chunk<scalar_t, acc_t, kN>(in, b, first + r, chunk, h.data() + r * N,
                                                 A2.data() + r * N, out, states, scalars);
        }
      }
    }
  });
}

template <typename scalar_t, typename acc_t, int kN>
void backward_all(const ScanInputs<scalar_t, acc_t>& in, const ScanGrads<scalar_t, acc_t>& gr,
                  const acc_t* states) {
  const int64_t N = in.n_state;
  const int64_t per_group = in.channels / in.groups;
  const int64_t blocks = (per_group + kBackwardBlock - 1) / kBackwardBlock;
  const int64_t LN = in.length * N;
  torch::stable::parallel_for(0, in.batch * in.groups * blocks, 1, [&](int64_t begin, int64_t end) {
    ChunkScalars<acc_t> scalars;
    std::vector<acc_t> scratch(2 * kChunk * N), A2(kTile * N), carry(kTile * N),
        grad_A(kTile * N);
    std::unique_ptr<LaneBackwardScratch> lane_scratch;
    std::vector<float> dB_lanes, dC_lanes;
    for (int64_t task = begin; task < end; ++task) {
      // task = (b * groups + group) * blocks + block: its own slot of the buffers.
      const int64_t bg = task / blocks;
      const int64_t b = bg / in.groups;
      const int64_t block_first = (bg % in.groups) * per_group + (task % blocks) * kBackwardBlock;
      const int64_t block_end =
          std::min(block_first + kBackwardBlock, (bg % in.groups + 1) * per_group);
      acc_t* grad_Bt = gr.grad_Bt_blocks + task * LN;
      acc_t* grad_Ct = gr.grad_Ct_blocks + task * LN;
      std::vector<int64_t> row_tiles;
      if constexpr (std::is_same<acc_t, float>::value) {
        std::vector<LaneAdjoint> lanes;
        for (int64_t first = block_first; first < block_end; first += kTile) {
          if (first + kTile <= block_end && lane_tile(in, first))
            lanes.push_back(make_lane_adjoint(in, b, first));
          else
            row_tiles.push_back(first);
        }
        if (!lanes.empty()) {
          if (!lane_scratch) {
            lane_scratch = std::make_unique<LaneBackwardScratch>(N);
            dB_lanes.resize(kChunk * N * kLanes);
            dC_lanes.resize(kChunk * N * kLanes);
          }
          for (int64_t chunk = in.num_chunks - 1; chunk >= 0; --chunk) {
            std::fill(dB_lanes.begin(), dB_lanes.end(), 0.f);
            std::fill(dC_lanes.begin(), dC_lanes.end(), 0.f);
            for (auto& lane : lanes)
              backward_lane_chunk<scalar_t, kN>(in, gr, states, b, chunk, lane, *lane_scratch,
                                                dB_lanes.data(), dC_lanes.data());
            // Sum the lanes (the task's channels) once per chunk.
            const int64_t first_step = chunk * kChunk;
            const int64_t len = std::min(kChunk, in.length - first_step);
            for (int64_t j = 0; j < len; ++j) {
              const int64_t t = in.token(first_step + j, block_first);
              for (int64_t n = 0; n < N; ++n) {
                grad_Bt[t * N + n] += lane_sum(load_lanes(dB_lanes.data() + (j * N + n) * kLanes));
                grad_Ct[t * N + n] += lane_sum(load_lanes(dC_lanes.data() + (j * N + n) * kLanes));
              }
            }
          }
          for (const auto& lane : lanes) {
            for (int64_t r = 0; r < kLanes; ++r) {
              const int64_t row = b * in.channels + lane.tile.first + r;
              for (int64_t n = 0; n < N; ++n) gr.grad_A[row * N + n] = lane.grad_A[n * kLanes + r];
              if (gr.grad_D) gr.grad_D[row] = lane.grad_D[r];
              if (gr.grad_bias) gr.grad_bias[row] = lane.grad_bias[r];
            }
          }
        }
      } else {
        for (int64_t first = block_first; first < block_end; first += kTile)
          row_tiles.push_back(first);
      }
      for (const int64_t first : row_tiles) {
        const int64_t rows = std::min(kTile, block_end - first);
        std::fill(carry.begin(), carry.end(), acc_t(0));
        std::fill(grad_A.begin(), grad_A.end(), acc_t(0));
        for (int64_t i = 0; i < rows * N; ++i) A2[i] = in.A[first * N + i] * acc_t(kLog2e);
        std::vector<RowAdjoint<acc_t>> adjoints;
        for (int64_t r = 0; r < rows; ++r)
          adjoints.push_back(
              {A2.data() + r * N, carry.data() + r * N, grad_A.data() + r * N, 0, 0});
        for (int64_t chunk = in.num_chunks - 1; chunk >= 0; --chunk)
          for (int64_t r = 0; r < rows; ++r)
            backward_chunk<scalar_t, acc_t, kN>(in, gr, states, b, first + r, chunk,
                                                adjoints[r], grad_Bt, grad_Ct, scalars,
                                                scratch.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t row = b * in.channels + first + r;
          std::copy(adjoints[r].grad_A, adjoints[r].grad_A + N, gr.grad_A + row * N);
          if (gr.grad_D) gr.grad_D[row] = adjoints[r].grad_D;
          if (gr.grad_bias) gr.grad_bias[row] = adjoints[r].grad_bias;
        }
      }
    }
  });
}

// The arguments every entry point prepares the same way: B and C
// token-major, the per-channel parameters in the compute dtype.
struct PreparedScan {
  Tensor Bt, Ct, A;
  std::optional<Tensor> D, bias;
  std::optional<Tensor> dt_factor, delta_weight;  // a low-rank delta's, (b, g, l, rank), (d, rank)
};

PreparedScan prepare(const char* op, const Tensor& u, const Tensor& delta, const Tensor& A,
                     const Tensor& B, const Tensor& C, const std::optional<Tensor>& D,
                     const std::optional<Tensor>& z, const std::optional<Tensor>& bias,
                     const std::optional<Tensor>& delta_weight = std::nullopt) {
  check_cpu(u, op, "u");
  STD_TORCH_CHECK(delta.scalar_type() == u.scalar_type() &&
                      (!z.has_value() || z->scalar_type() == u.scalar_type()),
                  "mmvim::", op, ": u, delta and z must have one dtype");
  const ScalarType compute = compute_dtype(u.scalar_type());
  // (b, g, n, l) -> (b, g, l, n): each token's B and C contiguous; the
  // mixer's B and C already are, so nothing is copied. A low-rank delta's
  // factor likewise.
  const auto token_major = [&](const Tensor& t) {
    return contiguous_as(torch::stable::transpose(t, 2, 3), compute);
  };
  PreparedScan p{token_major(B), token_major(C), contiguous_as(A, compute),
                 contiguous_as(D, compute), contiguous_as(bias, compute)};
  if (delta_weight.has_value()) {
    STD_TORCH_CHECK(delta_weight->dim() == 2 && delta_weight->size(0) == u.size(1) &&
                        delta.dim() == 4 && delta.size(0) == u.size(0) &&
                        delta.size(1) == B.size(1) && delta.size(2) == delta_weight->size(1) &&
                        delta.size(3) == u.size(2),
                    "mmvim::", op,
                    ": a low-rank delta is (b, g, rank, l), grouped as B, with delta_weight "
                    "(d, rank)");
    p.dt_factor = token_major(delta);
    p.delta_weight = contiguous_as(*delta_weight, compute);
  }
  return p;
}

// Per-row partial sums (b, ...) of a per-channel gradient, summed over the
// batch in the parameter's dtype.
Tensor batch_sum(const Tensor& rows, const Tensor& like) {
  const int64_t dims[] = {0};
  return torch::stable::to(torch::stable::sum(rows, dims), like.scalar_type());
}

}  // namespace

std::tuple<Tensor, Tensor> selective_scan_cpu(Tensor u, Tensor delta, Tensor A, Tensor B,
                                              Tensor C, std::optional<Tensor> D,
                                              std::optional<Tensor> z,
                                              std::optional<Tensor> delta_bias,
                                              bool delta_softplus, int64_t reverse_from,
                                              std::optional<Tensor> delta_weight,
                                              bool average_directions, bool save_states) {
  const auto p =
      prepare("selective_scan_cpu", u, delta, A, B, C, D, z, delta_bias, delta_weight);
  STD_TORCH_CHECK(!average_directions || 2 * reverse_from == u.size(1),
                  "mmvim::selective_scan_cpu: average_directions needs reverse_from = d/2 (",
                  u.size(1) / 2, "), got ", reverse_from);
  // y takes u's layout when u is channel-last (the mixer's): out_proj then
  // reads it without a transpose.
  Tensor out = empty_in_layout_of(u, u.scalar_type(),
                                  average_directions ? reverse_from : u.size(1));
  const int64_t num_chunks = save_states ? (u.size(2) + kChunk - 1) / kChunk : 0;
  Tensor states =
      torch::stable::new_empty(u, {u.size(0), u.size(1), num_chunks, A.size(1)},
                               compute_dtype(u.scalar_type()));
  MMVIM_DISPATCH_FLOATING(u.scalar_type(), "selective_scan_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    auto in = make_inputs<scalar_t, acc_t>(u, delta, p.A, p.Bt, p.Ct, p.D, z, p.bias,
                                           delta_softplus, reverse_from, average_directions,
                                           p.dt_factor, p.delta_weight);
    acc_t* saved = save_states ? data_of<acc_t>(states) : nullptr;
    if (in.n_state == 16)
      forward_all<scalar_t, acc_t, 16>(in, OutRows<scalar_t>(out), saved);
    else
      forward_all<scalar_t, acc_t, 0>(in, OutRows<scalar_t>(out), saved);
  });
  return {out, states};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
selective_scan_cpu_backward(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C,
                            std::optional<Tensor> D, std::optional<Tensor> z,
                            std::optional<Tensor> delta_bias, bool delta_softplus,
                            int64_t reverse_from, Tensor states, Tensor grad_y) {
  const auto p = prepare("selective_scan_cpu_backward", u, delta, A, B, C, D, z, delta_bias);
  const ScalarType compute = compute_dtype(u.scalar_type());
  STD_TORCH_CHECK(states.scalar_type() == compute && states.is_contiguous(),
                  "mmvim::selective_scan_cpu_backward: states must be the forward's");
  grad_y = torch::stable::to(grad_y, u.scalar_type());
  const int64_t batch = u.size(0), channels = u.size(1), length = u.size(2);
  const int64_t n_state = A.size(1), groups = B.size(1);
  const int64_t blocks = ((channels / groups) + kBackwardBlock - 1) / kBackwardBlock;
  Tensor grad_u = torch::stable::new_empty(u, {batch, channels, length});
  Tensor grad_delta = torch::stable::new_empty(u, {batch, channels, length});
  // One row per scanned channel: both directions of a shared z add below.
  std::optional<Tensor> grad_z_rows;
  if (z.has_value()) grad_z_rows = torch::stable::new_empty(u, {batch, channels, length});
  Tensor grad_A_rows = torch::stable::new_empty(u, {batch, channels, n_state}, compute);
  Tensor grad_D_rows = torch::stable::new_empty(u, {batch, channels}, compute);
  Tensor grad_bias_rows = torch::stable::new_empty(u, {batch, channels}, compute);
  Tensor grad_Bt_blocks =
      torch::stable::new_zeros(u, {batch, groups, blocks, length, n_state}, compute);
  Tensor grad_Ct_blocks =
      torch::stable::new_zeros(u, {batch, groups, blocks, length, n_state}, compute);
  MMVIM_DISPATCH_FLOATING(u.scalar_type(), "selective_scan_cpu_backward", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    auto in = make_inputs<scalar_t, acc_t>(u, delta, p.A, p.Bt, p.Ct, p.D, z, p.bias,
                                           delta_softplus, reverse_from);
    ScanGrads<scalar_t, acc_t> gr;
    gr.grad_y = Rows<scalar_t>(grad_y);
    gr.grad_u = data_of<scalar_t>(grad_u);
    gr.grad_delta = data_of<scalar_t>(grad_delta);
    gr.grad_z = data_of<scalar_t>(grad_z_rows);
    gr.grad_A = data_of<acc_t>(grad_A_rows);
    gr.grad_D = D.has_value() ? data_of<acc_t>(grad_D_rows) : nullptr;
    gr.grad_bias = delta_bias.has_value() ? data_of<acc_t>(grad_bias_rows) : nullptr;
    gr.grad_Bt_blocks = data_of<acc_t>(grad_Bt_blocks);
    gr.grad_Ct_blocks = data_of<acc_t>(grad_Ct_blocks);
    if (in.n_state == 16)
      backward_all<scalar_t, acc_t, 16>(in, gr, data_of<acc_t>(states));
    else
      backward_all<scalar_t, acc_t, 0>(in, gr, data_of<acc_t>(states));
  });
  // Sum the blocks' buffers in block order: deterministic. Back to
  // (b, g, n, l), contiguous, in B's and C's dtypes.
  const int64_t block_dim[] = {2};
  const auto token_major_sum = [&](const Tensor& blocks_sum, const Tensor& like) {
    return contiguous_as(
        torch::stable::transpose(torch::stable::sum(blocks_sum, block_dim), 2, 3),
        like.scalar_type());
  };
  Tensor grad_z = no_gradient(u);
  if (z.has_value()) {
    grad_z = *grad_z_rows;
    if (z->size(1) != channels) {
      // One gate shared by both directions: add the halves' gradients.
      const int64_t half_dim[] = {1};
      grad_z = torch::stable::sum(
          torch::stable::view(grad_z, {batch, channels / z->size(1), z->size(1), length}),
          half_dim, false, compute);
    }
    grad_z = torch::stable::to(grad_z, z->scalar_type());
  }
  return {grad_u,
          grad_delta,
          batch_sum(grad_A_rows, A),
          token_major_sum(grad_Bt_blocks, B),
          token_major_sum(grad_Ct_blocks, C),
          D.has_value() ? batch_sum(grad_D_rows, *D) : no_gradient(u),
          grad_z,
          delta_bias.has_value() ? batch_sum(grad_bias_rows, *delta_bias) : no_gradient(u)};
}

}  // namespace mmvim
