// The CPU operators of mmvim's `cpu` backend (registered in cpu_ops.cpp).
#pragma once

#include "stable_tensor.h"

#include <optional>
#include <tuple>

namespace mmvim {

// (y, states), delta (b, d, l) or, with delta_weight (d, rank), its low-rank
// factor (b, g, rank, l) grouped as B: y in u's dtype and layout, (b, d, l) or with
// average_directions the directions' average (b, d/2, l); states
// (b, d, chunks, n), the state at the start of every 64-token chunk, in the
// compute dtype (no chunks without save_states).
std::tuple<Tensor, Tensor> selective_scan_cpu(Tensor u, Tensor delta, Tensor A, Tensor B,
                                              Tensor C, std::optional<Tensor> D,
                                              std::optional<Tensor> z,
                                              std::optional<Tensor> delta_bias,
                                              bool delta_softplus, int64_t reverse_from,
                                              std::optional<Tensor> delta_weight,
                                              bool average_directions, bool save_states);

// Every input's gradient, contiguous, in its dtype and shape (empty for an
// absent optional input).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
selective_scan_cpu_backward(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C,
                            std::optional<Tensor> D, std::optional<Tensor> z,
                            std::optional<Tensor> delta_bias, bool delta_softplus,
                            int64_t reverse_from, Tensor states, Tensor grad_y);

// silu(causal depthwise conv(x)) (b, d_out, l) in x's dtype and layout:
// output channel c reads input channel c % d_in; channels from reverse_from
// on look ahead.
Tensor causal_conv1d_silu_cpu(Tensor x, Tensor weight, std::optional<Tensor> bias,
                              int64_t reverse_from);

// (grad_x in x's layout, grad_weight, grad_bias or empty).
std::tuple<Tensor, Tensor, Tensor> causal_conv1d_silu_cpu_backward(Tensor x, Tensor weight,
                                                                   std::optional<Tensor> bias,
                                                                   int64_t reverse_from,
                                                                   Tensor grad_out);

// x * rsqrt(mean(x^2, last dim) + eps) * weight, float32 x and weight (1-D,
// x's last dimension): a new contiguous tensor of x's shape.
Tensor rms_norm_cpu(Tensor x, Tensor weight, double eps);

// (grad_x in x's shape, grad_weight), contiguous.
std::tuple<Tensor, Tensor> rms_norm_cpu_backward(Tensor x, Tensor weight, double eps,
                                                 Tensor grad_out);

}  // namespace mmvim
