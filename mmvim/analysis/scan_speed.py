"""The selective scan alone: state updates per second of each ops backend on
a Vim layer's shapes, beside what this machine can do at all (a large sgemm's
FLOP rate and a large copy's bandwidth), measured in the same process."""
from typing import Dict, List

import torch
import torch.nn.functional as F

from mmvim import ops
from mmvim.analysis.timing import median_seconds
from mmvim.ops.library import full_delta

# A Vim layer: both directions' 2 x d_inner channels in one call, d_state 16.
VIM_TINY_CHANNELS = 2 * 384
D_STATE = 16
DT_RANK = 12  # ceil(192 / 16)


def machine_limits(repeats: int = 5) -> Dict[str, float]:
    """sgemm GFLOP/s (2 n^3 per n x n product) and copy GB/s (read + write)."""
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    gemm = median_seconds(lambda: torch.mm(a, b), repeats)
    big = torch.empty(64 * 2**20 // 4)
    out = torch.empty_like(big)
    copy = median_seconds(lambda: out.copy_(big), repeats)
    return dict(sgemm_gflops=2 * n**3 / gemm / 1e9,
                copy_gbps=2 * big.numel() * 4 / copy / 1e9)


def scan_inputs(length: int, batch: int = 1, channels: int = VIM_TINY_CHANNELS,
                dtype=torch.float32) -> Dict[str, torch.Tensor]:
    """Random inputs of one fused two-direction Vim scan call, as the mixer
    passes them: u and z channel-last (views of (b, l, d) projections);
    delta as its low-rank factor (b, 2, dt_rank, l) with ``delta_weight``
    (d, dt_rank), the factor, B and C views of token-major (b, 2, l, k)
    stacks. ``dtype`` for the activations; the SSM parameters stay float32,
    as the mixer makes them."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    def channel_last(batch_, channels_, length_):
        return randn(batch_, length_, channels_).transpose(1, 2)

    def token_major(width):
        return randn(batch, 2, length, width).transpose(-1, -2)

    return dict(u=channel_last(batch, channels, length),
                delta=token_major(DT_RANK) * 0.5,
                A=-torch.rand(channels, D_STATE, generator=gen) * 8,
                B=token_major(D_STATE),
                C=token_major(D_STATE),
                D=torch.randn(channels, generator=gen),
                z=channel_last(batch, channels // 2, length),
                delta_bias=torch.randn(channels, generator=gen) * 0.1 - 2,
                delta_weight=torch.randn(channels, DT_RANK, generator=gen) *
                DT_RANK**-0.5)


# The mixer's call, then the same call with a part of its per-token work
# taken out of the kernel, one part more each: the differences between their
# times are what those parts cost, and what is left bounds the recurrence
# with its loads and stores (a profile without a scratch build of the kernel).
SCAN_CALLS = ('mixer call', 'delta given whole', 'delta whole, no gate')


def whole_delta(inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The dt that the mixer's call makes inside, softplus(delta_weight @
    factor + delta_bias) for every channel, (b, d, l) channel-last as u, in
    the activations' dtype."""
    pre = full_delta(inputs['delta'].float(), inputs['delta_weight'],
                     inputs['u'].shape[1])  # (b, d, l)
    dt = F.softplus(pre + inputs['delta_bias'][:, None]).transpose(1, 2)
    return dt.to(inputs['u'].dtype).contiguous().transpose(1, 2)


def scan_call(inputs: Dict[str, torch.Tensor], call: str) -> Dict:
    """The arguments of one of SCAN_CALLS (the directions averaged)."""
    if call not in SCAN_CALLS:
        raise ValueError(f'{call!r}: the calls are {SCAN_CALLS}.')
    if call == 'mixer call':
        return dict(inputs, delta_softplus=True, average_directions=True)
    arguments = {k: v for k, v in inputs.items()
                 if k not in ('delta_weight', 'delta_bias')}
    arguments.update(delta=whole_delta(inputs), average_directions=True)
    if call == 'delta whole, no gate':
        arguments['z'] = None
    return arguments


def output_gradient(inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
    """A gradient for the call's averaged output (b, d/2, l) as the mixer's
    scan receives it: channel-last, a transposed view of what out_proj's
    backward returns. (``out.sum().backward()`` would hand the kernel a
    broadcast one, read value by value: another path than the mixer's.)"""
    batch, channels, length = inputs['u'].shape
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, length, channels // 2,
                       generator=gen).to(inputs['u'].dtype).transpose(1, 2)


def scan_speed(backends: List[str], lengths: List[int], repeats: int = 5,
               train: bool = False, dtype=torch.float32,
               calls=SCAN_CALLS[:1]) -> List[Dict]:
    """One row per (length, backend, call of SCAN_CALLS): seconds per call
    and state updates per second (b * d * l * n per direction-channel;
    forward + backward when ``train``, counting the forward's updates
    only)."""
    rows = []
    for length in lengths:
        inputs = scan_inputs(length, dtype=dtype)
        updates = inputs['u'].numel() * D_STATE
        gradient = output_gradient(inputs) if train else None
        for backend in backends:
            for call in calls:
                arguments = {
                    k: v.detach().clone().requires_grad_(train)
                    if isinstance(v, torch.Tensor) else v
                    for k, v in scan_call(inputs, call).items()
                }

                def step():
                    with ops.use_backend(backend):
                        out = ops.bidirectional_selective_scan(**arguments)
                        if train:
                            out.backward(gradient)

                seconds = median_seconds(step, repeats)
                rows.append(dict(backend=backend, length=length, call=call,
                                 mode='train' if train else 'inference',
                                 seconds=seconds,
                                 gupdates_per_s=updates / seconds / 1e9))
    return rows
