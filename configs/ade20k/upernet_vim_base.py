# UperNet + Vim-B on ADE20K. The Vim paper reports no segmentation result for
# Vim-B and the reference has no recipe for it: the structure is tiny's,
# widened to the backbone as the tiny and small recipes do, with the Vim-S
# recipe values (stated here, not inherited through the small config).
_base_ = ['./upernet_vim_tiny.py']
embed_dims = 768
checkpoint = 'checkpoints/vim_b_midclstok_81p9acc.pth'
model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(embed_dim=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims))
# lr 1e-4, weight decay 0.05, layer decay 0.95: the reference Vim-S run's.
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.95))
