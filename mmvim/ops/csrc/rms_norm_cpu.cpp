// mmvim's RMSNorm for CPUs: y = x * r * weight with r = rsqrt(mean(x^2) +
// eps) over the last dimension of a float32 tensor, and its backward.
//
// The forward reads each row twice (its sum of squares, then the products)
// and writes the output once. torch's formula makes a square, a mean, two
// products and their temporaries, five passes over a Vim-Ti block's
// (1025, 192) stream where this makes two: the block's norm took 265 us a
// call that way (one thread, Xeon), and its forward and backward 1.3 ms.
// The products round as the formula's do, x * r first, then * weight; only
// the sum of squares is added in another order.
//
// The backward recomputes r (one read of the row) rather than have the
// forward save it: grad_x = r (g w) - r^3 x <g w, x> / D, and grad_weight
// sums g x r over the rows, per block of rows first, then the blocks in
// order, so that it does not depend on the number of threads.
#include "cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mmvim {
namespace {

// Partial sums a row's products are spread over: independent additions a
// vector register wide, which the compiler keeps in registers and
// vectorises without reassociating (it may not, without -ffast-math).
constexpr int64_t kPartialSums = 16;

// Rows per task: a Vim-Ti row is 192 floats, so one task holds ~48 KiB.
constexpr int64_t kRowsPerTask = 64;

// sum_i a[i] * b[i] over `width` values, in kPartialSums partial sums.
float dot(const float* a, const float* b, int64_t width) {
  float partial[kPartialSums] = {};
  int64_t i = 0;
  for (; i + kPartialSums <= width; i += kPartialSums)
    for (int64_t j = 0; j < kPartialSums; ++j) partial[j] += a[i + j] * b[i + j];
  for (; i < width; ++i) partial[i % kPartialSums] += a[i] * b[i];
  float sum = 0.f;
  for (int64_t j = 0; j < kPartialSums; ++j) sum += partial[j];
  return sum;
}

float inverse_rms(const float* x, int64_t width, float eps) {
  return 1.f / std::sqrt(dot(x, x, width) / static_cast<float>(width) + eps);
}

struct Rows {
  Tensor x, weight;
  int64_t width, rows;
};

// x and weight checked and contiguous, and x's row count.
Rows prepare(const char* op, Tensor x, Tensor weight) {
  check_cpu(x, op, "x");
  check_cpu(weight, op, "weight");
  STD_TORCH_CHECK(x.scalar_type() == ScalarType::Float && weight.scalar_type() == ScalarType::Float,
                  "mmvim::", op,
                  ": x and weight must be float32 (mmvim.ops.rms_norm computes other dtypes "
                  "with torch's operators)");
  STD_TORCH_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(x.dim() - 1),
                  "mmvim::", op, ": weight must be 1-D, as long as x's last dimension");
  const int64_t width = weight.size(0);
  return {torch::stable::contiguous(x), torch::stable::contiguous(weight), width,
          width == 0 ? 0 : x.numel() / width};
}

}  // namespace

Tensor rms_norm_cpu(Tensor x, Tensor weight, double eps) {
  const Rows in = prepare("rms_norm_cpu", x, weight);
  Tensor out = torch::stable::empty_like(in.x);
  const float* x_data = data_of<const float>(in.x);
  const float* w = data_of<const float>(in.weight);
  float* out_data = data_of<float>(out);
  const int64_t width = in.width;
  torch::stable::parallel_for(0, in.rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* xr = x_data + row * width;
      float* yr = out_data + row * width;
      const float r = inverse_rms(xr, width, static_cast<float>(eps));
      for (int64_t k = 0; k < width; ++k) yr[k] = (xr[k] * r) * w[k];
    }
  });
  return out;
}

std::tuple<Tensor, Tensor> rms_norm_cpu_backward(Tensor x, Tensor weight, double eps,
                                                 Tensor grad_out) {
  const Rows in = prepare("rms_norm_cpu_backward", x, weight);
  bool same_shape = grad_out.dim() == x.dim();
  for (int64_t d = 0; same_shape && d < x.dim(); ++d) same_shape = grad_out.size(d) == x.size(d);
  STD_TORCH_CHECK(same_shape, "mmvim::rms_norm_cpu_backward: grad_out must have x's shape");
  grad_out = contiguous_as(grad_out, ScalarType::Float);
  Tensor grad_x = torch::stable::empty_like(in.x);
  Tensor grad_weight = torch::stable::empty_like(in.weight);
  const int64_t width = in.width, blocks = (in.rows + kRowsPerTask - 1) / kRowsPerTask;
  const float* x_data = data_of<const float>(in.x);
  const float* w = data_of<const float>(in.weight);
  const float* g_data = data_of<const float>(grad_out);
  float* gx_data = data_of<float>(grad_x);
  std::vector<float> block_sums(blocks * width, 0.f);  // each block's sum of g x r
  torch::stable::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> gw(width);
    for (int64_t block = begin; block < end; ++block) {
      float* sums = block_sums.data() + block * width;
      const int64_t last = std::min(in.rows, (block + 1) * kRowsPerTask);
      for (int64_t row = block * kRowsPerTask; row < last; ++row) {
        const float* xr = x_data + row * width;
        const float* gr = g_data + row * width;
        float* gxr = gx_data + row * width;
        const float r = inverse_rms(xr, width, static_cast<float>(eps));
        for (int64_t k = 0; k < width; ++k) {
          gw[k] = gr[k] * w[k];
          sums[k] += gr[k] * (xr[k] * r);
        }
        const float scale = r * r * r * dot(gw.data(), xr, width) / static_cast<float>(width);
        for (int64_t k = 0; k < width; ++k) gxr[k] = r * gw[k] - scale * xr[k];
      }
    }
  });
  float* gw_out = data_of<float>(grad_weight);
  for (int64_t k = 0; k < width; ++k) gw_out[k] = 0.f;
  for (int64_t block = 0; block < blocks; ++block)
    for (int64_t k = 0; k < width; ++k) gw_out[k] += block_sums[block * width + k];
  return {grad_x, grad_weight};
}

}  // namespace mmvim
