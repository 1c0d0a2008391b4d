"""Load mmvim's compiled CPU operator library into the running torch and check
its scan and conv against plain-PyTorch references: what a torch upgrade
(or another torch installation) needs to keep the ``cpu`` backend. The
library is built against the LibTorch stable ABI, so one build serves every
torch from its target version (2.10) on:

    python tools/analysis_tools/check_operator_library.py [LIBRARY]

LIBRARY defaults to the installed mmvim/ops/_cpu_ops*.so. Needs only torch:
it does not import mmvim, so it runs in any environment that has torch.
Exits 1 when an output differs from the reference by more than 1e-4.
"""
import argparse
import sys
from pathlib import Path

import torch

TOLERANCE = 1e-4


def scan_reference(u, delta, A, B, C, D, z, bias, reverse_from):
    """The two-direction selective scan, token by token, in float64."""
    batch, channels, length = u.shape
    group_width = channels // B.shape[1]
    dt = torch.nn.functional.softplus(delta + bias[:, None]).double()
    out = torch.empty(batch, channels, length, dtype=torch.float64)
    for c in range(channels):
        g = c // group_width
        h = torch.zeros(batch, A.shape[1], dtype=torch.float64)
        steps = range(length - 1, -1, -1) if c >= reverse_from else range(
            length)
        for t in steps:
            h = torch.exp(dt[:, c, t, None] * A[c].double()) * h + (
                dt[:, c, t] * u[:, c, t].double())[:, None] * B[:, g, :,
                                                                 t].double()
            out[:, c, t] = (h * C[:, g, :, t].double()).sum(-1) + D[c] * u[
                :, c, t]
    gate = torch.cat([z, z], 1).double()
    return out * gate * torch.sigmoid(gate)


def check(library: Path) -> float:
    """The largest error of the library's scan and conv against the
    references; prints each."""
    torch.ops.load_library(str(library))
    mmvim = torch.ops.mmvim
    generator = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.):
        return torch.randn(*shape, generator=generator) * scale

    batch, channels, length, d_state = 2, 16, 70, 16
    u, delta = randn(batch, channels, length), randn(batch, channels, length,
                                                     scale=0.5)
    z = randn(batch, channels // 2, length)
    A = -torch.rand(channels, d_state, generator=generator)
    B, C = randn(batch, 2, d_state, length), randn(batch, 2, d_state, length)
    D, bias = randn(channels), randn(channels, scale=0.3)
    half = channels // 2
    y, states = mmvim.selective_scan_cpu(u, delta, A, B, C, D, z, bias, True,
                                         half, None, False, True)
    reference = scan_reference(u, delta, A, B, C, D, z, bias, half)
    # delta as a rank-4 factor per direction and a weight, the directions
    # averaged: the mixer's call.
    factor = randn(batch, 2, 4, length, scale=0.5)
    weight = randn(channels, 4, scale=0.5)
    low_rank = torch.cat([weight[:half] @ factor[:, 0],
                          weight[half:] @ factor[:, 1]], dim=1)
    low_rank_reference = scan_reference(u, low_rank, A, B, C, D, z, bias,
                                        half)
    averaged = mmvim.selective_scan_cpu(u, factor, A, B, C, D, z, bias, True,
                                        half, weight, True, False)[0]
    scan_error = max(
        (y.double() - reference).abs().max().item(),
        (averaged.double() - (low_rank_reference[:, :half] +
                              low_rank_reference[:, half:]) /
         2).abs().max().item())
    grads = mmvim.selective_scan_cpu_backward(u, delta, A, B, C, D, z, bias,
                                              True, channels // 2, states,
                                              torch.ones_like(y))
    shapes_fit = [tuple(g.shape) for g in grads] == [
        tuple(t.shape) for t in (u, delta, A, B, C, D, z, bias)
    ]
    x, weight, conv_bias = randn(batch, channels, length), randn(
        channels, 4), randn(channels)
    out = mmvim.causal_conv1d_silu_cpu(x, weight, conv_bias, channels)
    reference = torch.nn.functional.silu(
        torch.nn.functional.conv1d(torch.nn.functional.pad(x, (3, 0)),
                                   weight[:, None], conv_bias,
                                   groups=channels))
    conv_error = (out - reference).abs().max().item()
    shapes = 'shaped as their inputs' if shapes_fit else 'MISSHAPEN'
    print(f'torch {torch.__version__}, {library.name}: scan max error '
          f'{scan_error:.2e}, conv max error {conv_error:.2e}, backward '
          f'gradients {shapes}')
    return max(scan_error, conv_error) if shapes_fit else float('inf')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('library', nargs='?', type=Path,
                        help='the .so (default: the installed one)')
    args = parser.parse_args(argv)
    library = args.library
    if library is None:
        found = sorted((Path(__file__).resolve().parents[2] / 'mmvim' /
                        'ops').glob('_cpu_ops*.so'))
        if not found:
            sys.exit('error: no mmvim/ops/_cpu_ops*.so: build it with '
                     '`pip install --no-build-isolation -e .`')
        library = found[0]
    if not library.is_file():
        sys.exit(f'error: no such library: {library}')
    try:
        error = check(library)
    except OSError as failure:
        sys.exit(f'error: {library} does not load into torch '
                 f'{torch.__version__}: {failure}')
    if error > TOLERANCE:
        sys.exit(f'error: the library differs from the reference by '
                 f'{error:.2e} > {TOLERANCE:g}')
    return error


if __name__ == '__main__':
    main()
