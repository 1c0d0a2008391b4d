"""Package a Vim segmentor (or any config's Vim backbone alone) with
AOTInductor: PyTorch's own deployment path, at kernel speed.

``torch.export`` traces the network with mmvim's compiled CPU operators (the
portable ones where they are not built), each scan and conv one node, and
``torch._inductor.aoti_compile_and_package`` compiles the rest into a ``.pt2``
package whose extern kernels are those operators. The network is the one the
ONNX export writes (pictures RGB 0..255 in, normalised inside; logits, or the
backbone's features, out; fixed shape). The package is then loaded, run on
the same random pictures and compared with PyTorch:

    python tools/deployment/pytorch2aoti.py CONFIG CHECKPOINT \\
        --shape 512 512 --out upernet_vim_tiny_512.pt2 [--backbone-only]

Running it needs torch and mmvim's operators: from Python,
``mmvim.runtime.deployment.load_aoti_package(path)``; from C++, load mmvim's
operator library (mmvim/ops/_cpu_ops*.so) before torch's
``AOTIModelPackageLoader`` (docs/deployment.md).
"""
import time
from pathlib import Path

import torch

import mmvim  # noqa: F401  registers the Vim backbone and neck
from mmvim.analysis.timing import median_seconds
from mmvim.ops import use_backend
from mmvim.runtime.command_line import user_errors
from mmvim.runtime.deployment import (aoti_package, as_list,
                                      check_against_pytorch,
                                      deployment_backend, deployment_parser,
                                      describe_outputs, export_program,
                                      load_aoti_package, output_names,
                                      prepare_request, print_medians,
                                      run_network, write_new_file)


def parse_args(argv=None):
    return deployment_parser(__doc__.split('\n')[0], 'package',
                             'the package').parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(FileNotFoundError, ValueError):
        return package_and_check(args)


def package_and_check(args):
    """Checks the arguments, exports and compiles the package, and checks it
    against PyTorch; returns the relative errors (None with --skip-check)."""
    out = Path(args.out)
    network, pictures = prepare_request(args, ('.pt2', ))
    backend = deployment_backend()
    with use_backend(backend):
        expected = run_network(network, pictures)
        started = time.perf_counter()
        with torch.no_grad():
            program = export_program(network, pictures)
            write_new_file(out, lambda path: aoti_package(program, path),
                           args.overwrite)
    names = output_names(expected, args.backbone_only)
    print(f'{out}: {out.stat().st_size / 2**20:.1f} MiB, ops backend '
          f'{backend}, input pictures {tuple(pictures.shape)}, outputs '
          f'{describe_outputs(names, expected)}; exported and compiled in '
          f'{time.perf_counter() - started:.0f} s')
    if args.skip_check:
        return None
    package = load_aoti_package(out)
    with torch.no_grad():
        actual = as_list(package(pictures))
    errors = check_against_pytorch('package', names, expected, actual,
                                   args.max_error)
    if args.time_runs:
        torch.set_num_threads(args.threads)
        with use_backend(backend), torch.no_grad():
            seconds = {
                'package': median_seconds(lambda: package(pictures),
                                          args.time_runs),
                f'PyTorch eager ({backend} backend)': median_seconds(
                    lambda: network(pictures), args.time_runs),
            }
        print_medians(seconds, args.time_runs, args.threads, pictures)
    return errors


if __name__ == '__main__':
    main()
