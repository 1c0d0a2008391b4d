"""What one speed / memory measurement runs: a model named on the command
line (``vim-tiny-twocall@torch``, ``vim-tiny-compiled@cpu``, ``deit-small``,
``deit-tiny-compiled``, ``config:PATH``), built for the measured input size
with random weights, and its step function. ``compiled``: the model through
``torch.compile`` (Inductor, one graph); its first step includes the
compilation.

A 'inference' step is a no-grad forward; a 'train' step is forward +
backward (of the output's mean, or of a config model's loss), gradients
freed after each step, no optimizer.
"""
import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from mmvim.analysis.config_models import (
    build_config_model,
    synthetic_data_samples,
)
from mmvim.analysis.deit import DEIT_ARCHS, build_deit

VIM_ARCHS = ('tiny', 'small', 'base')
VIM_VARIANTS = ('twocall', 'compiled')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
MODES = ('inference', 'train')


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name."""
    name: str
    family: str  # 'vim' | 'deit' | 'config'
    arch: str = ''  # vim / deit size
    config: str = ''
    two_call: bool = False
    compiled: bool = False
    backend: str = ''  # '' = $MMVIM_OPS_BACKEND


def parse_model(name: str) -> ModelSpec:
    """'vim-tiny-twocall@torch' -> ModelSpec; ValueError on anything else."""
    from mmvim.ops import backend_names
    base, _, backend = name.partition('@')
    if backend and backend not in ('auto', *backend_names()):
        raise ValueError(f'{name}: the backend must be one of '
                         f'{("auto", *backend_names())}.')
    if base.startswith('config:'):
        return ModelSpec(name, 'config', config=base[len('config:'):],
                         backend=backend)
    family, _, rest = base.partition('-')
    arch, *variants = rest.split('-')
    if family == 'deit' and arch in DEIT_ARCHS and variants in (
            [], ['compiled']):
        if backend:
            raise ValueError(f'{name}: DeiT does not use the mmvim ops.')
        return ModelSpec(name, 'deit', arch, compiled=bool(variants))
    if (family == 'vim' and arch in VIM_ARCHS
            and set(variants) <= set(VIM_VARIANTS)
            and len(set(variants)) == len(variants)):
        return ModelSpec(name, 'vim', arch, two_call='twocall' in variants,
                         compiled='compiled' in variants, backend=backend)
    raise ValueError(
        f'Unknown model {name!r}: use vim-{{{",".join(VIM_ARCHS)}}}'
        f'[-twocall][-compiled], deit-{{{",".join(DEIT_ARCHS)}}}'
        '[-compiled] or '
        'config:PATH, optionally with @<backend> (e.g. @cpu, @torch, '
        '@sequential).')


@dataclass
class Workload:
    """What one measurement runs: ``step`` once per timed iteration."""
    step: Callable[[], None]
    implementation: str
    backend: str


def _mean_of(outputs) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs.float().mean()
    return sum(_mean_of(output) for output in outputs)


def build_workload(spec: ModelSpec, resolution: int, batch: int, dtype: str,
                   mode: str, device: torch.device) -> Workload:
    """Model, input and the step function of one measurement. Selects
    ``spec.backend`` for this process's mmvim ops."""
    import mmvim.ops
    if spec.backend:
        mmvim.ops.set_backend(spec.backend)
    backend = '-'
    if spec.family == 'deit':
        model, implementation = build_deit(spec.arch, resolution)
    elif spec.family == 'vim':
        from mmvim.models.backbones.vision_mamba import VisionMamba
        model = VisionMamba(arch=spec.arch, img_size=resolution,
                            fuse_directions=not spec.two_call)
        implementation = 'mmvim ' + ('two-call' if spec.two_call else 'fused')
        backend = mmvim.ops.get_backend(device)
    else:
        model, scope = build_config_model(spec.config)
        implementation = f'{scope} {type(model).__name__}'
        backend = mmvim.ops.get_backend(device)
    model = model.to(device).train(mode == 'train')
    if spec.compiled:
        model = torch.compile(model, fullgraph=True)
        implementation += ', torch.compile'
    inputs = torch.randn(batch, 3, resolution, resolution, device=device)
    if spec.family == 'config':
        samples = synthetic_data_samples(scope, batch,
                                         (resolution, resolution), device,
                                         with_targets=mode == 'train')

        def forward():
            return model(inputs, samples, mode='tensor')

        def loss():
            return model.parse_losses(model(inputs, samples, mode='loss'))[0]
    else:

        def forward():
            return model(inputs)

        def loss():
            return _mean_of(model(inputs))

    if dtype == 'fp32':
        autocast = contextlib.nullcontext
    else:

        def autocast():
            return torch.autocast(device.type, dtype=DTYPES[dtype])

    if mode == 'inference':

        def step():
            with torch.no_grad(), autocast():
                forward()
    else:

        def step():
            with autocast():
                value = loss()
            value.backward()
            model.zero_grad(set_to_none=True)

    return Workload(step, implementation, backend)
