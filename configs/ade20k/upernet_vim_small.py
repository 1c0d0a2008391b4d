# UperNet + Vim-S on ADE20K (512x512 crops, 60k iterations, 4 GPUs x 8
# images): 44.9 mIoU in the Vim paper.
_base_ = ['./upernet_vim_tiny.py']
embed_dims = 384
checkpoint = 'checkpoints/vim_s_midclstok_80p5acc.pth'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(embed_dim=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims))
# lr 1e-4, weight decay 0.05, layer decay 0.95: the reference Vim-S run (its
# launch script overrides the config's layer decay of 0.92).
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.95))
