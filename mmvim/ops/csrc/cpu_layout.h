// The (batch, channels, length) layouts mmvim's CPU kernels write.
#pragma once

#include <ATen/ATen.h>

namespace mmvim {

// Stride 1 along the channels: the mixer's views of its projections, which
// the kernels read token by token as runs of adjacent channels.
inline bool is_channel_last(const at::Tensor& t) { return t.stride(1) == 1 && t.size(1) > 1; }

// A new tensor shaped and laid out like t: channel-last ((b, l, d) memory)
// when t is, so the next op reads it without a transpose; else contiguous.
inline at::Tensor empty_in_layout_of(const at::Tensor& t) {
  if (!is_channel_last(t))
    return at::empty(t.sizes(), t.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t batch = t.size(0), channels = t.size(1), length = t.size(2);
  return at::empty_strided({batch, channels, length}, {length * channels, 1, channels},
                           t.options());
}

}  // namespace mmvim
