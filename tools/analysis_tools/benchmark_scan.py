#!/usr/bin/env python
"""State updates per second of the selective scan alone, per ops backend, on
Vim-Ti's fused two-direction layer call as the mixer makes it (768 channels,
d_state 16, batch 1, a low-rank delta, the directions averaged), beside this
machine's sgemm rate and copy bandwidth measured in the same run.

    python tools/analysis_tools/benchmark_scan.py --backends cpu torch \\
        --lengths 197 1025 4097 --threads 1 [--dtype bf16] [--parts]

--parts times the same call with parts of its per-token work taken out of the
kernel, one more each row (the delta given whole: no low-rank product and no
softplus in the call; then no gate either): the differences are what those
parts cost.
"""
import argparse

import torch

from mmvim.analysis.scan_speed import SCAN_CALLS, machine_limits, scan_speed
from mmvim.analysis.workloads import DTYPES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.
                                     RawDescriptionHelpFormatter)
    parser.add_argument('--backends', nargs='+', default=['cpu', 'torch'])
    parser.add_argument('--lengths', nargs='+', type=int,
                        default=[197, 1025, 4097])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--train', action='store_true',
                        help='time forward + backward')
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='fp32',
                        help='of the activations (u, z, delta, B, C); the '
                        'state is float32 either way')
    parser.add_argument('--parts', action='store_true',
                        help='also time the call without parts of its '
                        'per-token work (see above)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    limits = machine_limits(args.repeats)
    print(f'threads {args.threads}: sgemm {limits["sgemm_gflops"]:.1f} '
          f'GFLOP/s, copy {limits["copy_gbps"]:.1f} GB/s')
    calls = SCAN_CALLS if args.parts else SCAN_CALLS[:1]
    rows = scan_speed(args.backends, args.lengths, args.repeats, args.train,
                      DTYPES[args.dtype], calls)
    width = max(map(len, calls))
    for row in rows:
        print(f'{row["mode"]:<9} {args.dtype} L={row["length"]:<5} '
              f'{row["backend"]:<10} {row["call"]:<{width}} '
              f'{row["seconds"] * 1e3:9.2f} ms  '
              f'{row["gupdates_per_s"]:7.3f} G state updates/s')
    return limits, rows


if __name__ == '__main__':
    main()
