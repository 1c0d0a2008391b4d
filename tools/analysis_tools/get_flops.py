#!/usr/bin/env python
"""Parameters and FLOPs of an mmvim config or a bare Vim backbone, with the
selective scan counted by formula (the convention and the formula:
mmvim.analysis.complexity).
"""
import argparse
import functools
from typing import Dict, Tuple

import torch

from mmvim.analysis.complexity import count_complexity
from mmvim.analysis.config_models import (
    build_config_model,
    synthetic_data_samples,
)


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
