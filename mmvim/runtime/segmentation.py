"""Segmentation labels of a large picture without its full-size logits.

mmseg's ``inference_model`` upsamples the logits of every class to the
picture's size before taking the arg-max, and keeps them in the result: for
a 4000x3000 picture and ADE20K's 150 classes, 7.2 GB of float32. The labels
need only the running maximum: :func:`upsampled_argmax` upsamples a few
classes at a time with the same ``F.interpolate`` call and keeps the best
so far. Every call takes the same number of classes, at least
:data:`MIN_CLASSES_PER_CALL` (torch's CPU kernel rounds differently for
exactly 3 planes), and ties keep the lower class, as ``argmax``: the labels
are those of the full tensor (tests/runtime/test_segmentation.py).
"""
from typing import Sequence

import torch
import torch.nn.functional as F

# Upsampled logits held at once, in bytes.
CHUNK_BYTES = 256 << 20
# Fewer classes per interpolate call could take another kernel path.
MIN_CLASSES_PER_CALL = 8


def upsampled_argmax(logits: torch.Tensor, size: Sequence[int],
                     align_corners: bool) -> torch.Tensor:
    """``F.interpolate(logits, size, 'bilinear').argmax(1, keepdim=True)``
    for one image (``logits`` of shape (1, C, h, w)), holding at most
    :data:`CHUNK_BYTES` of upsampled logits at a time.

    Returns:
        int64 labels of shape (1, H, W).
    """
    classes = logits.shape[1]
    height, width = size
    chunk = CHUNK_BYTES // (height * width * logits.element_size())
    chunk = min(classes, max(MIN_CLASSES_PER_CALL, chunk))
    best_value = best_index = None
    # The last call overlaps the one before rather than taking fewer
    # classes; classes seen twice cannot win twice (strictly greater).
    starts = list(range(0, classes - chunk, chunk)) + [classes - chunk]
    for first in starts:
        upsampled = F.interpolate(
            logits[:, first:first + chunk].contiguous(),
            size=(height, width),
            mode='bilinear',
            align_corners=align_corners)[0]
        value, index = upsampled.max(dim=0)
        del upsampled
        index += first
        if best_value is None:
            best_value, best_index = value, index
            continue
        # strictly greater: on a tie the lower class stays, as in argmax
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_index = torch.where(better, index, best_index)
    return best_index.unsqueeze(0)


def predict_segmentation(model, image_path: str):
    """What ``mmseg.apis.inference_model(model, image_path)`` returns, but
    with ``pred_sem_seg`` only (no full-size ``seg_logits``), computed by
    :func:`upsampled_argmax`: same labels, a fraction of the memory."""
    from mmengine.structures import PixelData
    from mmseg.apis.utils import _preprare_data

    data, _ = _preprare_data(image_path, model)
    with torch.no_grad():
        data = model.data_preprocessor(data, False)
        sample = data['data_samples'][0]
        logits = model.inference(data['inputs'], [sample.metainfo])
        if logits.shape[1] == 1:  # binary: thresholded sigmoid, one plane
            return model.postprocess_result(logits, [sample])[0]
        # as BaseSegmentor.postprocess_result: padding off, flip undone
        left, right, top, bottom = sample.metainfo.get(
            'img_padding_size', sample.metainfo.get('padding_size',
                                                    [0] * 4))
        height, width = logits.shape[2:]
        logits = logits[:, :, top:height - bottom, left:width - right]
        if sample.metainfo.get('flip'):
            logits = logits.flip(
                dims=(3, ) if sample.metainfo['flip_direction'] ==
                'horizontal' else (2, ))
        labels = upsampled_argmax(logits, sample.metainfo['ori_shape'],
                                  model.align_corners)
    sample.set_data({'pred_sem_seg': PixelData(data=labels)})
    return sample
