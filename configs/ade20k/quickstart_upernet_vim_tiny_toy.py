# Quickstart (`make demo`): the upernet_vim_tiny.py recipe trained from scratch
# in a few minutes on a CPU, on the toy ADE20K-layout dataset that
# tools/dataset_converters/make_toy_ade20k.py writes to data/toy_ade20k.
#
# What changes, and why:
# - the toy data (5 classes, 160x120 pictures), crops scaled down to 128x128;
# - a 4-layer, 64-wide Vim instead of Vim-Ti's 24 x 192: on one CPU thread a
#   training iteration (batch 8) takes about 0.8 s, against about 11 s for
#   UperNet + Vim-Ti, too slow to learn anything in a demo; UperNet narrows
#   with it, as in the real recipe (channels = width);
# - BN instead of SyncBN; no pretrained checkpoint, hence a larger lr (1e-3,
#   30-iteration warm-up); 300 iterations, logging every 10, one evaluation
#   at the end.
_base_ = ['./upernet_vim_tiny.py']

data_root = 'data/toy_ade20k'
crop_size = (128, 128)
# The names of make_toy_ade20k.CLASSES; the mask colours contrast with the
# colours of the scene, so a painted prediction stands out.
metainfo = dict(
    classes=('sky', 'grass', 'water', 'sun', 'house'),
    palette=[[128, 0, 255], [255, 140, 0], [255, 0, 160], [0, 90, 255],
             [0, 230, 120]])
num_classes = 5
embed_dims = 64
num_layers = 4
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        # _delete_: replaces the base's arch='tiny' string.
        arch=dict(_delete_=True, embed_dims=embed_dims, num_layers=num_layers),
        img_size=crop_size,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),
    neck=dict(embed_dim=embed_dims, norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=[embed_dims] * 4,
        channels=embed_dims,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=embed_dims,
        channels=embed_dims,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    test_cfg=dict(crop_size=crop_size, stride=(85, 85)))

# ADE20K's pipelines, scaled from 512-pixel to 128-pixel crops.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(512, 128),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
toy_dataset = dict(
    # ADE20KDataset only accepts (subsets of) the 150 ADE20K class names.
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(**toy_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(**toy_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

randomness = dict(seed=0)  # the same initial weights, hence figures, each run
max_iters = 300
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(num_layers=num_layers))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=0,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, save_best=None))
