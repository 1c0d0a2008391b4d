#!/usr/bin/env python
"""Peak GPU memory of one training step (or inference, --mode test) of a
config's model on one GPU of a data-parallel run, computed under fake
tensors: no GPU and no data needed. What is counted and what is not:
docs/memory.md (mmvim.analysis.memory_estimate)."""
import json
import sys
from pathlib import Path

from mmvim.analysis.memory_estimate import (DEVICES, MODES, EstimateSettings,
                                            UntraceableModelError,
                                            estimate_memory, measure_memory)
from mmvim.analysis.memory_report import format_estimate
from mmvim.runtime.command_line import add_cfg_options, tool_parser


def parse_args(argv=None):
    parser = tool_parser(__doc__.split('\n\n')[0])
    parser.add_argument(
        '--batch-per-gpu', type=int,
        help="images per GPU (default: the config's train / test "
        'dataloader batch size)')
    parser.add_argument('--mode', choices=MODES, default='train',
                        help='train: forward, backward and optimizer step; '
                        "test: the config's inference (slide or whole)")
    parser.add_argument('--device', choices=DEVICES, default='cuda',
                        help='the device modelled (default: cuda)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision as tools/train.py --amp '
                        '(bfloat16 autocast)')
    parser.add_argument(
        '--ops-backend',
        help='the mmvim ops backend assumed (default: triton for cuda, '
        "what auto picks here for cpu); its saved tensors differ")
    parser.add_argument('--shape', type=int, nargs='+', metavar='H [W]',
                        help='input size (default: the training crop / '
                        'pad size, or the largest test resize)')
    parser.add_argument('--single-gpu', action='store_true',
                        help='no DistributedDataParallel (no gradient '
                        'buckets)')
    parser.add_argument('--out', help='also write the estimate as JSON here')
    parser.add_argument(
        '--check', action='store_true',
        help='--device cpu only: also run the step for real on this CPU '
        'and compare')
    add_cfg_options(parser, 'model.backbone.with_cp=True')
    args = parser.parse_args(argv)
    if args.shape and len(args.shape) > 2:
        parser.error('--shape takes a height and an optional width')
    if args.check and args.device != 'cpu':
        parser.error('--check runs the step on this CPU: use --device cpu')
    if args.batch_per_gpu is not None and args.batch_per_gpu < 1:
        parser.error('--batch-per-gpu must be at least 1')
    if args.out and Path(args.out).exists():
        parser.error(f'{args.out} exists: give a new file for --out')
    return args


def main(argv=None):
    args = parse_args(argv)
    settings = EstimateSettings(
        config=args.config, batch_per_gpu=args.batch_per_gpu,
        mode=args.mode, device=args.device, amp=args.amp,
        ops_backend=args.ops_backend, cfg_options=args.cfg_options,
        input_shape=(args.shape[0], args.shape[-1]) if args.shape else None,
        data_parallel=not args.single_gpu)
    try:
        estimate = estimate_memory(settings)
    except UntraceableModelError as error:
        sys.exit(f'error: {error}')
    measured = measure_memory(settings) if args.check else None
    print(format_estimate(estimate, measured))
    if args.out:
        result = estimate.to_json()
        if measured is not None:
            result['measured'] = dict(
                counted_peak_bytes=measured.peak_bytes,
                allocator_peak_bytes=measured.allocator['peak'])
        Path(args.out).write_text(json.dumps(result, indent=2) + '\n')
    return estimate


if __name__ == '__main__':
    main()
