"""Models of whole mmseg / mmdet configs and synthetic batches for them, for
measuring (benchmark) and counting (get_flops) without a dataset."""
import torch


def build_config_model(config):
    """(model, scope): the model of an mmseg / mmdet config (a path or a
    loaded Config), SyncBN as BN."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    import mmvim  # noqa: F401 - registers VisionMamba & co.
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    scope = cfg.get('default_scope', 'mmseg')
    init_default_scope(scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model)), scope


def synthetic_data_samples(scope: str, batch: int, shape: tuple, device,
                           with_targets: bool) -> list:
    """Data samples an mmseg / mmdet model accepts for (batch, 3, *shape)
    inputs; with ground truth when ``with_targets`` (class 0 everywhere,
    valid for any number of classes)."""
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                batch_input_shape=shape, scale_factor=(1., 1.))
    samples = []
    for _ in range(batch):
        if scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            if with_targets:
                sample.gt_sem_seg = PixelData(data=torch.zeros(
                    (1, ) + shape, dtype=torch.long, device=device))
        elif scope == 'mmdet':
            from mmdet.structures import DetDataSample
            sample = DetDataSample(metainfo=meta)
            if with_targets:
                sample.gt_instances = _random_instances(shape, device)
        else:
            raise ValueError(f'Configs of scope {scope!r} are not supported '
                             '(mmseg or mmdet).')
        samples.append(sample)
    return samples


def _random_instances(shape: tuple, device, count: int = 4):
    """A few random boxes of class 0 with their rectangle masks."""
    import numpy as np
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    height, width = shape
    scale = torch.tensor([width, height], dtype=torch.float32)
    corner = torch.rand(count, 2) * scale / 2
    extent = (torch.rand(count, 2) * 3 + 1) * scale / 8
    boxes = torch.cat([corner, corner + extent], dim=1).round()
    masks = np.zeros((count, height, width), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
    return InstanceData(
        bboxes=boxes.to(device),
        labels=torch.zeros(count, dtype=torch.long, device=device),
        masks=BitmapMasks(masks, height, width))
