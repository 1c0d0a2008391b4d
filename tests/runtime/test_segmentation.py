"""Segmentation labels of large pictures without full-size logits: the
same labels as mmseg's inference_model, from any number of classes
upsampled at a time."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from PIL import Image

from mmvim.runtime import segmentation
from mmvim.runtime.segmentation import predict_segmentation, upsampled_argmax

TINY_CONFIG = Path(__file__).parents[1] / 'data/configs/tiny_upernet_vim.py'


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('per_call', [1, 3, 8])
def test_chunked_argmax_gives_the_labels_of_the_full_tensor(
        monkeypatch, align_corners, per_call):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 150, 24, 32, generator=generator)
    # exact ties across chunk borders: argmax keeps the lower class
    logits[:, 77] = logits[:, 3]
    logits[:, 149] = logits[:, 40]
    size = (250, 330)
    full = F.interpolate(logits, size, mode='bilinear',
                         align_corners=align_corners).argmax(1)
    # per_call classes at a time, the last call taking what is left
    monkeypatch.setattr(segmentation, 'CHUNK_BYTES',
                        per_call * 250 * 330 * 4)
    calls = []
    interpolate = F.interpolate
    monkeypatch.setattr(
        segmentation.F, 'interpolate',
        lambda part, *args, **kwargs: calls.append(part.shape[1]) or
        interpolate(part, *args, **kwargs))
    labels = upsampled_argmax(logits, size, align_corners)
    assert calls == [per_call] * (150 // per_call) + (
        [150 % per_call] if 150 % per_call else [])
    assert labels.shape == (1, 250, 330) and labels.dtype == torch.uint8
    assert torch.equal(labels.long(), full)


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_same_labels_as_inference_model(tmp_path, monkeypatch, mode):
    from mmseg.apis import inference_model, init_model

    import mmvim  # noqa: F401  registers VisionMamba
    monkeypatch.setenv('TINY_ADE20K_ROOT', str(tmp_path))
    cfg = Config.fromfile(TINY_CONFIG)
    if mode == 'slide':
        cfg.model.test_cfg = dict(mode='slide', crop_size=(32, 32),
                                  stride=(21, 21))
    cfg.test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(64, 48), keep_ratio=True),
        dict(type='PackSegInputs'),
    ]
    torch.manual_seed(0)
    model = init_model(cfg, None, device='cpu')
    picture = tmp_path / 'picture.png'
    Image.fromarray(np.random.default_rng(0).integers(
        0, 255, (150, 210, 3), dtype=np.uint8)).save(picture)

    expected = inference_model(model, str(picture))
    monkeypatch.setattr(segmentation, 'CHUNK_BYTES', 16 * 150 * 210 * 4)
    result = predict_segmentation(model, str(picture))
    assert 'seg_logits' not in result
    assert result.pred_sem_seg.shape == (150, 210)
    assert torch.equal(result.pred_sem_seg.data.long(),
                       expected.pred_sem_seg.data)
