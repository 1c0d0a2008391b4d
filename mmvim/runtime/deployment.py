"""What the deployment tools (tools/deployment) share: the network a deployed
file computes, its export with ``torch.export``, the AOTInductor package, and
the check of a deployed file against PyTorch.

The network takes one fixed-size batch of RGB pictures, float32 in 0..255,
(N, 3, H, W), normalises them with the config's ``data_preprocessor`` mean and
std itself, and returns the segmentor's class logits at the input size or,
for ``backbone_only``, the backbone's feature maps.
"""
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from torch import nn

from mmvim.ops import list_backends, load_backend
from .command_line import init_task_model, task_library

# The ops backend a deployed graph calls: mmvim's compiled kernels where
# they run, else the portable ops.
DEPLOYMENT_BACKENDS = ('cpu', 'torch')


class DeploymentError(ValueError):
    """A model or setting that cannot be deployed, with the reason."""


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


def deployment_backend() -> str:
    """The ops backend deployed graphs are traced with: see
    :data:`DEPLOYMENT_BACKENDS`."""
    available = {s.name for s in list_backends() if s.available}
    return next(name for name in DEPLOYMENT_BACKENDS if name in available)


def build_network(cfg: Config, checkpoint: Optional[str],
                  shape: Sequence[int], backbone_only: bool) -> nn.Module:
    """The config's model as deployed: eval mode on the CPU, BatchNorm for
    SyncBN, the checkpoint's weights (refused when they do not fit), pictures
    normalised inside."""
    from mmengine.model import revert_sync_batchnorm
    if task_library(cfg) == 'mmdet' and not backbone_only:
        raise DeploymentError('only the backbone of a detection config '
                              'exports; pass --backbone-only')
    model = revert_sync_batchnorm(init_task_model(cfg, checkpoint,
                                                  device='cpu')).eval()
    network = model.backbone if backbone_only else SegmentorLogits(
        model, shape)
    preprocessor = cfg.model.get('data_preprocessor', {})
    return Normalised(network, preprocessor.get('mean', (0., 0., 0.)),
                      preprocessor.get('std', (1., 1., 1.))).eval()


def example_pictures(batch_size: int, shape: Sequence[int]) -> torch.Tensor:
    """Random RGB pictures in 0..255, the same every time."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, 3, *shape, generator=generator) * 255


def as_list(outputs) -> List[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def output_names(outputs, backbone_only: bool) -> List[str]:
    if not backbone_only:
        return ['logits']
    return [f'features_{i}' for i in range(len(as_list(outputs)))]


def export_program(network: nn.Module, pictures: torch.Tensor):
    """``torch.export.export`` of the network on ``pictures``
    (DeploymentError naming the reason when it cannot be exported)."""
    try:
        return torch.export.export(network, (pictures, ))
    except Exception as error:  # noqa: BLE001 - export errors vary
        reason = str(error).strip().splitlines()[0] if str(error) else ''
        raise DeploymentError(
            f'torch.export cannot export this model: {type(error).__name__}'
            f': {reason}') from error


def load_operators() -> None:
    """Define every mmvim operator that can be defined here: a deployed
    program calls them by name, whichever backend traced it."""
    for status in list_backends():
        load_backend(status.name)


def aoti_package(program, path: Path) -> None:
    """Compile ``program`` with AOTInductor into the package ``path``
    (mmvim's compiled operators are its extern kernels)."""
    torch._inductor.aoti_compile_and_package(program,
                                             package_path=os.fspath(path))


def load_aoti_package(path: Path):
    """A callable running the package ``path`` (mmvim's operators loaded
    first)."""
    load_operators()
    return torch._inductor.aoti_load_package(os.fspath(path))


def max_relative_errors(expected: Sequence[np.ndarray],
                        actual: Sequence[np.ndarray]) -> List[float]:
    """max|actual - expected| / max|expected| for each output."""
    errors = []
    for want, got in zip(expected, actual):
        if want.shape != got.shape:
            raise DeploymentError(f'the deployed file returned {got.shape} '
                                  f'where PyTorch returned {want.shape}')
        scale = max(float(np.abs(want).max()), np.finfo(np.float32).tiny)
        errors.append(float(np.abs(got - want).max()) / scale)
    return errors
