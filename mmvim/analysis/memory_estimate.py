"""The peak memory of one training step (or one inference) of a config's
model on one GPU of a data-parallel run, computed under fake tensors: the
step runs as it would, on tensors that have shapes, dtypes and lifetimes
but no data, and every storage it would allocate is counted while it lives
(:mod:`mmvim.analysis.memory_tracking`).

What is counted: weights and buffers, the batch, the AdamW moments (two per
trainable parameter, in place before the step as in any step after the
first), the gradients, DistributedDataParallel's gradient buckets (one more
gradient-sized buffer: mmengine's wrapper keeps gradient_as_bucket_view
off), everything the forward pass keeps for the backward pass (the mmvim
scan's chunk-boundary states included), the backward pass's own tensors and
the optimizer step's temporaries (torch's foreach AdamW on a GPU).

How a GPU is modelled from fake CPU tensors (the CPU-only torch wheel cannot
run a backward pass on fake CUDA tensors): the mmvim ops of the backend
that would run there (their saved tensors differ), SyncBN as BN (what it
keeps is the same), CUDA's autocast policy for ``amp``
(:mod:`mmvim.analysis.memory_autocast`) and foreach AdamW.

Not counted: the CUDA context, cuDNN / cuBLAS workspaces and what any
kernel allocates for itself, and the caching allocator's reserve and
fragmentation (``torch.cuda.memory_reserved`` exceeds
``max_memory_allocated``); :data:`mmvim.analysis.memory_report.CARD_MARGIN`
sizes cards for them.

Values that steer a step (the detector's anchors, targets and sampled
proposals, the optimizer's step count) are computed for real from real
inputs: an operator whose inputs are all real runs for real, and is counted
too. Where a value would come from the network itself (proposals after NMS,
boxes refined between cascade stages), :mod:`mmvim.analysis.memory_stand_ins`
substitutes real values of the size the config's limits give.
"""
import contextlib
import os
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch._subclasses.fake_tensor import (DataDependentOutputException,
                                           DynamicOutputShapeException,
                                           FakeTensor, FakeTensorMode,
                                           UnsupportedOperatorException,
                                           unset_fake_temporarily)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_leaves

from .memory_autocast import cuda_autocast
from .memory_stand_ins import ASSUMED_SCALAR, stand_ins
from .memory_tracking import LiveMemory, StorageTracker, allocator_counts

GIB = 2**30
DEVICES = ('cuda', 'cpu')
MODES = ('train', 'test')
# What each kind of counted memory is, in the order tables list them.
KINDS = {
    'weights': 'parameters and buffers',
    'gradients': "the parameters' gradients",
    'optimizer states': "AdamW's two moments per trainable parameter",
    'ddp buckets': "DistributedDataParallel's gradient buckets",
    'inputs': 'the batch: images and targets',
    'activations': 'tensors the forward pass keeps (for the backward pass, '
    'or alive at the peak)',
    'recomputed activations': 'checkpointed blocks run again in the '
    'backward pass (with_cp)',
    'backward': "the backward pass's gradients of activations and "
    'temporaries',
    'optimizer step': "the optimizer's temporaries",
}
NOT_COUNTED = (
    'the CUDA context (about 0.3-0.6 GiB per process, outside torch)',
    'cuDNN / cuBLAS workspaces and scratch a kernel allocates and frees '
    'inside one call',
    "the caching allocator's reserve and fragmentation (memory_reserved "
    'above max_memory_allocated)',
    'the loss scaler of --amp and the message hub (a few scalars)',
)
# Below this many bytes an operator with no tensor inputs (zeros, arange,
# ...) runs for real, so that its values can steer the step; larger ones
# stay fake.
REAL_FACTORY_LIMIT = 16 * 2**20
_OPS_DIR = os.sep + os.path.join('mmvim', 'ops') + os.sep
_NODE_LABEL = 'mmvim_memory_label'


class UntraceableModelError(RuntimeError):
    """The model cannot run under fake tensors; the message names the
    module and the operator."""


@dataclass
class EstimateSettings:
    """What is estimated. ``input_shape`` (H, W) defaults to the config's
    training crop / padded size (train) or its test resize (test)."""
    config: str
    batch_per_gpu: Optional[int] = None
    mode: str = 'train'
    device: str = 'cuda'
    amp: bool = False
    ops_backend: Optional[str] = None
    cfg_options: Optional[dict] = None
    input_shape: Optional[Tuple[int, int]] = None
    data_parallel: bool = True


@dataclass
class MemoryEstimate:
    """The result: ``peak_bytes`` and what was alive at that moment,
    ``at_peak[(part, kind, layer)]`` in bytes (kinds: :data:`KINDS`), the
    peak of each phase of the step; for a step measured for real,
    ``allocator``: what the CPU allocator reported."""
    peak_bytes: int
    at_peak: Dict[Tuple[str, str, str], int]
    phase_peaks: Dict[str, int]
    settings: Dict
    allocator: Dict[str, int] = field(default_factory=dict)
    not_counted: Tuple[str, ...] = NOT_COUNTED

    def by(self, *fields: str) -> Dict:
        """Bytes at the peak summed by 'part', 'kind' and/or 'layer'."""
        index = {'part': 0, 'kind': 1, 'layer': 2}
        sums = Counter()
        for key, size in self.at_peak.items():
            group = tuple(key[index[f]] for f in fields)
            sums[group[0] if len(group) == 1 else group] += size
        return dict(sums.most_common())

    def to_json(self) -> Dict:
        by_part_kind = defaultdict(dict)
        for (part, kind), size in self.by('part', 'kind').items():
            by_part_kind[part][kind] = size
        return dict(
            peak_bytes=self.peak_bytes,
            peak_gib=round(self.peak_bytes / GIB, 3),
            settings=self.settings,
            breakdown=dict(
                by_part=self.by('part'), by_kind=self.by('kind'),
                by_part_and_kind=dict(by_part_kind),
                activations_by_layer={
                    layer: size for (kind, layer), size in self.by(
                        'kind', 'layer').items() if kind == 'activations'}),
            phase_peaks=self.phase_peaks, kinds=KINDS,
            not_counted=list(self.not_counted),
            **({'allocator': self.allocator} if self.allocator else {}))


def default_ops_backend(device: str) -> str:
    """The mmvim ops backend a run on ``device`` would use: on a GPU the
    Triton kernels (what auto picks without mamba-ssm; every CUDA wheel of
    torch ships triton), on a CPU what auto picks here."""
    if device == 'cuda':
        return 'triton'
    import mmvim.ops
    return mmvim.ops.get_backend('cpu')


def ops_for_tracing(backend: str) -> contextlib.AbstractContextManager:
    """Inside, the mmvim ops call ``backend``'s operators whatever the
    tensors' device, for fake tensors (their fake implementations give the
    outputs and saved chunk states that backend would allocate)."""
    import mmvim.ops
    return mmvim.ops.simulate_backend(backend)


# --- the step, and where each allocation comes from -----------------------


class _Attribution:
    """Which part of the model (backbone, neck, decode_head, ...) and which
    layer an allocation comes from, and in which phase of the step."""

    def __init__(self, model: torch.nn.Module):
        self.names = {id(m): name for name, m in model.named_modules()}
        self.types = {id(m): type(m).__name__ for m in model.modules()}
        self.phase = 'setup'

    def _frames(self) -> Tuple[Optional[str], str, bool]:
        """(module name, its class, inside mmvim.ops) of the innermost
        module method on the Python stack."""
        in_ops = False
        frame = sys._getframe(2)
        while frame is not None:
            code = frame.f_code
            in_ops = in_ops or _OPS_DIR in code.co_filename
            if code.co_argcount and code.co_varnames[0] == 'self':
                owner = id(frame.f_locals.get('self'))
                if owner in self.names:
                    return self.names[owner], self.types[owner], in_ops
            frame = frame.f_back
        return None, '', in_ops

    def place(self) -> Tuple[str, str, str, bool]:
        """(part, layer, module name, whether module code runs now) of the
        code running now; in the backward pass, of the forward operator
        whose gradient this is."""
        name, layer, in_ops = self._frames()
        if name is None and self.phase == 'backward':
            node = torch._C._current_autograd_node()
            if node is not None and _NODE_LABEL in node.metadata:
                return (*node.metadata[_NODE_LABEL][:3], False)
        if in_ops:
            layer = 'mmvim ops (scan, conv)'
        part = name.split('.')[0] if name else 'other'
        return part, layer or '-', name or '', name is not None

    def label(self) -> Tuple[str, str, str]:
        """The group of a new allocation: (part, kind, layer)."""
        part, layer, _, in_module = self.place()
        if self.phase == 'backward':
            # Module code running in the backward pass: a checkpointed
            # block computing its forward again.
            kind = 'recomputed activations' if in_module else 'backward'
        else:
            kind = dict(forward='activations',
                        optimizer='optimizer step').get(self.phase,
                                                        self.phase)
        return part, kind, layer


class _LabelGraph(TorchFunctionMode):
    """Labels each autograd node the forward pass creates with the part and
    layer that created it, so that the backward pass's allocations are
    attributed to them."""

    def __init__(self, attribution: _Attribution):
        super().__init__()
        self.attribution = attribution

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if torch.is_grad_enabled():
            nodes = [t.grad_fn for t in tree_leaves(out)
                     if isinstance(t, torch.Tensor) and t.grad_fn is not None
                     and _NODE_LABEL not in t.grad_fn.metadata]
            if nodes:
                label = self.attribution.place()
                while nodes:
                    node = nodes.pop()
                    if node is None or _NODE_LABEL in node.metadata:
                        continue
                    node.metadata[_NODE_LABEL] = label
                    nodes.extend(n for n, _ in node.next_functions)
        return out


_BOOLEAN_INDEXED = {
    torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default,
    torch.ops.aten.index_put_.default,
    torch.ops.aten._index_put_impl_.default
}


def _factory_bytes(args, kwargs) -> int:
    """Bytes of a factory call's output where its first argument is a
    size, else 0."""
    size = args[0] if args else kwargs.get('size')
    if not (isinstance(size, (list, tuple)) and
            all(isinstance(s, int) for s in size)):
        return 0
    dtype = kwargs.get('dtype') or torch.get_default_dtype()
    numel = 1
    for s in size:
        numel *= s
    return numel * (torch.finfo(dtype).bits if dtype.is_floating_point
                    else torch.iinfo(dtype).bits if dtype != torch.bool
                    else 8) // 8


class _RealValues(TorchDispatchMode):
    """Under a FakeTensorMode: operators whose tensor inputs are all real
    run for real (so anchors, targets and counts keep their values); a real
    boolean mask indexing a fake tensor becomes the integer indices it
    selects (as inside the indexing operator, not counted). An operator
    that needs the values of a fake tensor raises
    :class:`UntraceableModelError` naming the module."""

    def __init__(self, attribution: _Attribution):
        super().__init__()
        self.attribution = attribution

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [v for v in tree_flatten((args, kwargs))[0]
                   if isinstance(v, torch.Tensor)]
        if not any(isinstance(t, FakeTensor) for t in tensors) and (
                tensors or _factory_bytes(args, kwargs) <= REAL_FACTORY_LIMIT):
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        if func in _BOOLEAN_INDEXED:
            indices = [self._real_indices(i) for i in args[1]]
            args = (args[0], [i for group in indices for i in group],
                    *args[2:])
        assumed = ASSUMED_SCALAR.get()
        if func is torch.ops.aten._local_scalar_dense.default and \
                assumed is not None:
            return assumed
        try:
            return func(*args, **kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException,
                UnsupportedOperatorException) as error:
            raise self._untraceable(func, error) from error

    def _real_indices(self, index) -> List:
        """A real boolean mask as the integer indices it selects (one per
        dimension it covers); anything else as it is."""
        if not (isinstance(index, torch.Tensor)
                and not isinstance(index, FakeTensor)
                and index.dtype in (torch.bool, torch.uint8)):
            return [index]
        with unset_fake_temporarily():
            return list(index.nonzero().unbind(1))

    def _untraceable(self, func, error) -> UntraceableModelError:
        _, layer, name, in_module = self.attribution.place()
        where = f'module {name} ({layer})' if name else \
            f'the model ({layer})' if in_module else \
            'code outside the model\'s modules'
        why = {
            DataDependentOutputException: 'its result depends on the values '
            'of a network output',
            DynamicOutputShapeException: 'the size of its output depends on '
            'the values of a network output',
            UnsupportedOperatorException: 'it has no fake (meta) '
            'implementation',
        }[type(error)]
        return UntraceableModelError(
            f'{where} calls {func} during the {self.attribution.phase} '
            f'phase, which cannot run under fake tensors: {why}. The '
            'estimate needs every shape to follow from the input size; give '
            'this module a stand-in in mmvim.analysis.memory_stand_ins (real '
            'values of the size its config allows) or a fake implementation '
            'for the operator.')


# --- building the model, the batch and the optimizer ----------------------


def load_config(settings: EstimateSettings):
    """The config with ``cfg_options`` merged."""
    from mmengine.config import Config
    cfg = Config.fromfile(settings.config)
    if settings.cfg_options:
        cfg.merge_from_dict(settings.cfg_options)
    return cfg


def _pipeline_step(pipeline, type_name: str) -> Optional[dict]:
    for step in pipeline or ():
        if step.get('type') == type_name:
            return step
    return None


def default_input_shape(cfg, mode: str) -> Tuple[int, int]:
    """(H, W) of one batch image: the padded or cropped training size; for
    test the largest image the test resize gives (with a padded size, that
    size)."""
    if mode == 'train':
        size = cfg.model.get('data_preprocessor', {}).get('size')
        pad = _pipeline_step(cfg.get('train_pipeline'), 'Pad')
        crop = _pipeline_step(cfg.get('train_pipeline'), 'RandomCrop')
        size = size or (pad or {}).get('size') or (crop or {}).get(
            'crop_size')
        if size is None:
            raise ValueError('The config has no training crop or pad size; '
                             'give the input size (--shape H W).')
        # mmseg's crop sizes are (h, w), mmdet's Pad sizes (w, h).
        return tuple(size) if pad is None else tuple(size)[::-1]
    pipeline = cfg.get('test_pipeline')
    pad = _pipeline_step(pipeline, 'Pad')
    if pad is not None and pad.get('size'):
        return tuple(pad['size'])[::-1]
    resize = _pipeline_step(pipeline, 'Resize')
    if resize is None or not resize.get('scale'):
        raise ValueError('The config\'s test pipeline has no Resize scale; '
                         'give the input size (--shape H W).')
    # keep_ratio fits the image inside (long, short): at most short x long.
    long_side, short_side = max(resize['scale']), min(resize['scale'])
    return (short_side, long_side)


def default_batch_size(cfg, mode: str) -> int:
    loader = cfg.get('train_dataloader' if mode == 'train' else
                     'test_dataloader') or {}
    return loader.get('batch_size', 1)


def _fake_parameters(model: torch.nn.Module, fake_mode: FakeTensorMode):
    """Replace the model's parameters and buffers by fake ones."""
    fakes = {}

    def fake(tensor):
        if id(tensor) not in fakes:
            value = fake_mode.from_tensor(tensor.detach())
            if isinstance(tensor, torch.nn.Parameter):
                value = torch.nn.Parameter(value, tensor.requires_grad)
            fakes[id(tensor)] = value
        return fakes[id(tensor)]

    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is not None:
                    tensors[name] = fake(tensor)


def _uses_sync_bn(config) -> bool:
    """Whether a (model) config anywhere asks for SyncBN."""
    if isinstance(config, dict):
        return config.get('type') in ('SyncBN', 'MMSyncBN') or any(
            _uses_sync_bn(value) for value in config.values())
    if isinstance(config, (list, tuple)):
        return any(_uses_sync_bn(value) for value in config)
    return False


@contextlib.contextmanager
def _one_value_per_channel_allowed() -> Iterator[None]:
    """BatchNorm in training refuses a single value per channel (one image
    of a 1x1 map, UperNet's pyramid pooling at batch 1); SyncBN, which it
    stands for here, normalises over every GPU's values and has no such
    limit. Inside, such a BatchNorm normalises with its running statistics
    (what it keeps differs by two vectors of its channels)."""
    import torch.nn.functional as F
    batch_norm = F.batch_norm

    def any_batch_norm(input, running_mean, running_var, weight=None,
                       bias=None, training=False, momentum=0.1, eps=1e-5):
        if training and input.numel() == input.shape[1] and \
                running_mean is not None:
            training = False
        return batch_norm(input, running_mean, running_var, weight, bias,
                          training, momentum, eps)

    F.batch_norm = any_batch_norm
    try:
        yield
    finally:
        F.batch_norm = batch_norm


def _build_optimizer(model, cfg, device: str):
    """The config's optimizer (its param groups, lr and weight decay per
    layer) as torch.optim runs it on ``device``: foreach on a GPU."""
    from mmengine.optim import build_optim_wrapper
    wrapper_cfg = cfg.optim_wrapper.copy()
    # AmpOptimWrapper asserts a GPU; autocast is applied separately.
    for key in ('type', 'loss_scale', 'dtype'):
        wrapper_cfg.pop(key, None)
    wrapper_cfg.type = 'OptimWrapper'
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    if device == 'cuda':
        for group in wrapper.optimizer.param_groups:
            group['foreach'] = True
    return wrapper


def _parts(model) -> Dict[int, str]:
    """id(parameter or buffer) -> the model part it belongs to."""
    owner = {}
    for name, tensor in list(model.named_parameters()) + list(
            model.named_buffers()):
        owner.setdefault(id(tensor), name.split('.')[0])
    return owner


class _Step:
    """The model, its batch and optimizer, and one counted step: under fake
    tensors (``fake_mode`` given: an estimate) or for real on the CPU."""

    def __init__(self, settings: EstimateSettings, cfg, scope: str,
                 model, fake_mode: Optional[FakeTensorMode]):
        self.settings, self.cfg, self.scope = settings, cfg, scope
        self.model, self.fake_mode = model, fake_mode
        self.attribution = _Attribution(model)
        self.memory = LiveMemory()
        self.phase_peaks: Dict[str, int] = {}
        self.owner = _parts(model)
        self.allocator: Dict[str, int] = {}

    def register(self, tensors, kind: str, part: Optional[str] = None):
        for value in tree_leaves(tensors):
            if isinstance(value, torch.Tensor):
                self.memory.add(value.untyped_storage(),
                                (part or self.owner.get(id(value), 'other'),
                                 kind, '-'))

    @contextlib.contextmanager
    def tensors(self) -> Iterator[None]:
        """Where the step's tensors are made: fake ones, with real values
        where they steer the step; or real ones."""
        if self.fake_mode is None:
            yield
            return
        with self.fake_mode, _RealValues(self.attribution):
            yield

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.attribution.phase = name
        self.memory.window_peak = self.memory.current
        try:
            yield
        finally:
            self.phase_peaks[name] = self.memory.window_peak

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count and attribute every allocation inside the block; in a real
        run also what the allocator hands out (``self.allocator``: its peak
        counted from what the tracker counts alive at the start)."""
        start = self.memory.current
        allocator = allocator_counts() if self.fake_mode is None else \
            contextlib.nullcontext({})
        with allocator as counts, self.tensors(), \
                StorageTracker(self.memory, self.attribution.label), \
                _LabelGraph(self.attribution):
            yield
        if counts:
            self.allocator = dict(peak=start + counts['peak'],
                                  final=start + counts['final'])


def _batch(step: _Step, batch: int, shape: Tuple[int, int], train: bool):
    """What the data loader hands the data preprocessor: uint8 images and
    data samples whose targets are real (they steer the step: ignored
    pixels, boxes to assign; mmdet's masks stay numpy arrays)."""
    from .config_models import synthetic_data_samples
    samples = synthetic_data_samples(step.scope, batch, shape, 'cpu',
                                     with_targets=train)
    with step.fake_mode or contextlib.nullcontext():
        images = [torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
                  for _ in range(batch)]
    step.register((images, [s.to_dict() for s in samples]), 'inputs',
                  'inputs')
    return dict(inputs=images, data_samples=samples)


def _autocast(settings: EstimateSettings):
    if not settings.amp:
        return contextlib.nullcontext()
    if settings.device == 'cuda':
        return cuda_autocast(torch.bfloat16)
    return torch.autocast('cpu', dtype=torch.bfloat16)


@contextlib.contextmanager
def _quiet_mmengine() -> Iterator[None]:
    """mmengine's logger at WARNING (the optimizer constructor logs every
    parameter group)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        yield
    finally:
        logger.setLevel(level)


def _train(step: _Step, data) -> None:
    """Forward (with the data preprocessor), backward, optimizer step: what
    mmengine's train_step does, with the AdamW moments already there as in
    every step after the first."""
    settings, model = step.settings, step.model
    with _quiet_mmengine():
        wrapper = _build_optimizer(model, step.cfg, settings.device)
    optimizer = wrapper.optimizer
    params = [p for group in optimizer.param_groups for p in group['params']]
    with step.tensors():
        for param in params:
            param.grad = torch.zeros_like(param)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for param in params:
        step.register([v for v in optimizer.state[param].values()
                       if isinstance(v, torch.Tensor) and v.dim()],
                      'optimizer states', step.owner.get(id(param)))
    if settings.data_parallel:
        step.memory.add_constant(
            sum(p.numel() * p.element_size() for p in params),
            ('ddp', 'ddp buckets', '-'))
    for param in params:
        param.register_post_accumulate_grad_hook(
            lambda p: step.memory.regroup(
                p.grad.untyped_storage(),
                (step.owner.get(id(p), 'other'), 'gradients', '-')))
    clip = dict(getattr(wrapper, 'clip_grad_kwargs', None) or {})
    clip_kind = clip.pop('type', 'norm')
    model.train()
    with step.counting():
        with step.phase('forward'), _autocast(settings):
            inputs = model.data_preprocessor(data, True)
            losses = model(**inputs, mode='loss')
        loss, _ = model.parse_losses(losses)
        del inputs, losses
        with step.phase('backward'):
            loss.backward()
        del loss
        with step.phase('optimizer'):
            if clip:
                # What mmengine's wrapper calls, without logging the norm.
                getattr(torch.nn.utils, f'clip_grad_{clip_kind}_')(params,
                                                                  **clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def _test(step: _Step, data) -> None:
    """What mmengine's test_step does: preprocess, predict (slide or whole
    as the config says; boxes and masks pasted at the image size)."""
    step.model.eval()
    with step.counting(), torch.no_grad(), step.phase('forward'), \
            _autocast(step.settings):
        step.model.test_step(data)


def _run(settings: EstimateSettings, fake: bool) -> MemoryEstimate:
    from .config_models import build_config_model
    if settings.mode not in MODES or settings.device not in DEVICES:
        raise ValueError(f'mode must be one of {MODES} and device one of '
                         f'{DEVICES}.')
    if not fake and settings.device != 'cpu':
        raise ValueError('Only a CPU step can be measured here.')
    cfg = load_config(settings)
    batch = settings.batch_per_gpu or default_batch_size(cfg, settings.mode)
    shape = tuple(settings.input_shape or default_input_shape(
        cfg, settings.mode))
    backend = settings.ops_backend or default_ops_backend(settings.device)
    if fake:
        ops = ops_for_tracing(backend)
    else:
        import mmvim.ops
        ops = mmvim.ops.use_backend(backend)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model, scope = build_config_model(cfg)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else None
    if fake:
        _fake_parameters(model, fake_mode)
    step = _Step(settings, cfg, scope, model, fake_mode)
    step.register(list(model.parameters()) + list(model.buffers()),
                  'weights')
    data = _batch(step, batch, shape, settings.mode == 'train')
    sync_bn = _one_value_per_channel_allowed() if _uses_sync_bn(
        cfg.model) and settings.data_parallel else contextlib.nullcontext()
    with ops, stand_ins(scope), sync_bn:
        (_train if settings.mode == 'train' else _test)(step, data)
    backbone = cfg.model.get('backbone', {})
    return MemoryEstimate(
        peak_bytes=step.memory.peak,
        at_peak=dict(step.memory.peak_by_group),
        phase_peaks=step.phase_peaks,
        settings=dict(
            asdict(settings), batch_per_gpu=batch, input_shape=list(shape),
            ops_backend=backend,
            with_cp=bool(backbone.get('with_cp', False)), scope=scope,
            counted='fake tensors' if fake else 'a real step on this CPU'),
        allocator=step.allocator)


def estimate_memory(settings: EstimateSettings) -> MemoryEstimate:
    """The peak memory of one step of ``settings.config``'s model, under
    fake tensors."""
    return _run(settings, fake=True)


def measure_memory(settings: EstimateSettings) -> MemoryEstimate:
    """The same step run for real on this CPU (``settings.device`` 'cpu'),
    counted the same way; ``allocator`` holds what the CPU allocator handed
    out (its peak includes operators' own scratch)."""
    return _run(settings, fake=False)
