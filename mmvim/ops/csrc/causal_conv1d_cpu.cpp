// mmvim's causal depthwise conv1d + SiLU for CPUs, forward and backward.
//
// Per (batch, output channel) row: pre_t = bias + sum_k w_k x_{t - (K-1) + k}
// (causal; channels from reverse_from on: x_{t + (K-1) - k}, the conv of the
// flipped sequence in token order), out_t = silu(pre_t). Output channel c
// reads input channel c % d_in: a Vim layer's two directions are one call
// writing one (b, 2d, l) tensor, no concatenation after. Output channels are
// handled in segments of one direction and consecutive input channels. Rows are spread over threads; each row
// is copied once into a zero-padded contiguous buffer (the mixer's x is a
// channel-last view), after which every loop runs over the tokens and
// vectorises. oneDNN's depthwise conv takes ~1 GFLOP/s on these skinny
// shapes, behind a padded copy of x. A channel-last x (the mixer's, a view of
// in_proj's output) takes a path of its own in the forward: token by token,
// each token's channels in lane vectors (cpu_lanes.h; float and bf16, fp16
// value by value), into a channel-last
// output, the layout the scan reads and x_proj multiplies without a copy;
// its backward in blocks of adjacent channels, with grad_x channel-last.
#include "cpu_lanes.h"
#include "cpu_math.h"
#include "cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mmvim {
namespace {

template <typename scalar_t, typename acc_t>
struct ConvRows {
  const scalar_t* x;
  int64_t batch_stride, channel_stride, token_stride;
  const acc_t *weight, *bias;  // (d, K); (d) or null
  int64_t channels, length, width;
  bool reverse;

  // x of row (b, c) into padded[K-1 .. K-1+L), zeros around: padded[i] is
  // x_{i-(K-1)}, so the causal tap k reads padded[t + k] and the reverse
  // tap k reads padded[t + 2(K-1) - k].
  void load(int64_t b, int64_t c, acc_t* padded) const {
    const scalar_t* row = x + b * batch_stride + c * channel_stride;
    std::fill(padded, padded + width - 1, acc_t(0));
    for (int64_t t = 0; t < length; ++t)
      padded[width - 1 + t] = static_cast<acc_t>(row[t * token_stride]);
    std::fill(padded + width - 1 + length, padded + 2 * (width - 1) + length, acc_t(0));
  }
  int64_t offset(int64_t k) const { return reverse ? 2 * (width - 1) - k : k; }
  // The token tap k of output t reads (outside [0, length): zero padding).
  int64_t source(int64_t t, int64_t k) const {
    return reverse ? t + (width - 1) - k : t - (width - 1) + k;
  }

  void pre_activation(int64_t c, const acc_t* padded, acc_t* pre) const {
    const acc_t b = bias ? bias[c] : acc_t(0);
    for (int64_t t = 0; t < length; ++t) pre[t] = b;
    for (int64_t k = 0; k < width; ++k) {
      const acc_t w = weight[c * width + k];
      const acc_t* __restrict src = padded + offset(k);
      acc_t* __restrict dst = pre;
      for (int64_t t = 0; t < length; ++t) dst[t] += w * src[t];
    }
  }
};

// The rows of one segment: output channels [first, first + channels), one
// direction, reading input channels from first % d_in on.
template <typename scalar_t, typename acc_t>
ConvRows<scalar_t, acc_t> make_rows(const Tensor& x, const acc_t* weight, const acc_t* bias,
                                    int64_t first, int64_t channels, bool reverse,
                                    int64_t width) {
  return {data_of<scalar_t>(x) + (first % x.size(1)) * x.stride(1), x.stride(0), x.stride(1),
          x.stride(2), weight + first * width, bias ? bias + first : nullptr, channels,
          x.size(2), width, reverse};
}

// A (b, d_out, l) output (or gradient) through its strides; `row(b, c)` of
// segment-relative channel c once `data` points at the segment.
template <typename T>
struct ConvOut {
  T* data;
  int64_t batch_stride, channel_stride, token_stride;
  explicit ConvOut(const Tensor& t)
      : data(data_of<T>(t)), batch_stride(t.stride(0)), channel_stride(t.stride(1)),
        token_stride(t.stride(2)) {}
  ConvOut at_channel(int64_t first) const {
    ConvOut segment = *this;
    segment.data += first * channel_stride;
    return segment;
  }
  T* row(int64_t b, int64_t c) const { return data + b * batch_stride + c * channel_stride; }
};

// A segment: output channels [first, end) scanned one way whose inputs are
// consecutive channels of x.
struct Segment {
  int64_t first, end;
  bool reverse;
};

// The segments of d_out output channels over d_in input channels: split at
// reverse_from and at every multiple of d_in.
inline std::vector<Segment> segments(int64_t d_in, int64_t d_out, int64_t reverse_from) {
  std::vector<Segment> result;
  int64_t first = 0;
  while (first < d_out) {
    int64_t end = std::min(d_out, (first / d_in + 1) * d_in);
    if (first < reverse_from && reverse_from < end) end = reverse_from;
    result.push_back({first, end, first >= reverse_from});
    first = end;
  }
  return result;
}

constexpr int64_t kRowsPerTask = 16;
constexpr int64_t kChannelBlock = 64;
constexpr int64_t kTokensPerTask = 64;

// The pre-activation of one token of a channel-last x for kWidth (or, if
// 0, nc) adjacent channels: with a compile-time width the sums stay in
// registers until the caller reads them. weight_t: tap-major, taps
// weight_stride apart.
template <int kWidth, typename scalar_t, typename acc_t>
inline void channel_last_pre(const ConvRows<scalar_t, acc_t>& rows, int64_t nc,
                             const acc_t* weight_t, int64_t weight_stride, const acc_t* bias,
                             const scalar_t* x, int64_t t, acc_t* pre) {
  const int64_t n = kWidth ? kWidth : nc, L = rows.length, K = rows.width;
  for (int64_t c = 0; c < n; ++c) pre[c] = bias ? bias[c] : acc_t(0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t src_t = rows.source(t, k);
    if (src_t < 0 || src_t >= L) continue;
    const scalar_t* __restrict src = x + src_t * rows.token_stride;
    const acc_t* __restrict w = weight_t + k * weight_stride;
    for (int64_t c = 0; c < n; ++c) pre[c] += w[c] * static_cast<acc_t>(src[c]);
  }
}

template <int kWidth, typename scalar_t, typename acc_t>
inline void channel_last_token(const ConvRows<scalar_t, acc_t>& rows, int64_t nc,
                               const acc_t* weight_t, int64_t weight_stride, const acc_t* bias,
                               const scalar_t* x, int64_t t, scalar_t* dst) {
  const int64_t n = kWidth ? kWidth : nc;
  acc_t pre[kWidth ? kWidth : kChannelBlock];
  channel_last_pre<kWidth>(rows, nc, weight_t, weight_stride, bias, x, t, pre);
  for (int64_t c = 0; c < n; ++c) dst[c] = static_cast<scalar_t>(pre[c] * sigmoid(pre[c]));
}

// Channels [c0, c0 + nc)'s weights tap-major: weight_t[k * stride + c].
template <typename scalar_t, typename acc_t>
void transpose_weights(const ConvRows<scalar_t, acc_t>& rows, int64_t c0, int64_t nc,
                       int64_t stride, acc_t* weight_t) {
  const int64_t K = rows.width;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < nc; ++c) weight_t[k * stride + c] = rows.weight[(c0 + c) * K + k];
}

// The widest conv the lane path takes (Vim's is 4).
constexpr int64_t kMaxLaneWidth = 8;

// Vectors whose silu channel_last_token_lanes computes side by side: a
// sigmoid is a chain of dependent instructions (exp2, a division) tens of
// cycles long, and one vector at a time left the vector units waiting.
constexpr int64_t kSiluVectors = 4;

// The first `vectors` lane vectors of channels of one token of a float or
// bf16 channel-last x: the same sums in the same order as channel_last_pre
// (a tap outside the sequence adds nothing), cpu_lanes.h's sigmoid, which
// gives cpu_math.h's bits, and its bf16 rounding, c10's. The taps' rows are
// found once per token: found per vector, as channel_last_pre does, they
// cost 12 instructions an output. bf16 went value by value before: with
// cpu_lanes.h's one-instruction conversions on AVX-512, Vim-Ti's bf16 conv
// call now runs 1.15-1.24x faster (Xeon, one thread), the same bits.
template <typename scalar_t>
inline void channel_last_token_lanes(const ConvRows<scalar_t, float>& rows, int64_t vectors,
                                     const float* weight_t, int64_t weight_stride,
                                     const float* bias, const scalar_t* x, int64_t t,
                                     scalar_t* dst) {
  const int64_t L = rows.length, K = rows.width;
  const scalar_t* src[kMaxLaneWidth];
  const float* w[kMaxLaneWidth];
  int64_t taps = 0;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t src_t = rows.source(t, k);
    if (src_t < 0 || src_t >= L) continue;
    src[taps] = x + src_t * rows.token_stride;
    w[taps++] = weight_t + k * weight_stride;
  }
  const auto silu_vectors = [&](int64_t v0, auto count) {
    constexpr int64_t kCount = decltype(count)::value;
    LaneFloats pre[kCount];
    for (int64_t q = 0; q < kCount; ++q)
      pre[q] = bias ? load_lanes(bias + (v0 + q) * kLanes) : LaneFloats{};
    for (int64_t k = 0; k < taps; ++k)
      for (int64_t q = 0; q < kCount; ++q) {
        const int64_t c = (v0 + q) * kLanes;
        pre[q] += load_lanes(w[k] + c) * load_as_floats(src[k] + c);
      }
    for (int64_t q = 0; q < kCount; ++q)
      store_as(dst + (v0 + q) * kLanes, pre[q] * sigmoid_lanes(pre[q]));
  };
  for_groups<kSiluVectors>(vectors, silu_vectors);
}

// The forward for a channel-last x into a channel-last out: tasks of
// kTokensPerTask tokens of one batch entry, each token's channels in one
// sweep, so that x and out are read and written front to back (64-channel
// blocks walked over all tokens, strided, ran 1.45x slower once the
// arithmetic ran in lanes).
template <typename scalar_t, typename acc_t>
void forward_channel_last(const ConvRows<scalar_t, acc_t>& rows, int64_t batch,
                          const ConvOut<scalar_t>& out) {
  const int64_t d = rows.channels, L = rows.length, K = rows.width;
  const int64_t tiles = (L + kTokensPerTask - 1) / kTokensPerTask;
  std::vector<acc_t> weight_t(K * d);
  transpose_weights(rows, 0, d, d, weight_t.data());
  constexpr bool kLanePath = kLaneConverts<scalar_t> && std::is_same<acc_t, float>::value;
  const int64_t vectors = kLanePath && K <= kMaxLaneWidth ? d / kLanes : 0;
  torch::stable::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, t0 = (task % tiles) * kTokensPerTask;
      const scalar_t* x = rows.x + b * rows.batch_stride;
      for (int64_t t = t0; t < std::min(L, t0 + kTokensPerTask); ++t) {
        scalar_t* dst = out.row(b, 0) + t * out.token_stride;
        if constexpr (kLanePath)
          channel_last_token_lanes(rows, vectors, weight_t.data(), d, rows.bias, x, t, dst);
        for (int64_t c0 = vectors * kLanes; c0 < d; c0 += kChannelBlock) {
          const int64_t nc = std::min(kChannelBlock, d - c0);
          const acc_t* bias = rows.bias ? rows.bias + c0 : nullptr;
          if (nc == kChannelBlock)
            channel_last_token<kChannelBlock>(rows, nc, weight_t.data() + c0, d, bias, x + c0, t,
                                              dst + c0);
          else
            channel_last_token<0>(rows, nc, weight_t.data() + c0, d, bias, x + c0, t, dst + c0);
        }
      }
    }
  });
}

// The backward for a channel-last x: per block of kChannelBlock channels,
// one pass over the tokens for the gradients of the pre-activation, the
// weights and the bias (summed over the tokens in order, as the row path
// does), then one for grad_x, channel-last like x.
// G: grad_x's element type (the compute dtype when it is summed after).
template <typename scalar_t, typename acc_t, typename G>
void backward_channel_last(const ConvRows<scalar_t, acc_t>& rows,
                           const ConvRows<scalar_t, acc_t>& grads, int64_t batch,
                           const ConvOut<G>& grad_x, const ConvOut<acc_t>& grad_w,
                           const ConvOut<acc_t>& grad_b) {
  const int64_t d = rows.channels, L = rows.length, K = rows.width;
  const int64_t blocks = (d + kChannelBlock - 1) / kChannelBlock;
  torch::stable::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> weight_t(K * kChannelBlock), grad_pre(L * kChannelBlock),
        weight_sums(K * kChannelBlock), bias_sums(kChannelBlock);
    acc_t pre[kChannelBlock], grad_in[kChannelBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, c0 = (task % blocks) * kChannelBlock;
      const int64_t nc = std::min(kChannelBlock, d - c0);
      transpose_weights(rows, c0, nc, kChannelBlock, weight_t.data());
      std::fill(weight_sums.begin(), weight_sums.end(), acc_t(0));
      std::fill(bias_sums.begin(), bias_sums.end(), acc_t(0));
      const acc_t* bias = rows.bias ? rows.bias + c0 : nullptr;
      const scalar_t* x = rows.x + b * rows.batch_stride + c0;
      const scalar_t* g = grads.x + b * grads.batch_stride + c0 * grads.channel_stride;
      for (int64_t t = 0; t < L; ++t) {
        if (nc == kChannelBlock)
          channel_last_pre<kChannelBlock>(rows, nc, weight_t.data(), kChannelBlock, bias, x, t,
                                          pre);
        else
          channel_last_pre<0>(rows, nc, weight_t.data(), kChannelBlock, bias, x, t, pre);
        const scalar_t* g_t = g + t * grads.token_stride;
        acc_t* __restrict gp = grad_pre.data() + t * kChannelBlock;
        for (int64_t c = 0; c < nc; ++c) {
          const acc_t sig = sigmoid(pre[c]);
          gp[c] = static_cast<acc_t>(g_t[c * grads.channel_stride]) * sig *
                  (acc_t(1) + pre[c] * (acc_t(1) - sig));
          bias_sums[c] += gp[c];
        }
        for (int64_t k = 0; k < K; ++k) {
          const int64_t src_t = rows.source(t, k);
          if (src_t < 0 || src_t >= L) continue;
          const scalar_t* __restrict src = x + src_t * rows.token_stride;
          acc_t* __restrict sums = weight_sums.data() + k * kChannelBlock;
          for (int64_t c = 0; c < nc; ++c) sums[c] += gp[c] * static_cast<acc_t>(src[c]);
        }
      }
      // x at token s fed output t through tap k where s = t - (K-1) + k
      // (reverse: s = t + (K-1) - k).
      for (int64_t s = 0; s < L; ++s) {
        for (int64_t c = 0; c < nc; ++c) grad_in[c] = acc_t(0);
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = rows.reverse ? s - (K - 1) + k : s + (K - 1) - k;
          if (t < 0 || t >= L) continue;
          const acc_t* __restrict gp = grad_pre.data() + t * kChannelBlock;
          const acc_t* __restrict w = weight_t.data() + k * kChannelBlock;
          for (int64_t c = 0; c < nc; ++c) grad_in[c] += w[c] * gp[c];
        }
        G* dst = grad_x.row(b, c0) + s * grad_x.token_stride;
        for (int64_t c = 0; c < nc; ++c) dst[c] = static_cast<G>(grad_in[c]);
      }
      for (int64_t c = 0; c < nc; ++c) {
        *grad_b.row(b, c0 + c) = bias_sums[c];
        for (int64_t k = 0; k < K; ++k)
          grad_w.row(b, c0 + c)[k] = weight_sums[k * kChannelBlock + c];
      }
    }
  });
}

// The conv's parameters in the compute dtype, contiguous.
struct ConvWeights {
  Tensor weight;
  std::optional<Tensor> bias;
};

ConvWeights prepare(const char* op, const Tensor& x, const Tensor& weight,
                    const std::optional<Tensor>& bias) {
  check_cpu(x, op, "x");
  STD_TORCH_CHECK(weight.size(0) % x.size(1) == 0, "mmvim::", op,
                  ": weight's channels must be a multiple of x's");
  const ScalarType compute = compute_dtype(x.scalar_type());
  return {contiguous_as(weight, compute), contiguous_as(bias, compute)};
}

template <typename scalar_t, typename acc_t>
void forward_rows(const ConvRows<scalar_t, acc_t>& rows, int64_t batch,
                  const ConvOut<scalar_t>& out) {
  torch::stable::parallel_for(0, batch * rows.channels, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> padded(rows.length + 2 * (rows.width - 1)), pre(rows.length);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / rows.channels, c = r % rows.channels;
      rows.load(b, c, padded.data());
      rows.pre_activation(c, padded.data(), pre.data());
      scalar_t* dst = out.row(b, c);
      for (int64_t t = 0; t < rows.length; ++t)
        dst[t * out.token_stride] = static_cast<scalar_t>(pre[t] * sigmoid(pre[t]));
    }
  });
}

template <typename scalar_t, typename acc_t, typename G>
void backward_rows(const ConvRows<scalar_t, acc_t>& rows, const ConvRows<scalar_t, acc_t>& grads,
                   int64_t batch, const ConvOut<G>& grad_x, const ConvOut<acc_t>& grad_w,
                   const ConvOut<acc_t>& grad_b) {
  const int64_t L = rows.length, K = rows.width, channels = rows.channels;
  torch::stable::parallel_for(0, batch * channels, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> padded(L + 2 * (K - 1)), pre(L), grad_pre(L), grad_padded(L + 2 * (K - 1));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / channels, c = r % channels;
      rows.load(b, c, padded.data());
      rows.pre_activation(c, padded.data(), pre.data());
      const scalar_t* g = grads.x + b * grads.batch_stride + c * grads.channel_stride;
      acc_t sum_grad_pre = 0;
      for (int64_t t = 0; t < L; ++t) {
        const acc_t s = sigmoid(pre[t]);
        grad_pre[t] = static_cast<acc_t>(g[t * grads.token_stride]) * s *
                      (acc_t(1) + pre[t] * (acc_t(1) - s));
        sum_grad_pre += grad_pre[t];
      }
      *grad_b.row(b, c) = sum_grad_pre;
      std::fill(grad_padded.begin(), grad_padded.end(), acc_t(0));
      for (int64_t k = 0; k < K; ++k) {
        const acc_t w = rows.weight[c * K + k];
        const acc_t* __restrict src = padded.data() + rows.offset(k);
        acc_t* __restrict dst = grad_padded.data() + rows.offset(k);
        const acc_t* __restrict gp = grad_pre.data();
        acc_t sum = 0;
        for (int64_t t = 0; t < L; ++t) sum += gp[t] * src[t];
        for (int64_t t = 0; t < L; ++t) dst[t] += w * gp[t];
        grad_w.row(b, c)[k] = sum;
      }
      G* gx = grad_x.row(b, c);
      for (int64_t t = 0; t < L; ++t)
        gx[t * grad_x.token_stride] = static_cast<G>(grad_padded[K - 1 + t]);
    }
  });
}

}  // namespace

Tensor causal_conv1d_silu_cpu(Tensor x, Tensor weight, std::optional<Tensor> bias,
                              int64_t reverse_from) {
  const auto w = prepare("causal_conv1d_silu_cpu", x, weight, bias);
  const bool channel_last = is_channel_last(x);
  const int64_t d_out = weight.size(0), width = weight.size(1);
  Tensor out = empty_in_layout_of(x, x.scalar_type(), d_out);
  MMVIM_DISPATCH_FLOATING(x.scalar_type(), "causal_conv1d_silu_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    const ConvOut<scalar_t> all(out);
    for (const Segment& segment : segments(x.size(1), d_out, reverse_from)) {
      const auto rows = make_rows<scalar_t, acc_t>(
          x, data_of<acc_t>(w.weight), data_of<acc_t>(w.bias), segment.first,
          segment.end - segment.first, segment.reverse, width);
      if (channel_last)
        forward_channel_last(rows, x.size(0), all.at_channel(segment.first));
      else
        forward_rows(rows, x.size(0), all.at_channel(segment.first));
    }
  });
  return out;
}

// The gradients are computed per output channel (grad_x rows, and
// grad_weight and grad_bias per batch entry in the compute dtype), then summed
// over the output channels reading each input channel and over the batch.
std::tuple<Tensor, Tensor, Tensor> causal_conv1d_silu_cpu_backward(Tensor x, Tensor weight,
                                                                   std::optional<Tensor> bias,
                                                                   int64_t reverse_from,
                                                                   Tensor grad_out) {
  const auto w = prepare("causal_conv1d_silu_cpu_backward", x, weight, bias);
  grad_out = torch::stable::to(grad_out, x.scalar_type());
  const ScalarType compute = compute_dtype(x.scalar_type());
  const int64_t batch = x.size(0), d_in = x.size(1), length = x.size(2);
  const int64_t d_out = weight.size(0), width = weight.size(1);
  const bool channel_last = is_channel_last(x);
  const bool folded = d_out != d_in;
  Tensor grad_rows = empty_in_layout_of(x, folded ? compute : x.scalar_type(), d_out);
  Tensor grad_weight = torch::stable::new_empty(x, {batch, d_out, width}, compute);
  Tensor grad_bias = torch::stable::new_empty(x, {batch, d_out, 1}, compute);
  MMVIM_DISPATCH_FLOATING(x.scalar_type(), "causal_conv1d_silu_cpu_backward", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    const ConvOut<acc_t> all_w(grad_weight), all_b(grad_bias);
    for (const Segment& segment : segments(d_in, d_out, reverse_from)) {
      const int64_t n = segment.end - segment.first;
      const auto rows = make_rows<scalar_t, acc_t>(x, data_of<acc_t>(w.weight),
                                                   data_of<acc_t>(w.bias), segment.first, n,
                                                   segment.reverse, width);
      // grad_out read through the same segment of output channels.
      auto grads = rows;
      grads.x = data_of<scalar_t>(grad_out) + segment.first * grad_out.stride(1);
      grads.batch_stride = grad_out.stride(0);
      grads.channel_stride = grad_out.stride(1);
      grads.token_stride = grad_out.stride(2);
      const auto backward = [&](const auto& grad_x) {
        if (channel_last)
          backward_channel_last(rows, grads, batch, grad_x.at_channel(segment.first),
                                all_w.at_channel(segment.first), all_b.at_channel(segment.first));
        else
          backward_rows(rows, grads, batch, grad_x.at_channel(segment.first),
                        all_w.at_channel(segment.first), all_b.at_channel(segment.first));
      };
      if (folded)
        backward(ConvOut<acc_t>(grad_rows));
      else
        backward(ConvOut<scalar_t>(grad_rows));
    }
  });
  Tensor grad_x = grad_rows;
  if (folded) {
    // Output channel c fed input channel c % d_in: add the copies.
    const int64_t copies = d_out / d_in;
    if (channel_last) {
      const int64_t dim[] = {2};
      grad_x = torch::stable::transpose(
          torch::stable::sum(torch::stable::view(torch::stable::transpose(grad_rows, 1, 2),
                                                 {batch, length, copies, d_in}),
                             dim),
          1, 2);
    } else {
      const int64_t dim[] = {1};
      grad_x = torch::stable::sum(torch::stable::view(grad_rows, {batch, copies, d_in, length}),
                                  dim);
    }
    grad_x = torch::stable::to(grad_x, x.scalar_type());
  }
  const int64_t batch_dim[] = {0};
  Tensor grad_b = no_gradient(x);
  if (bias.has_value())
    grad_b = torch::stable::to(
        torch::stable::view(torch::stable::sum(grad_bias, batch_dim), {d_out}),
        bias->scalar_type());
  return {grad_x,
          torch::stable::to(torch::stable::sum(grad_weight, batch_dim), weight.scalar_type()),
          grad_b};
}

}  // namespace mmvim
