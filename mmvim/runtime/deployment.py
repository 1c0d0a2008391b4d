"""What the deployment tools (tools/deployment: ONNX, AOTInductor) share: the
network a deployed file computes, the checks of a request before anything is
built, writing the file without touching any other, ``torch.export``, and the
comparison of a deployed file with PyTorch.

The network takes one fixed-size batch of RGB pictures, float32 in 0..255,
(N, 3, H, W), normalises them with the config's ``data_preprocessor`` mean and
std itself, and returns the segmentor's class logits at the input size or,
for ``backbone_only``, the backbone's feature maps.
"""
import argparse
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from torch import nn

from mmvim.ops import list_backends, load_backend
from .atomic_files import OverwriteRefusedError, give_name
from .checkpoint_loading import load_fitting_weights
from .command_line import (add_cfg_options, init_task_model, task_library,
                           tool_parser)
from .input_size import smallest_input_side
from .run_guards import RunSetupError, check_checkpoint_loads
from .runner_setup import prepare_process

DEFAULT_MAX_ERROR = 1e-4

# The ops backend a deployed network is traced with: mmvim's compiled kernels
# where they run (the AOTInductor package calls them), else the portable ops.
# An ONNX file holds the same graph either way (mmvim.ops.onnx_translations).
DEPLOYMENT_BACKENDS = ('cpu', 'torch')


class Normalised(nn.Module):
    """Runs ``network`` on RGB 0..255 pictures normalised as in training."""

    def __init__(self, network: nn.Module, mean: Sequence[float],
                 std: Sequence[float]):
        super().__init__()
        self.network = network
        # Not 'mean' / 'std': the unoptimised ONNX export names op outputs
        # after the aten op, and a buffer of the same name breaks onnx's SSA
        # check.
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


def deployment_parser(description: str, what: str,
                      runtime: str) -> argparse.ArgumentParser:
    """The deployment tools' command line: the config, its checkpoint, the
    file to write and what it holds (``what``: 'export', 'package'), the
    check against PyTorch on ``runtime``, timing; each tool adds its own."""
    parser = tool_parser(
        description,
        checkpoint_help=f'checkpoint to {what}; without it the weights stay '
        f'as the model is built (for trying the {what} out, not for '
        'deployment)',
        nargs='?')
    parser.add_argument('--out', required=True, help='the file to write')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512),
                        metavar=('HEIGHT', 'WIDTH'),
                        help='fixed input size (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='fixed batch size')
    parser.add_argument('--backbone-only', action='store_true',
                        help=f"{what} the config's backbone alone (any mmseg "
                        'or mmdet config); its feature maps are the outputs')
    parser.add_argument(
        '--max-error', type=float, default=DEFAULT_MAX_ERROR,
        help=f'largest accepted max|{runtime} - PyTorch| / max|PyTorch| per '
        'output; above it the command fails (default: %(default)s)')
    parser.add_argument('--skip-check', action='store_true',
                        help=f'only {what}: no run, no comparison')
    parser.add_argument(
        '--time-runs', type=int, default=0,
        help=f'also time this many runs (after one warm-up) of {runtime} '
        'and of PyTorch side by side, and print the medians (default: no '
        'timing)')
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads when timing (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --out')
    add_cfg_options(parser, 'model.backbone.init_cfg=None')
    return parser


class Request(NamedTuple):
    """A checked deployment request: the network and the pictures it is
    traced and checked on."""
    network: nn.Module
    pictures: torch.Tensor


def prepare_request(args, suffixes: Sequence[str]) -> Request:
    """Checks the request of a :func:`deployment_parser` command line
    (before anything is built), then builds the network and its pictures."""
    check_output(Path(args.out), args.overwrite, suffixes)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_request(cfg, args.shape, args.batch_size, args.backbone_only,
                  args.checkpoint)
    prepare_process()  # weights-only loading of the checkpoint
    return Request(
        build_network(cfg, args.checkpoint, args.shape, args.backbone_only),
        example_pictures(args.batch_size, args.shape))


def check_output(out: Path, overwrite: bool, suffixes: Sequence[str]) -> None:
    """The file to write: of a kind the tool writes, not replacing one
    unless ``overwrite``."""
    if out.suffix not in suffixes:
        raise RunSetupError(f'--out {out} must end in '
                            f'{" or ".join(suffixes)}')
    if out.exists() and not overwrite:
        raise RunSetupError(f'{out} already exists; pass --overwrite to '
                            'replace it or choose another --out')


def check_request(cfg: Config, shape: Sequence[int], batch_size: int,
                  backbone_only: bool, checkpoint: Optional[str]) -> None:
    """What the command line asks for, checked before anything is built."""
    if task_library(cfg) == 'mmdet' and not backbone_only:
        raise RunSetupError('only the backbone of a detection config '
                            'exports; pass --backbone-only')
    side = smallest_input_side(cfg.model, backbone_only)
    if min(shape) < side:
        raise RunSetupError(
            f'--shape {shape[0]} {shape[1]} is too small: this '
            f'{"backbone" if backbone_only else "model"} needs at '
            f'least {side} pixels per side (its patches'
            f'{"" if backbone_only else " and the neck coarsest level"}'
            f'); pass --shape {max(side, shape[0])} '
            f'{max(side, shape[1])} or larger')
    if batch_size < 1:
        raise RunSetupError(f'--batch-size {batch_size}: must be 1 or more')
    if checkpoint:
        check_checkpoint_loads(checkpoint, 'checkpoint')


def build_network(cfg: Config, checkpoint: Optional[str],
                  shape: Sequence[int], backbone_only: bool) -> nn.Module:
    """The config's model as deployed: eval mode on the CPU, BatchNorm for
    SyncBN, the checkpoint's weights only if they fit it exactly (the
    backbone's, under ``backbone.``, for ``backbone_only``), pictures
    normalised inside."""
    from mmengine.model import revert_sync_batchnorm
    with warnings.catch_warnings():
        # init_detector without a checkpoint warns that it uses COCO's
        # classes; the classes do not enter the graph.
        warnings.simplefilter('ignore')
        model = init_task_model(cfg, None, device='cpu')
    model = revert_sync_batchnorm(model).eval()
    network = model.backbone if backbone_only else SegmentorLogits(
        model, shape)
    if checkpoint:
        load_fitting_weights(model.backbone if backbone_only else model,
                             checkpoint,
                             prefix='backbone.' if backbone_only else None)
    preprocessor = cfg.model.get('data_preprocessor', {})
    return Normalised(network, preprocessor.get('mean', (0., 0., 0.)),
                      preprocessor.get('std', (1., 1., 1.))).eval()


def example_pictures(batch_size: int, shape: Sequence[int]) -> torch.Tensor:
    """Random RGB pictures in 0..255, the same every time."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, 3, *shape, generator=generator) * 255


def as_list(outputs) -> List[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def run_network(network: nn.Module, pictures: torch.Tensor):
    """The network's outputs on ``pictures``, as a list; a model that does
    not take the size is a RunSetupError naming it."""
    try:
        with torch.no_grad():
            return as_list(network(pictures))
    except (RuntimeError, ValueError) as error:
        raise RunSetupError(
            f'the model does not run on a {tuple(pictures.shape)} input '
            f'({_first_line(error)}); try another --shape') from error


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [''])[0]


def output_names(outputs, backbone_only: bool) -> List[str]:
    if not backbone_only:
        return ['logits']
    return [f'features_{i}' for i in range(len(as_list(outputs)))]


def deployment_backend() -> str:
    """The ops backend deployed networks are traced with
    (:data:`DEPLOYMENT_BACKENDS`)."""
    available = {s.name for s in list_backends() if s.available}
    return next(name for name in DEPLOYMENT_BACKENDS if name in available)


def export_program(network: nn.Module, pictures: torch.Tensor):
    """``torch.export.export`` of the network on ``pictures`` (RunSetupError
    naming the reason when it cannot be exported)."""
    try:
        return torch.export.export(network, (pictures, ))
    except Exception as error:  # noqa: BLE001 - export errors vary
        raise RunSetupError(
            f'torch.export cannot export this model: {type(error).__name__}'
            f': {_first_line(error)}') from error


def write_new_file(out: Path, write: Callable[[Path], None],
                   overwrite: bool) -> None:
    """``write(path)`` into a new hidden file beside ``out``, which is then
    given its name: a failure leaves nothing half-done and touches no other
    file; an existing ``out`` is replaced only when ``overwrite``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(
        prefix=f'.{out.stem}.', suffix=f'.partial{out.suffix}', dir=out.parent)
    os.close(descriptor)
    partial = Path(partial)
    try:
        write(partial)
        give_name(str(partial), str(out.absolute()), replace=overwrite)
    except OverwriteRefusedError:
        raise RunSetupError(f'{out} appeared while it was written; not '
                            'replacing it (pass --overwrite to)') from None
    finally:
        partial.unlink(missing_ok=True)


def load_operators() -> None:
    """Define every mmvim operator that can be defined here: a deployed
    program calls them by name, whichever backend traced it."""
    for status in list_backends():
        load_backend(status.name)


def aoti_package(program, path: Path) -> None:
    """Compile ``program`` with AOTInductor into the package ``path`` (a
    .pt2; mmvim's operators are its extern kernels)."""
    torch._inductor.aoti_compile_and_package(program,
                                             package_path=os.fspath(path))


def load_aoti_package(path: Path):
    """A callable running the package ``path`` (mmvim's operators loaded
    first)."""
    load_operators()
    return torch._inductor.aoti_load_package(os.fspath(path))


def describe_outputs(names: Sequence[str], outputs) -> str:
    """``name (shape), ...`` of a network's outputs, for the tools' report."""
    return ', '.join(f'{name} {tuple(output.shape)}'
                     for name, output in zip(names, outputs))


def check_against_pytorch(runtime: str, names: Sequence[str],
                          expected: Sequence[torch.Tensor],
                          actual: Sequence, max_error: float) -> List[float]:
    """Prints each output's max relative error of ``runtime`` against
    PyTorch's ``expected`` and returns them; RunSetupError when one is
    above ``max_error``."""
    errors = max_relative_errors([t.numpy() for t in expected],
                                 [np.asarray(a) for a in actual])
    print(f'{runtime} vs PyTorch, max relative error: ' + ', '.join(
        f'{name} {error:.2e}' for name, error in zip(names, errors)))
    if max(errors) > max_error:
        raise RunSetupError(f'{runtime} differs from PyTorch by '
                            f'{max(errors):.2e} > --max-error {max_error:g}')
    return errors


def print_medians(seconds: dict, runs: int, threads: int,
                  pictures: torch.Tensor) -> None:
    """The tools' timing line: each runtime's median of ``runs``."""
    print(f'median of {runs} runs, {threads} CPU thread(s), input '
          f'{tuple(pictures.shape)}: ' + ', '.join(
              f'{name} {value:.3f} s' for name, value in seconds.items()))


def max_relative_errors(expected: Sequence[np.ndarray],
                        actual: Sequence[np.ndarray]) -> List[float]:
    """max|actual - expected| / max|expected| for each output."""
    errors = []
    for want, got in zip(expected, actual):
        if want.shape != got.shape:
            raise RunSetupError(f'the deployed file returned {got.shape} '
                                f'where PyTorch returned {want.shape}')
        scale = max(float(np.abs(want).max()), np.finfo(np.float32).tiny)
        errors.append(float(np.abs(got - want).max()) / scale)
    return errors
