"""Real values where a step reads the network's own outputs as values, for
estimates under fake tensors (:mod:`mmvim.analysis.memory_estimate`).

A fake tensor has a shape but no values, so code that picks boxes by score
(NMS) or moves boxes by predicted offsets cannot follow it. What comes out
of those places only matters for memory through how many there are, which
the config bounds; the stand-ins give real boxes of that number, chosen for
the worst case a trained detector reaches:

- the RPN's proposals (``rpn_proposal.max_per_img`` per image in training,
  ``rpn.max_per_img`` in test), half of them jittered copies of the ground
  truth boxes, so that every cascade stage samples its full share of
  positives (``num * pos_fraction``) and the mask heads see that many RoIs;
- the boxes refined between cascade stages: the RoIs themselves (zero
  offsets);
- the final detections of a test: ``rcnn.max_per_img`` per image, whose
  masks are then pasted at the image size;
- mmseg's sliding-window inference checks, by value, that its crops cover
  every pixel: the check is answered as it is for any input (it holds).

mmcv's compiled RoIAlign writes into outputs its Python side allocates; on
fake tensors the compiled call is skipped and the allocations stay. What
the stand-ins replace (score sorting, NMS) allocates a few MB and is not
counted.
"""
import contextlib
import contextvars
from typing import Iterator, List, Optional

import torch
from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily
from torch.utils._pytree import tree_leaves


# The value a scalar read from a fake tensor (``.item()``, ``bool()``) is
# taken to have where a stand-in says so; None elsewhere.
ASSUMED_SCALAR: contextvars.ContextVar[Optional[bool]] = \
    contextvars.ContextVar('ASSUMED_SCALAR', default=None)


def _is_fake(*values) -> bool:
    return any(isinstance(v, FakeTensor) for v in tree_leaves(values))


def stand_in_boxes(count: int, image_shape, around=None) -> torch.Tensor:
    """``count`` real (x1, y1, x2, y2) boxes inside ``image_shape`` (h, w):
    the first half jittered copies of the ``around`` boxes (when there are
    any), the rest random."""
    height, width = image_shape[:2]
    generator = torch.Generator().manual_seed(count)
    size = torch.tensor([width, height], dtype=torch.float32)
    with unset_fake_temporarily():
        corner = torch.rand(count, 2, generator=generator) * size * 0.75
        extent = (torch.rand(count, 2, generator=generator) * 0.45 +
                  0.05) * size
        boxes = torch.cat([corner, corner + extent], dim=1)
        if around is not None and len(around):
            near = count // 2
            picked = around[torch.arange(near) % len(around)].float()
            wh = (picked[:, 2:] - picked[:, :2]).repeat(1, 2)
            jitter = (torch.rand(near, 4, generator=generator) - 0.5) * 0.1
            boxes[:near] = picked + jitter * wh
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes


def _instances(boxes: torch.Tensor, with_labels: bool = True):
    from mmengine.structures import InstanceData
    with unset_fake_temporarily():
        results = InstanceData(
            bboxes=boxes, scores=torch.linspace(1, 0, len(boxes)))
        if with_labels:
            results.labels = torch.zeros(len(boxes), dtype=torch.long)
    return results


def _rpn_loss_and_predict(self, x, batch_data_samples, proposal_cfg=None):
    """RPNHead.loss_and_predict with stand-in proposals."""
    from mmdet.models.utils import unpack_gt_instances
    gts, gts_ignore, metas = unpack_gt_instances(batch_data_samples)
    outs = self(x)
    losses = self.loss_by_feat(*outs, gts, metas, gts_ignore)
    # The RoI heads sample from here on: seeded, so that an estimate and a
    # measured step (whose dropout draws numbers the fake one does not)
    # sample the same boxes.
    torch.manual_seed(0)
    cfg = proposal_cfg or self.test_cfg
    return losses, [
        _instances(stand_in_boxes(cfg.max_per_img, meta['img_shape'],
                                  gt.bboxes))
        for gt, meta in zip(gts, metas)
    ]


def _rpn_predict_by_feat(self, cls_scores, bbox_preds, *args,
                         batch_img_metas=None, cfg=None, **kwargs):
    """RPNHead.predict_by_feat (test time): stand-in proposals."""
    cfg = cfg or self.test_cfg
    return [_instances(stand_in_boxes(cfg.max_per_img, meta['img_shape']))
            for meta in batch_img_metas]


def _refine_bboxes(original):

    def refine_bboxes(self, sampling_results, bbox_results,
                      batch_img_metas):
        """BBoxHead.refine_bboxes (between cascade stages in training) with
        zero offsets."""
        zeros = dict(bbox_results)
        with unset_fake_temporarily():
            for key in ('cls_score', 'bbox_pred'):
                zeros[key] = torch.zeros(bbox_results[key].shape,
                                         dtype=bbox_results[key].dtype)
        return original(self, sampling_results, zeros, batch_img_metas)

    return refine_bboxes


def _regress_by_class(self, priors, label, bbox_pred, img_meta):
    """BBoxHead.regress_by_class (between cascade stages in test): zero
    offsets."""
    return priors


def _bbox_predict_by_feat(self, rois, cls_scores, bbox_preds,
                          batch_img_metas, rcnn_test_cfg=None,
                          rescale=False):
    """BBoxHead.predict_by_feat: ``max_per_img`` stand-in detections per
    image, in the original image's coordinates when ``rescale``."""
    return [
        _instances(
            stand_in_boxes(rcnn_test_cfg.max_per_img,
                           meta['ori_shape' if rescale else 'img_shape']))
        for meta in batch_img_metas
    ]


def _slide_inference(original):

    def slide_inference(self, inputs, batch_img_metas):
        """EncoderDecoder.slide_inference, its coverage check answered."""
        token = ASSUMED_SCALAR.set(True)
        try:
            return original(self, inputs, batch_img_metas)
        finally:
            ASSUMED_SCALAR.reset(token)

    return slide_inference


class _SkipOnFake:
    """mmcv's extension module, with each call on fake tensors skipped:
    its ops write into outputs allocated (and counted) before the call."""

    def __init__(self, module, names: List[str]):
        self._module, self._names = module, names

    def __getattr__(self, name):
        function = getattr(self._module, name)
        if name not in self._names:
            return function

        def call(*args, **kwargs):
            if not _is_fake(args, kwargs):
                return function(*args, **kwargs)

        return call


@contextlib.contextmanager
def _patched(owner, name: str, value) -> Iterator[None]:
    """``owner.name = value`` inside the block (an inherited method is
    shadowed, then uncovered again)."""
    missing = object()
    original = owner.__dict__.get(name, missing)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if original is missing:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


@contextlib.contextmanager
def stand_ins(scope: str) -> Iterator[None]:
    """Inside the block, the places of ``scope``'s models that read network
    outputs as values take stand-ins. A real step
    measured to check an estimate runs with them too, so that both count
    the same step."""
    if scope == 'mmseg':
        from mmseg.models.segmentors import EncoderDecoder
        original = EncoderDecoder.slide_inference
        with _patched(EncoderDecoder, 'slide_inference',
                      _slide_inference(original)):
            yield
        return
    import importlib
    roi_align = importlib.import_module('mmcv.ops.roi_align')
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.roi_heads.bbox_heads import BBoxHead
    with contextlib.ExitStack() as stack:
        for owner, name, value in (
                (RPNHead, 'loss_and_predict', _rpn_loss_and_predict),
                (RPNHead, 'predict_by_feat', _rpn_predict_by_feat),
                (BBoxHead, 'refine_bboxes',
                 _refine_bboxes(BBoxHead.refine_bboxes)),
                (BBoxHead, 'regress_by_class', _regress_by_class),
                (BBoxHead, 'predict_by_feat', _bbox_predict_by_feat)):
            stack.enter_context(_patched(owner, name, value))
        stack.enter_context(
            _patched(
                roi_align, 'ext_module',
                _SkipOnFake(roi_align.ext_module,
                            ['roi_align_forward', 'roi_align_backward'])))
        yield
