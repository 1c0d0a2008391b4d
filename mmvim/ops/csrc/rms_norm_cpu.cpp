// mmvim's RMSNorm for CPUs, the inference forward: y = x * rsqrt(mean(x^2) +
// eps) * weight over the last dimension of a float32 tensor.
//
// Each row is read twice (its sum of squares, then the products) and the
// output written once. torch's formula makes a square, a mean, two products
// and their temporaries, five passes over a Vim-Ti block's (1025, 192)
// stream where this makes two: the block's norm took 265 us a call that way
// (one thread, Xeon). The products round as the formula's do, x * r first,
// then * weight; only the sum of squares is added in another order.
#include "cpu_ops.h"

#include <cmath>

namespace mmvim {
namespace {

// Partial sums the squares are spread over: independent additions a vector
// register wide, which the compiler keeps in registers and vectorises
// without reassociating (it may not, without -ffast-math).
constexpr int64_t kPartialSums = 16;

// Rows per task: a Vim-Ti row is 192 floats, so one task holds ~48 KiB.
constexpr int64_t kRowsPerTask = 64;

void normalise_row(const float* x, const float* weight, float* out, int64_t width,
                   float eps) {
  float partial[kPartialSums] = {};
  int64_t i = 0;
  for (; i + kPartialSums <= width; i += kPartialSums)
    for (int64_t j = 0; j < kPartialSums; ++j) partial[j] += x[i + j] * x[i + j];
  for (; i < width; ++i) partial[i % kPartialSums] += x[i] * x[i];
  float sum = 0.f;
  for (int64_t j = 0; j < kPartialSums; ++j) sum += partial[j];
  const float rstd = 1.f / std::sqrt(sum / static_cast<float>(width) + eps);
  for (int64_t k = 0; k < width; ++k) out[k] = (x[k] * rstd) * weight[k];
}

}  // namespace

Tensor rms_norm_cpu(Tensor x, Tensor weight, double eps) {
  check_cpu(x, "rms_norm_cpu", "x");
  check_cpu(weight, "rms_norm_cpu", "weight");
  STD_TORCH_CHECK(x.scalar_type() == ScalarType::Float && weight.scalar_type() == ScalarType::Float,
                  "mmvim::rms_norm_cpu: x and weight must be float32 (mmvim.ops.rms_norm "
                  "computes other dtypes with torch's operators)");
  STD_TORCH_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(x.dim() - 1),
                  "mmvim::rms_norm_cpu: weight must be 1-D, as long as x's last dimension");
  x = torch::stable::contiguous(x);
  weight = torch::stable::contiguous(weight);
  Tensor out = torch::stable::empty_like(x);
  const int64_t width = weight.size(0);
  const int64_t rows = width == 0 ? 0 : x.numel() / width;
  const float* x_data = data_of<const float>(x);
  const float* weight_data = data_of<const float>(weight);
  float* out_data = data_of<float>(out);
  torch::stable::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row)
      normalise_row(x_data + row * width, weight_data, out_data + row * width, width,
                    static_cast<float>(eps));
  });
  return out;
}

}  // namespace mmvim
