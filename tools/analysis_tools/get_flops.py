#!/usr/bin/env python
"""Parameters and FLOPs of an mmvim config or a bare Vim backbone, with the
selective scan counted.

mmengine's FlopAnalyzer (fvcore's counter over a jit trace) sees the scan as
an op it has no formula for and counts it as zero. Here every call of the
mixer's scan is traced as one opaque op (whichever implementation runs) and
counted analytically.

Convention, that of fvcore / mmengine: one multiply-add = 1 FLOP for
matmuls and convolutions (their handles also give norm layers and
interpolation a per-element cost); additions and element-wise activations
are not counted. The selective scan costs
  per token, channel and state: 4 = the decay exp(dt * A) (1), the recurrence
      h = decay * h + (dt * u) * B (2 multiply-adds), the readout C . h (1);
  per token and channel: 3 = dt * u, the skip D * u and the gate y * silu(z),
i.e. b * d * l * (4 N + 3) for a call on (b, d, l) inputs with state size N
(d counts both directions' channels when they share one call).

Counting is done on the CPU with the portable ops; FLOPs do not depend on the
backend.
"""
import argparse
import functools
import os
from typing import Dict, Tuple
from unittest import mock

import torch

from benchmark import build_config_model, synthetic_data_samples

SCAN_ATTRIBUTE = 'mmvim.models.layers.bimamba.selective_scan'
SCAN_OP = 'prim::PythonOp.OpaqueSelectiveScan'


class OpaqueSelectiveScan(torch.autograd.Function):
    """The mixer's scan as a single traced node (the tracer does not look
    inside an autograd Function), so its cost is counted once, by formula."""

    @staticmethod
    def forward(ctx, scan, u, delta, A, B, C, D, z, delta_bias,
                delta_softplus):
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _opaque(scan):

    def opaque_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                    delta_softplus=False):
        return OpaqueSelectiveScan.apply(scan, u, delta, A, B, C, D, z,
                                         delta_bias, delta_softplus)

    return opaque_scan


def selective_scan_flops(inputs, outputs) -> Dict[str, int]:
    """FlopAnalyzer handle: b * d * l * (4 N + 3).

    The traced node's inputs are its tensors in call order, so u (b, d, l)
    comes first and A (d, N) third.
    """
    from mmengine.analysis.jit_handles import get_shape
    batch, channels, length = get_shape(inputs[0])
    d_state = get_shape(inputs[2])[-1]
    return {'selective_scan': batch * channels * length * (4 * d_state + 3)}


def count_complexity(model: torch.nn.Module, inputs: Tuple,
                     table_depth: int = 0) -> Dict:
    """Parameters, FLOPs (total, scan, per operator) of ``model(*inputs)``;
    with ``table_depth`` > 0 also mmengine's per-module table."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.analysis.print_helper import complexity_stats_table
    from mmvim.models.layers import bimamba
    from mmvim.ops import BACKEND_ENV
    with mock.patch.dict(os.environ, {BACKEND_ENV: 'torch'}), \
            mock.patch(SCAN_ATTRIBUTE, _opaque(bimamba.selective_scan)), \
            torch.no_grad():
        analyzer = FlopAnalyzer(model.eval(), inputs)
        analyzer.set_op_handle(SCAN_OP, selective_scan_flops)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_operator = dict(analyzer.by_operator())
        table = complexity_stats_table(
            analyzer, max_depth=table_depth) if table_depth else ''
    has_mixer = any(
        isinstance(m, bimamba.BiMambaMixer) for m in model.modules())
    if has_mixer and not by_operator.get('selective_scan'):
        raise RuntimeError('The model has Mamba mixers but no scan was '
                           'traced: does the mixer still call '
                           f'{SCAN_ATTRIBUTE}?')
    return dict(params=parameter_count(model)[''],
                flops=sum(by_operator.values()),
                scan_flops=by_operator.get('selective_scan', 0),
                by_operator=by_operator, table=table)


def build_target(args) -> Tuple[torch.nn.Module, Tuple, str]:
    """(model, inputs, description) for the command line's choice."""
    shape = (args.shape[0], args.shape[-1])
    inputs = torch.randn(args.batch, 3, *shape)
    if args.backbone:
        import mmvim  # noqa: F401
        from mmvim.models.backbones.vision_mamba import VisionMamba
        model = VisionMamba(arch=args.backbone, img_size=shape)
        return model, (inputs, ), f'VisionMamba {args.backbone} backbone'
    model, scope = build_config_model(args.config)
    samples = synthetic_data_samples(scope, args.batch, shape, 'cpu',
                                     with_targets=False)
    model.forward = functools.partial(model.forward, data_samples=samples,
                                      mode='tensor')
    return model, (inputs, ), f'{args.config} ({type(model).__name__})'


def _giga(value: float) -> str:
    return f'{value / 1e9:.3f} G'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('config', nargs='?', help='mmseg / mmdet config')
    target.add_argument('--backbone', choices=('tiny', 'small', 'base'),
                        help='a bare VisionMamba backbone instead')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 512],
                        help='input height [width]')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--table-depth', type=int, default=0,
                        help='also print the per-module table to this depth')
    args = parser.parse_args(argv)
    if len(args.shape) > 2:
        parser.error('--shape takes a height and an optional width')
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    model, inputs, description = build_target(args)
    stats = count_complexity(model, inputs, args.table_depth)
    operators = ', '.join(
        f'{name} {_giga(value)}' for name, value in sorted(
            stats['by_operator'].items(), key=lambda item: -item[1]))
    print(f'model: {description}')
    print(f'input: {tuple(inputs[0].shape)}')
    print(f'parameters: {stats["params"] / 1e6:.3f} M '
          f'({stats["params"]:,})')
    print(f'FLOPs: {_giga(stats["flops"])} (one multiply-add = 1 FLOP), '
          f'of which selective scan {_giga(stats["scan_flops"])}')
    print(f'by operator: {operators}')
    if stats['table']:
        print(stats['table'])
    return stats


if __name__ == '__main__':
    main()
