"""Export a Vim segmentor (or any config's Vim backbone alone) to ONNX.

The graph takes one fixed-size batch of RGB pictures, float32 in 0..255,
shape (N, 3, H, W), and normalises them with the config's
``data_preprocessor`` mean and std itself. It returns the segmentor's class
logits at the input size (N, classes, H, W) or, with ``--backbone-only``, the
backbone's feature maps.

``torch.export`` traces the network with mmvim's operators, one node per
scan and conv, and each is translated (mmvim.ops.onnx_translations): by
default into standard ONNX operators (the scan one ONNX ``Scan`` over the
tokens), so any ONNX runtime runs the file; with ``--custom-ops`` into one
node of the ``mmvim`` domain each, for runtimes that implement them
(docs/deployment.md). The file is then checked with ``onnx.checker`` and,
without ``--custom-ops``, run with onnxruntime on the CPU and compared with
PyTorch on the same random pictures:

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT \\
        --shape 512 512 --out vim_tiny_512.onnx [--backbone-only]

Needs the deploy extras: ``pip install -e .[deploy]``.
"""
import time
from pathlib import Path

import torch

import mmvim  # noqa: F401  registers the Vim backbone and neck
from mmvim.analysis.timing import median_seconds
from mmvim.ops import use_backend
from mmvim.runtime import RunSetupError
from mmvim.runtime.command_line import user_errors
from mmvim.runtime.deployment import (check_against_pytorch,
                                      deployment_backend, deployment_parser,
                                      describe_outputs, output_names,
                                      prepare_request, print_medians,
                                      run_network, write_new_file)

DEFAULT_OPSET = 18


def parse_args(argv=None):
    parser = deployment_parser(__doc__.split('\n')[0], 'export',
                               'onnxruntime')
    parser.add_argument(
        '--opset',
        type=int,
        default=DEFAULT_OPSET,
        help='ONNX opset version (default: %(default)s)')
    parser.add_argument(
        '--custom-ops',
        action='store_true',
        help='write each scan and conv as one node of the mmvim domain '
        '(docs/deployment.md) instead of standard ONNX operators; '
        'onnxruntime cannot run such a file by itself, so it is only '
        'checked with onnx.checker')
    return parser.parse_args(argv)


def export(model, pictures: torch.Tensor, out: Path, opset: int,
           names, custom_ops: bool, overwrite: bool) -> None:
    """Exports ``model`` on ``pictures`` into one self-contained file
    (weights inside, no debugging records), written beside ``out`` and then
    given its name.

    onnxscript's graph optimiser is skipped: onnxruntime optimises the graph
    itself when it loads it.
    """
    from mmvim.ops import onnx_translations
    table = onnx_translations.custom_table() if custom_ops else \
        onnx_translations.portable_table()

    def write(path: Path) -> None:
        program = torch.onnx.export(
            model, (pictures, ),
            dynamo=True,
            optimize=False,
            opset_version=opset,
            input_names=['pictures'],
            output_names=list(names),
            custom_translation_table=table)
        without_debug_records(program.model)
        program.save(str(path), external_data=False)
        written = written_opset(path)
        if written != opset:
            # torch falls back to its own opset when converting fails.
            raise RunSetupError(
                f'torch could not convert the graph to opset {opset} (it '
                f'wrote opset {written}); choose --opset {written} or higher')

    write_new_file(out, write, overwrite)


def without_debug_records(model) -> None:
    """Drops the exporter's per-node records (stack traces, FX names and
    module scopes: 7.6 of the 53.6 MiB of UperNet + Vim-Ti at 512), which
    no runtime reads."""
    import onnx_ir as ir
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        node.metadata_props.clear()


def written_opset(path: Path) -> int:
    """The default-domain (ai.onnx) opset a file declares."""
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import
                if entry.domain in ('', 'ai.onnx'))


def onnxruntime_session(out: Path, threads: int = 0):
    """A CPU session of the file; ``threads`` 0 lets onnxruntime choose."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        str(out), options, providers=['CPUExecutionProvider'])


def time_side_by_side(out: Path, model, pictures: torch.Tensor,
                      args) -> None:
    """onnxruntime against PyTorch on mmvim's compiled (``cpu``) and
    portable (``torch``) backends, the same pictures and thread count."""
    torch.set_num_threads(args.threads)
    session = onnxruntime_session(out, args.threads)
    feed = {'pictures': pictures.numpy()}
    seconds = {'onnxruntime': median_seconds(
        lambda: session.run(None, feed), args.time_runs)}
    backends = dict.fromkeys((deployment_backend(), 'torch'))
    with torch.no_grad():
        for backend in backends:
            with use_backend(backend):
                seconds[f'PyTorch ({backend} backend)'] = median_seconds(
                    lambda: model(pictures), args.time_runs)
    print_medians(seconds, args.time_runs, args.threads, pictures)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(FileNotFoundError, ValueError):
        return export_and_check(args)


def export_and_check(args):
    """Checks the arguments, exports, and checks the file against PyTorch;
    returns the relative errors (None with --skip-check or --custom-ops)."""
    out = Path(args.out)
    if not args.skip_check:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise RunSetupError(f'{error.name} is missing: pip install -e '
                                '.[deploy] (or -r requirements/deploy.txt)')
    model, pictures = prepare_request(args, ('.onnx', ))
    backend = deployment_backend()
    with use_backend(backend):
        expected = run_network(model, pictures)
        names = output_names(expected, args.backbone_only)
        started = time.perf_counter()
        with torch.no_grad():
            export(model, pictures, out, args.opset, names, args.custom_ops,
                   args.overwrite)
    print(f'{out}: {out.stat().st_size / 2**20:.1f} MiB, opset {args.opset}, '
          f'{"mmvim-domain" if args.custom_ops else "standard"} operators, '
          f'traced with the {backend} backend, input pictures '
          f'{tuple(pictures.shape)}, outputs '
          f'{describe_outputs(names, expected)}; exported in '
          f'{time.perf_counter() - started:.0f} s')
    if args.skip_check:
        return None
    import onnx
    if args.custom_ops:
        from mmvim.ops.onnx_translations import register_schemas
        register_schemas()
        onnx.checker.check_model(str(out), full_check=True)
        print('onnx.checker (with the mmvim schemas): ok')
        return None
    onnx.checker.check_model(str(out))
    print('onnx.checker: ok')
    actual = onnxruntime_session(out).run(None,
                                          {'pictures': pictures.numpy()})
    errors = check_against_pytorch('onnxruntime (CPU)', names, expected,
                                   actual, args.max_error)
    if args.time_runs:
        time_side_by_side(out, model, pictures, args)
    return errors


if __name__ == '__main__':
    main()
