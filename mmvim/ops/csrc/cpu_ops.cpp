// Registers the `cpu` backend's operators with the PyTorch dispatcher: the
// schemas (the same as every other backend's, stated in
// mmvim/ops/library.py; a test compares them) and their CPU kernels, and the
// RMSNorm pair only this backend has. The fake implementations and the
// autograd formulas are registered from Python (mmvim/ops/backends/cpu.py)
// when the library is loaded.
#include "cpu_ops.h"

#include <torch/csrc/stable/library.h>

#define MMVIM_SCAN_ARGUMENTS                                                            \
  "Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? " \
  "delta_bias, bool delta_softplus, SymInt reverse_from"
#define MMVIM_CONV_ARGUMENTS "Tensor x, Tensor weight, Tensor? bias, SymInt reverse_from"
#define MMVIM_RMS_NORM_ARGUMENTS "Tensor x, Tensor weight, float eps"

STABLE_TORCH_LIBRARY(mmvim, m) {
  m.def("selective_scan_cpu(" MMVIM_SCAN_ARGUMENTS
        ", Tensor? delta_weight, bool average_directions, bool save_states) -> (Tensor, "
        "Tensor)");
  m.def("selective_scan_cpu_backward(" MMVIM_SCAN_ARGUMENTS
        ", Tensor states, Tensor grad_y) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, "
        "Tensor, Tensor)");
  m.def("causal_conv1d_silu_cpu(" MMVIM_CONV_ARGUMENTS ") -> Tensor");
  m.def("causal_conv1d_silu_cpu_backward(" MMVIM_CONV_ARGUMENTS
        ", Tensor grad_out) -> (Tensor, Tensor, Tensor)");
  m.def("rms_norm_cpu(" MMVIM_RMS_NORM_ARGUMENTS ") -> Tensor");
  m.def("rms_norm_cpu_backward(" MMVIM_RMS_NORM_ARGUMENTS ", Tensor grad_out) -> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(mmvim, CPU, m) {
  m.impl("selective_scan_cpu", TORCH_BOX(&mmvim::selective_scan_cpu));
  m.impl("selective_scan_cpu_backward", TORCH_BOX(&mmvim::selective_scan_cpu_backward));
  m.impl("causal_conv1d_silu_cpu", TORCH_BOX(&mmvim::causal_conv1d_silu_cpu));
  m.impl("causal_conv1d_silu_cpu_backward", TORCH_BOX(&mmvim::causal_conv1d_silu_cpu_backward));
  m.impl("rms_norm_cpu", TORCH_BOX(&mmvim::rms_norm_cpu));
  m.impl("rms_norm_cpu_backward", TORCH_BOX(&mmvim::rms_norm_cpu_backward));
}
