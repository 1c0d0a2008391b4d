"""Segmentation labels and painted pictures of any size, in bounded memory.

mmseg's ``inference_model`` upsamples the logits of every class to the
picture's size before taking the arg-max, and keeps them in the result: for
a 4000x3000 picture and ADE20K's 150 classes, 7.2 GB of float32; its
visualizer then blends the picture in float64 (8 bytes per channel and
pixel, twice). Here:

* :func:`upsampled_argmax` upsamples as many classes at a time as fit in
  :data:`CHUNK_BYTES` (one at least) with the same ``F.interpolate`` call,
  keeping the best value so far and the best class (in the smallest integer
  type that holds the classes): about 6 bytes per pixel besides one
  upsampled class. Ties keep the lower class, as ``argmax``: the labels are
  those of the full tensor (tests/runtime/test_segmentation.py, which also
  checks every chunk size gives the full tensor's values).
* :func:`paint_segmentation` blends the labels' colours over the picture in
  bands of :data:`BAND_BYTES`, with the arithmetic of mmseg's
  ``SegLocalVisualizer`` (so the same picture), into one uint8 array.
"""
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .input_size import check_network_input

# Upsampled logits held at once, in bytes (at least one class is).
CHUNK_BYTES = 256 << 20
# float64 pixels of the picture blended at once, in bytes.
BAND_BYTES = 64 << 20


def label_dtype(classes: int) -> torch.dtype:
    """The smallest integer type that holds class indices below
    ``classes``."""
    if classes <= 256:
        return torch.uint8
    return torch.int16 if classes <= 32768 else torch.int64


def upsampled_argmax(logits: torch.Tensor, size: Sequence[int],
                     align_corners: bool) -> torch.Tensor:
    """``F.interpolate(logits, size, 'bilinear').argmax(1)`` for one image
    (``logits`` of shape (1, C, h, w)), holding at most :data:`CHUNK_BYTES`
    of upsampled logits (or one class) at a time.

    Returns:
        labels of shape (1, H, W), of :func:`label_dtype`.
    """
    classes = logits.shape[1]
    height, width = size
    plane_bytes = height * width * logits.element_size()
    chunk = min(classes, max(1, CHUNK_BYTES // plane_bytes))
    best_value = torch.full((height, width), float('-inf'),
                            dtype=logits.dtype)
    best_index = torch.zeros((height, width), dtype=label_dtype(classes))
    better = torch.empty((height, width), dtype=torch.bool)
    for first in range(0, classes, chunk):
        upsampled = F.interpolate(
            logits[:, first:first + chunk].contiguous(),
            size=(height, width),
            mode='bilinear',
            align_corners=align_corners)[0]
        for offset, plane in enumerate(upsampled):
            # strictly greater: on a tie the lower class stays, as in argmax
            torch.gt(plane, best_value, out=better)
            torch.maximum(best_value, plane, out=best_value)
            best_index.masked_fill_(better, first + offset)
        del upsampled
    return best_index.unsqueeze(0)


def paint_segmentation(picture: np.ndarray, labels: torch.Tensor,
                       palette: Sequence[Sequence[int]],
                       opacity: float) -> np.ndarray:
    """``picture`` (H, W, 3 uint8) with each pixel's class colour blended
    in at ``opacity``, as mmseg's SegLocalVisualizer draws a prediction
    (float64 blend, truncated to uint8), a band of rows at a time.

    Args:
        labels: (1, H, W) or (H, W) class indices.
        palette: an RGB colour per class, in the picture's channel order.
    """
    labels = labels.reshape(labels.shape[-2:]).numpy()
    colours = np.asarray(palette, dtype=np.uint8)
    height, width = labels.shape
    painted = np.empty_like(picture)
    rows = max(1, BAND_BYTES // (width * 3 * 8))
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        painted[band] = (picture[band] * (1 - opacity) +
                         colours[labels[band]] * opacity).astype(np.uint8)
    return painted


def predict_segmentation(model, image_path: str, smallest_side: int = 0):
    """What ``mmseg.apis.inference_model(model, image_path)`` returns, but
    with ``pred_sem_seg`` only (no full-size ``seg_logits``), computed by
    :func:`upsampled_argmax`: same labels, a fraction of the memory.

    Raises:
        RunSetupError: the picture reaches the network (after the test
            pipeline) with a side below ``smallest_side`` pixels.
    """
    from mmengine.structures import PixelData
    from mmseg.apis.utils import _preprare_data

    data, _ = _preprare_data(image_path, model)
    check_network_input(image_path, data['data_samples'][0].metainfo,
                        smallest_side)
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
