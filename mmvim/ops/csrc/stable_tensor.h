// What mmvim's CPU kernels need of a tensor, through the LibTorch stable ABI
// (torch/csrc/stable, targeted at torch 2.10 by setup.py): the extension
// calls torch only through its versioned C shim, so one build keeps loading
// into later torch releases instead of failing with undefined C++ symbols.
#pragma once

#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <optional>

namespace mmvim {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

// fp32, bf16 and fp16 inputs compute in float32; float64 inputs in float64.
inline ScalarType compute_dtype(ScalarType dtype) {
  return dtype == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

// Runs the lambda with scalar_t bound to the tensor dtype's C++ type.
#define MMVIM_DISPATCH_FLOATING(TYPE, NAME, ...)                        \
  THO_DISPATCH_SWITCH(TYPE, NAME,                                       \
                      THO_DISPATCH_CASE(ScalarType::Float, __VA_ARGS__) \
                      THO_DISPATCH_CASE(ScalarType::Double, __VA_ARGS__) \
                      THO_DISPATCH_CASE(ScalarType::Half, __VA_ARGS__)  \
                      THO_DISPATCH_CASE(ScalarType::BFloat16, __VA_ARGS__))

template <typename T>
T* data_of(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

template <typename T>
T* data_of(const std::optional<Tensor>& t) {
  return t.has_value() ? data_of<T>(*t) : nullptr;
}

inline void check_cpu(const Tensor& t, const char* op, const char* name) {
  STD_TORCH_CHECK(t.is_cpu(), "mmvim::", op, ": ", name, " must be a CPU tensor");
}

// Stride 1 along the channels: the mixer's views of its projections, which
// the kernels read token by token as runs of adjacent channels.
inline bool is_channel_last(const Tensor& t) { return t.stride(1) == 1 && t.size(1) > 1; }

// A new (batch, channels, length) tensor laid out like t in `dtype` (channels:
// t's unless given): channel-last ((b, l, d) memory) when t is, so the next op
// reads it without a transpose; else contiguous.
// mmvim.ops.library.empty_in_layout_of states the same rule for the
// operators' fake implementations.
inline Tensor empty_in_layout_of(const Tensor& t, ScalarType dtype, int64_t channels = -1) {
  const int64_t batch = t.size(0), length = t.size(2);
  if (channels < 0) channels = t.size(1);
  if (!is_channel_last(t)) return torch::stable::new_empty(t, {batch, channels, length}, dtype);
  return torch::stable::transpose(torch::stable::new_empty(t, {batch, length, channels}, dtype),
                                  1, 2);
}

// t in `dtype`, contiguous (no copy when it already is both).
inline Tensor contiguous_as(const Tensor& t, ScalarType dtype) {
  return torch::stable::contiguous(torch::stable::to(t, dtype));
}

inline std::optional<Tensor> contiguous_as(const std::optional<Tensor>& t, ScalarType dtype) {
  if (!t.has_value()) return std::nullopt;
  return contiguous_as(*t, dtype);
}

// The gradient of an optional input that was not given: an empty tensor
// (operator outputs cannot be None).
inline Tensor no_gradient(const Tensor& like) { return torch::stable::new_empty(like, {0}); }

}  // namespace mmvim
