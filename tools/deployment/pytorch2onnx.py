"""Export a Vim segmentor (or any config's Vim backbone alone) to ONNX.

The graph takes one fixed-size batch of RGB pictures, float32 in 0..255,
shape (N, 3, H, W), and normalises them with the config's
``data_preprocessor`` mean and std itself. It returns the segmentor's class
logits at the input size (N, classes, H, W) or, with ``--backbone-only``, the
backbone's feature maps. The export traces mmvim's portable ops (the
compiled and Triton kernels cannot be traced). The file is then checked with
``onnx.checker``, run with onnxruntime on the CPU and compared with PyTorch
on the same random pictures:

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT \\
        --shape 512 512 --out vim_tiny_512.onnx [--backbone-only]

Needs the deploy extras: ``pip install -e .[deploy]``.
"""
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from mmengine.config import Config
from torch import nn

import mmvim  # noqa: F401  registers the Vim backbone and neck
from mmvim.analysis.timing import median_seconds
from mmvim.ops import get_backend, use_backend
from mmvim.runtime import (OverwriteRefusedError, RunSetupError,
                           check_checkpoint_loads, load_fitting_weights,
                           prepare_process)
from mmvim.runtime.atomic_files import give_name
from mmvim.runtime.input_size import smallest_input_side
from mmvim.runtime.command_line import (add_cfg_options, init_task_model,
                                        task_library, tool_parser,
                                        user_errors)

# Portable backends that trace into plain ONNX operators, best first:
# see docs/deployment.md for the graph sizes and errors behind the order.
TRACEABLE_BACKENDS = ('torch', 'sequential')
DEFAULT_OPSET = 18
DEFAULT_MAX_ERROR = 1e-4


def parse_args(argv=None):
    parser = tool_parser(
        __doc__.split('\n')[0],
        checkpoint_help='checkpoint to export; without it the weights stay '
        'as the model is built (for trying the export out, not for '
        'deployment)',
        nargs='?')
    parser.add_argument(
        '--out', required=True, help='the .onnx file to write')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(512, 512),
        metavar=('HEIGHT', 'WIDTH'),
        help='fixed input size (default: %(default)s)')
    parser.add_argument(
        '--batch-size', type=int, default=1, help='fixed batch size')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help="export the config's backbone alone (any mmseg or mmdet "
        'config); its feature maps are the outputs')
    parser.add_argument(
        '--opset',
        type=int,
        default=DEFAULT_OPSET,
        help='ONNX opset version (default: %(default)s)')
    parser.add_argument(
        '--backend',
        choices=TRACEABLE_BACKENDS,
        default=TRACEABLE_BACKENDS[0],
        help='mmvim ops backend the graph is traced through '
        '(default: %(default)s)')
    parser.add_argument(
        '--max-error',
        type=float,
        default=DEFAULT_MAX_ERROR,
        help='largest accepted max|onnxruntime - PyTorch| / max|PyTorch| '
        'per output; above it the command fails (default: %(default)s)')
    parser.add_argument(
        '--skip-check',
        action='store_true',
        help='only export: no onnx.checker, onnxruntime or comparison')
    parser.add_argument(
        '--time-runs',
        type=int,
        default=0,
        help='also time this many runs (after one warm-up) of onnxruntime '
        "and of PyTorch, on its default backend and on --backend, and "
        'print the medians (default: no timing)')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='CPU threads of both runtimes when timing (default: %(default)s)')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing --out')
    add_cfg_options(parser, 'model.backbone.init_cfg=None')
    return parser.parse_args(argv)


class Normalised(nn.Module):
    """Runs ``network`` on RGB 0..255 pictures normalised as in training."""

    def __init__(self, network: nn.Module, mean: Sequence[float],
                 std: Sequence[float]):
        super().__init__()
        self.network = network
        # Not 'mean' / 'std': the unoptimised export names op outputs after
        # the aten op, and a buffer of the same name breaks onnx's SSA check.
        self.register_buffer('pixel_mean',
                             torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer('pixel_std', torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, pictures):
        return self.network((pictures - self.pixel_mean) / self.pixel_std)


class SegmentorLogits(nn.Module):
    """The segmentor's class logits at the (fixed) input size: the network
    of one sliding-window crop, without the window loop around it."""

    def __init__(self, segmentor: nn.Module, shape: Sequence[int]):
        super().__init__()
        self.segmentor = segmentor
        shape = tuple(shape)
        self.image_meta = dict(
            img_shape=shape, pad_shape=shape, ori_shape=shape)

    def forward(self, images):
        metas = [self.image_meta] * images.shape[0]
        return self.segmentor.encode_decode(images, metas)


def check_arguments(cfg: Config, args) -> None:
    """What the command line asks for, checked before anything is built."""
    if task_library(cfg) == 'mmdet' and not args.backbone_only:
        raise RunSetupError('only the backbone of a detection config '
                            'exports; pass --backbone-only')
    side = smallest_input_side(cfg.model, args.backbone_only)
    if min(args.shape) < side:
        raise RunSetupError(
            f'--shape {args.shape[0]} {args.shape[1]} is too small: this '
            f'{"backbone" if args.backbone_only else "model"} needs at '
            f'least {side} pixels per side (its patches'
            f'{"" if args.backbone_only else " and the neck coarsest level"}'
            f'); pass --shape {max(side, args.shape[0])} '
            f'{max(side, args.shape[1])} or larger')
    if args.batch_size < 1:
        raise RunSetupError(f'--batch-size {args.batch_size}: must be 1 or '
                            'more')
    if args.checkpoint:
        check_checkpoint_loads(args.checkpoint, 'checkpoint')


def build_model(cfg: Config, checkpoint, backbone_only: bool) -> nn.Module:
    """The config's model in eval mode on the CPU, BatchNorm for SyncBN,
    with the checkpoint's weights only if they fit it exactly (the
    backbone's, under ``backbone.``, for ``backbone_only``)."""
    from mmengine.model import revert_sync_batchnorm
    with warnings.catch_warnings():
        # init_detector without a checkpoint warns that it uses COCO's
        # classes; the classes do not enter the graph.
        warnings.simplefilter('ignore')
        model = init_task_model(cfg, None, device='cpu')
    model = revert_sync_batchnorm(model).eval()
    network = model.backbone if backbone_only else SegmentorLogits(
        model, cfg.export_shape)
    if checkpoint:
        load_fitting_weights(model.backbone if backbone_only else model,
                             checkpoint,
                             prefix='backbone.' if backbone_only else None)
    return network


def max_relative_errors(expected: Sequence[np.ndarray],
                        actual: Sequence[np.ndarray]) -> List[float]:
    """max|actual - expected| / max|expected| for each output."""
    errors = []
    for want, got in zip(expected, actual):
        if want.shape != got.shape:
            raise ValueError(f'onnxruntime returned {got.shape} where '
                             f'PyTorch returned {want.shape}')
        scale = max(float(np.abs(want).max()), np.finfo(np.float32).tiny)
        errors.append(float(np.abs(got - want).max()) / scale)
    return errors


def export(model: nn.Module, pictures: torch.Tensor, out: Path, opset: int,
           output_names: Sequence[str], overwrite: bool = False) -> None:
    """Traces ``model`` on ``pictures`` with torch.export into one
    self-contained file (weights inside, not in a side file), written to a
    new hidden file beside ``out`` first and then given its name, so that a
    failed export leaves nothing half-done and touches no other file; an
    existing ``out`` is replaced only when ``overwrite``.

    onnxscript's graph optimiser is skipped: with the scan's loops unrolled,
    an export of the Vim-Ti backbone at 224 was still in it after 17
    minutes, and onnxruntime optimises the graph itself when it loads it.
    """
    descriptor, partial = tempfile.mkstemp(
        prefix=f'.{out.name}.', suffix='.partial', dir=out.parent)
    os.close(descriptor)
    partial = Path(partial)
    try:
        torch.onnx.export(
            model, (pictures, ),
            str(partial),
            dynamo=True,
            external_data=False,
            optimize=False,
            opset_version=opset,
            input_names=['pictures'],
            output_names=list(output_names))
        written = written_opset(partial)
        if written != opset:
            # torch falls back to its own opset when converting fails.
            raise RunSetupError(
                f'torch could not convert the graph to opset {opset} (it '
                f'wrote opset {written}); choose --opset {written} or higher')
        give_name(str(partial), str(out.absolute()), replace=overwrite)
    except OverwriteRefusedError:
        raise RunSetupError(f'{out} appeared during the export; not '
                            'replacing it (pass --overwrite to)') from None
    finally:
        partial.unlink(missing_ok=True)


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


def time_side_by_side(out: Path, model: nn.Module, pictures: torch.Tensor,
                      args) -> None:
    """onnxruntime against PyTorch on the same pictures and thread count."""
    torch.set_num_threads(args.threads)
    session = onnxruntime_session(out, args.threads)
    feed = {'pictures': pictures.numpy()}
    seconds = {'onnxruntime': median_seconds(
        lambda: session.run(None, feed), args.time_runs)}
    with torch.no_grad():
        default = get_backend('cpu')
        seconds[f'PyTorch ({default} backend)'] = median_seconds(
            lambda: model(pictures), args.time_runs)
        if args.backend != default:
            with use_backend(args.backend):
                seconds[f'PyTorch ({args.backend} backend)'] = median_seconds(
                    lambda: model(pictures), args.time_runs)
    print(f'median of {args.time_runs} runs, {args.threads} CPU thread(s), '
          f'input {tuple(pictures.shape)}: ' + ', '.join(
              f'{name} {value:.3f} s' for name, value in seconds.items()))


def main(argv=None):
    args = parse_args(argv)
    with user_errors(FileNotFoundError, ValueError):
        return export_and_check(args)


def export_and_check(args):
    """Checks the arguments, exports, and checks the file against PyTorch;
    returns the relative errors (None with --skip-check)."""
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise RunSetupError(f'{out} already exists; pass --overwrite to '
                            'replace it or choose another --out')
    if not args.skip_check:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise RunSetupError(f'{error.name} is missing: pip install -e '
                                '.[deploy] (or -r requirements/deploy.txt)')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.export_shape = tuple(args.shape)
    check_arguments(cfg, args)
    prepare_process()  # weights-only loading of the checkpoint
    network = build_model(cfg, args.checkpoint, args.backbone_only)
    preprocessor = cfg.model.get('data_preprocessor', {})
    model = Normalised(network, preprocessor.get('mean', (0., 0., 0.)),
                       preprocessor.get('std', (1., 1., 1.))).eval()

    generator = torch.Generator().manual_seed(0)
    pictures = torch.rand(
        args.batch_size, 3, *args.shape, generator=generator) * 255
    out.parent.mkdir(parents=True, exist_ok=True)
    with use_backend(args.backend), torch.no_grad():
        try:
            expected = model(pictures)
        except (RuntimeError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [''])[0]
            raise RunSetupError(
                f'the model does not run on a {tuple(pictures.shape)} input '
                f'({reason}); try another --shape') from error
        expected = list(expected) if isinstance(expected,
                                                (tuple, list)) else [expected]
        output_names = (['logits'] if not args.backbone_only else
                        [f'features_{i}' for i in range(len(expected))])
        started = time.perf_counter()
        export(model, pictures, out, args.opset, output_names,
               args.overwrite)
    print(f'{out}: {out.stat().st_size / 2**20:.1f} MiB, opset {args.opset}, '
          f'backend {args.backend}, input pictures {tuple(pictures.shape)}, '
          'outputs ' + ', '.join(f'{name} {tuple(t.shape)}'
                                 for name, t in zip(output_names, expected)) +
          f'; exported in {time.perf_counter() - started:.0f} s')
    if args.skip_check:
        return None
    import onnx
    onnx.checker.check_model(str(out))
    actual = onnxruntime_session(out).run(None,
                                          {'pictures': pictures.numpy()})
    errors = max_relative_errors([t.numpy() for t in expected], actual)
    print('onnx.checker: ok; onnxruntime (CPU) vs PyTorch, max relative '
          'error: ' + ', '.join(f'{name} {error:.2e}'
                                for name, error in zip(output_names, errors)))
    if max(errors) > args.max_error:
        raise RunSetupError(f'onnxruntime differs from PyTorch by '
                            f'{max(errors):.2e} > --max-error '
                            f'{args.max_error:g}')
    if args.time_runs:
        time_side_by_side(out, model, pictures, args)
    return errors


if __name__ == '__main__':
    main()
