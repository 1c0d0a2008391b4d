# Cascade Mask R-CNN + Vim-S on COCO 2017: the Vim-Ti recipe (see
# cascade_mask_rcnn_vim_tiny.py) with the Vim-S backbone, as the reference's
# Vim-S detector config. The paper reports no Vim-S detection result.
_base_ = './cascade_mask_rcnn_vim_tiny.py'
embed_dims = 384
# Another path: --cfg-options model.backbone.init_cfg.checkpoint=PATH
checkpoint = 'checkpoints/vim_s_midclstok_80p5acc.pth'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=embed_dims))
