# The real UperNet + Vim-Ti config shrunk for CPU tests of the tools: a
# 4-layer, 16-channel Vim on 32x32 toy pictures, 4 iterations at a constant
# lr. Data: tools/dataset_converters/make_toy_ade20k.py ROOT --size 32 32,
# found through the environment variable TINY_ADE20K_ROOT.
_base_ = ['../../../configs/ade20k/upernet_vim_tiny.py']
data_root = '{{$TINY_ADE20K_ROOT:data/toy_ade20k}}'
crop_size = (32, 32)
dims = 16
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=dims, num_layers=4),
        img_size=32,
        out_indices=(0, 1, 2, 3),
        # The real config's final_norm=False leaves norm_f unused, which
        # DistributedDataParallel refuses; here the last output uses it.
        final_norm=True,
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(embed_dim=dims),
    decode_head=dict(in_channels=[dims] * 4, channels=dims),
    auxiliary_head=dict(in_channels=dims, channels=dims),
    test_cfg=dict(_delete_=True, mode='whole'))
param_scheduler = None
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# batch 2: the pyramid-pooling BatchNorm sees 1x1 maps and needs 2 values
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=4, val_interval=4)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=4, save_best=None))
