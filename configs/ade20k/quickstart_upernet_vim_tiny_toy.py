# Quickstart (`make demo`): the model of upernet_vim_tiny.py, UperNet +
# Vim-Ti unchanged, trained from scratch in a few minutes on a CPU, on the toy
# ADE20K-layout dataset that tools/dataset_converters/make_toy_ade20k.py
# writes to data/toy_ade20k.
#
# Only the data, the crop and the schedule change:
# - data: the toy dataset (5 classes, 160x120 pictures), so 5-class heads;
# - crop: 64x64 (a 4x4 token grid and the class token) from pictures scaled
#   to 64 pixels high, the position embedding sized for it, sliding-window
#   test at the same size. On one CPU thread a training iteration takes
#   about 1.2 s at batch 4; at 128x128 and batch 8 it took about 7 s;
# - schedule: 300 iterations at batch 4, logging every 10, one evaluation at
#   the end; no pretrained checkpoint (nothing to download), hence a larger
#   lr (1e-3) with a 30-iteration warm-up.
# SyncBN stays: mmengine's Runner turns it into BN in a single process.
_base_ = ['./upernet_vim_tiny.py', '../_base_/quickstart_runtime.py']

data_root = 'data/toy_ade20k'
crop_size = (64, 64)
# The names of make_toy_ade20k.CLASSES; the mask colours contrast with the
# colours of the scene, so a painted prediction stands out.
metainfo = dict(
    classes=('sky', 'grass', 'water', 'sun', 'house'),
    palette=[[128, 0, 255], [255, 140, 0], [255, 0, 160], [0, 90, 255],
             [0, 230, 120]])
num_classes = 5
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size, init_cfg=None),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes),
    test_cfg=dict(crop_size=crop_size, stride=(42, 42)))

# ADE20K's pipelines with the sizes scaled from 512-pixel to 64-pixel crops.
toy_sizes = dict(
    RandomResize=dict(scale=(256, 64), ratio_range=(0.75, 1.5)),
    RandomCrop=dict(crop_size=crop_size),
    Resize=dict(scale=(256, 64)))
train_pipeline, test_pipeline = (
    [dict(step, **toy_sizes.get(step['type'], {})) for step in pipeline]
    for pipeline in (_base_.train_pipeline, _base_.test_pipeline))
toy_dataset = dict(
    # ADE20KDataset only accepts (subsets of) the 150 ADE20K class names.
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(**toy_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(**toy_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 300
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
# The recipe's warm-up and poly decay, shortened to the run.
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-3, end=30),
    dict(_base_.param_scheduler[1], end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, save_best=None))
