# UperNet + Vim-B on ADE20K. The Vim paper reports no segmentation result for
# Vim-B and the reference has no recipe for it: this follows Vim-S, widening
# UperNet to the backbone as the tiny and small recipes do.
_base_ = ['./upernet_vim_small.py']
embed_dims = 768
checkpoint = 'checkpoints/vim_b_midclstok_81p9acc.pth'
model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(embed_dim=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims))
