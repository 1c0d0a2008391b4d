"""CUDA's autocast, run on CPU tensors: what ``--amp`` does on a GPU, for an
estimate traced on the CPU.

CUDA and the CPU autocast different operators: on a GPU ``layer_norm``,
``softmax``, the losses and the upsampling run in float32 (so their outputs
take 4 bytes an element), ``cat`` and ``stack`` are left alone; on a CPU the
lists differ. Fake CUDA tensors cannot run a backward pass with the CPU-only
torch wheel, so :func:`cuda_autocast` puts CUDA's policy on the CPU's
autocast dispatch key for as long as it is active: each operator that CUDA
autocasts gets a kernel casting its arguments as CUDA's does (with the same
cache of weight casts), every other operator the CPU autocasts is let
through unchanged.

The lists are those of the torch this was written against (2.13:
ATen/autocast_mode.h and the CUDA registrations in autocast_mode.cpp).
"""
import contextlib
import warnings
from typing import Dict, Iterator, Tuple

import torch
from torch.utils._pytree import tree_map

# Operators CUDA runs in the lower precision (float16 / bfloat16).
LOWER_PRECISION = (
    '_convolution.deprecated', '_convolution', 'conv1d', 'conv2d', 'conv3d',
    'conv_tbc', 'conv_transpose1d', 'conv_transpose2d.input',
    'conv_transpose3d.input', 'convolution', 'prelu', 'addmm', 'addmv',
    'addr', 'matmul', 'einsum', 'mm', 'mv', 'linalg_vecdot', 'linear',
    'addbmm', 'baddbmm', 'bmm', 'chain_matmul', 'linalg_multi_dot',
    '_thnn_fused_lstm_cell', '_thnn_fused_gru_cell', 'lstm_cell', 'gru_cell',
    'rnn_tanh_cell', 'rnn_relu_cell', '_scaled_dot_product_flash_attention',
    'scaled_dot_product_attention', 'cudnn_convolution',
    'cudnn_convolution_transpose')
# Operators CUDA runs in float32 (inputs cast up). CUDA's norm.Scalar and
# norm.ScalarOpt_dim append dtype=float32 instead: the same output.
FLOAT32 = (
    'acos', 'asin', 'cosh', 'erfinv', 'exp', 'expm1', 'log', 'log10', 'log2',
    'log1p', 'reciprocal', 'rsqrt', 'sinh', 'tan', 'pow.Tensor_Scalar',
    'pow.Tensor_Tensor', 'pow.Scalar', 'softplus', 'layer_norm',
    'native_layer_norm', 'rms_norm', 'group_norm', 'frobenius_norm.dim',
    'nuclear_norm', 'nuclear_norm.dim', 'cosine_similarity',
    'poisson_nll_loss', 'cosine_embedding_loss', 'nll_loss', 'nll_loss2d',
    'hinge_embedding_loss', 'kl_div', 'l1_loss', 'smooth_l1_loss',
    'huber_loss', 'mse_loss', 'margin_ranking_loss', 'multilabel_margin_loss',
    'soft_margin_loss', 'triplet_margin_loss', 'multi_margin_loss',
    'binary_cross_entropy_with_logits', 'dist', 'pdist', 'cdist', 'renorm',
    'logsumexp', 'upsample_nearest1d', '_upsample_nearest_exact1d',
    'upsample_nearest2d', '_upsample_nearest_exact2d', 'upsample_nearest3d',
    '_upsample_nearest_exact3d', 'upsample_linear1d', 'upsample_bilinear2d',
    '_upsample_bilinear2d_aa', 'upsample_trilinear3d', 'upsample_bicubic2d',
    '_upsample_bicubic2d_aa', 'norm.Scalar', 'norm.ScalarOpt_dim')
# Operators CUDA gives dtype=float32 when their first input is a floating
# tensor and no dtype was asked for.
FLOAT32_OUTPUT = ('prod', 'prod.dim_int', 'softmax.int', 'log_softmax.int',
                  'cumprod', 'cumsum', 'linalg_vector_norm',
                  'linalg_matrix_norm', 'linalg_matrix_norm.str_ord', 'sum',
                  'sum.dim_IntList')
# Operators CUDA runs in the widest floating type of their inputs.
PROMOTE = ('addcdiv', 'addcmul', 'atan2', 'bilinear', 'cross', 'dot', 'vdot',
           'grid_sampler', 'index_put', 'tensordot', 'scatter_add')

_KEY = 'AutocastCPU'
_EXCLUDE = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)


def _overload(name: str):
    op_name, _, overload = name.partition('.')
    return getattr(getattr(torch.ops.aten, op_name), overload or 'default')


def _eligible(value) -> bool:
    """What autocast casts: floating tensors other than float64."""
    return (isinstance(value, torch.Tensor) and value.is_floating_point()
            and value.dtype != torch.float64)


class _Casts:
    """Casts as CUDA's autocast makes them, with its cache: a float32 leaf
    that requires grad (a weight) is cast to the lower precision once per
    autocast region and the copy kept until the region ends."""

    def __init__(self, lower: torch.dtype):
        self.lower = lower
        self.cache: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def cast(self, value, dtype: torch.dtype):
        if not _eligible(value) or value.dtype == dtype:
            return value
        cacheable = (dtype == self.lower and value.dtype == torch.float32
                     and value.requires_grad and value.is_leaf
                     and not value._is_view())
        if not cacheable:
            return value.to(dtype)
        cached = self.cache.get(id(value))
        if cached is None or cached[0] is not value:
            cached = self.cache[id(value)] = (value, value.to(dtype))
        return cached[1]

    def kernel(self, name: str, policy: str):
        op = _overload(name)

        def run(*args, **kwargs):
            with torch._C._ExcludeDispatchKeyGuard(_EXCLUDE):
                if policy == 'float32_output':
                    return op(*args, **self._float32_output(op, args, kwargs))
                dtype = (self.lower if policy == 'lower' else torch.float32
                         if policy == 'float32' else self._widest(args,
                                                                  kwargs))
                args, kwargs = tree_map(lambda v: self.cast(v, dtype),
                                        (args, kwargs))
                return op(*args, **kwargs)

        return run

    def _widest(self, args, kwargs) -> torch.dtype:
        tensors = [v for v in torch.utils._pytree.tree_leaves((args, kwargs))
                   if _eligible(v)]
        if any(t.dtype == torch.float32 for t in tensors):
            return torch.float32
        return self.lower

    @staticmethod
    def _float32_output(op, args, kwargs) -> dict:
        if not (args and _eligible(args[0])):
            return kwargs
        names = [a.name for a in op._schema.arguments]
        position = names.index('dtype')
        if position < len(args):
            if args[position] is None:
                raise NotImplementedError(
                    f'{op}: dtype=None given by position')
            return kwargs
        if kwargs.get('dtype') is None:
            kwargs = dict(kwargs, dtype=torch.float32)
        return kwargs


def _cpu_autocast_operators() -> Tuple[str, ...]:
    """The operators the CPU's autocast has kernels for."""
    return tuple(
        name[len('aten::'):]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith('aten::')
        and torch._C._dispatch_has_kernel_for_dispatch_key(name, _KEY))


@contextlib.contextmanager
def cuda_autocast(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """Inside the block, CPU tensors are autocast to ``dtype`` as CUDA
    tensors would be under ``torch.autocast('cuda', dtype)``."""
    casts = _Casts(dtype)
    library = torch.library.Library('aten', 'IMPL')
    policies = {}
    for policy, names in (('lower', LOWER_PRECISION), ('float32', FLOAT32),
                          ('float32_output', FLOAT32_OUTPUT),
                          ('promote', PROMOTE)):
        policies.update(dict.fromkeys(names, policy))
    try:
        with warnings.catch_warnings():
            # torch warns that each kernel overrides the CPU's.
            warnings.simplefilter('ignore', UserWarning)
            for name in _cpu_autocast_operators():
                if name not in policies:
                    library.impl(name, torch.library.fallthrough_kernel,
                                 _KEY)
            for name, policy in policies.items():
                library.impl(name, casts.kernel(name, policy), _KEY)
        with torch.autocast('cpu', dtype=dtype):
            yield
    finally:
        library._destroy()
        casts.cache.clear()
