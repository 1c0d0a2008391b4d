"""The smallest picture a config's Vim model can take, known from the
config before anything is built, so that a tool names a picture or
``--shape`` that is too small instead of failing inside the network."""
import math

from .run_guards import RunSetupError


def smallest_input_side(model_cfg, backbone_only: bool = False) -> int:
    """The smallest input side, in pixels, the model of ``model_cfg`` runs
    on: one patch for its (Vim) backbone alone; for the whole model, enough
    patches for the neck's coarsest level (a 0.5 rescale max-pools the
    patch grid by 2) to keep one."""
    backbone = model_cfg.get('backbone') or {}
    patch, stride = backbone.get('patch_size', 16), backbone.get('stride', 16)
    if backbone_only:
        return patch
    neck = model_cfg.get('neck') or {}
    scales = neck.get('rescales') or neck.get('scale_factors') or (1, )
    return patch + (math.ceil(1 / min(scales)) - 1) * stride


def check_network_input(picture: str, metainfo: dict, side: int) -> None:
    """Raises RunSetupError when the picture reaches the network with a
    side below ``side`` pixels. ``metainfo``: its data sample's after the
    config's test pipeline (``ori_shape``; ``scale_factor`` of a resize,
    else ``img_shape``, which padding may have enlarged)."""
    original_shape = metainfo['ori_shape']
    if metainfo.get('scale_factor') is not None:
        width_scale, height_scale = metainfo['scale_factor'][:2]
        height = round(original_shape[0] * height_scale)
        width = round(original_shape[1] * width_scale)
    else:
        height, width = metainfo['img_shape'][:2]
    if min(height, width) >= side:
        return
    raise RunSetupError(
        f'{picture} ({original_shape[1]}x{original_shape[0]}) reaches the '
        f'model as {width}x{height} after the config\'s test pipeline, '
        f'smaller than the {side} pixels per side it needs: use a larger or '
        'less elongated picture, or a config whose test pipeline resizes it '
        '(the ADE20K and COCO configs do).')
