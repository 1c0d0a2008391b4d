# Quickstart: the Vim Cascade Mask R-CNN of cascade_mask_rcnn_vim_tiny.py,
# shrunk to train from scratch on 2 CPU cores in minutes, on the generated
# toy COCO set (circles, squares, triangles):
#   python tools/dataset_converters/make_toy_coco.py data/toy_coco
#   python tools/train.py \
#       configs/coco/quickstart_cascade_mask_rcnn_vim_tiny_toy.py
# or all steps, with AP before and after training: tools/demo/quickstart_det.py
#
# Same model types, norms (LayerNorm) and losses as the real config; what is
# smaller: the backbone (4 layers of 64 channels, no pretrained checkpoint),
# the pyramid and head widths (64 channels instead of 256), the number of
# proposals and sampled RoIs, the images (160x128) and the schedule (400
# iterations of 2 pictures). What differs for the toy objects' sizes and
# for training from scratch says why beside it, with what it measured
# (tools/demo/quickstart_det.py, box AP on the toy val split, seed 0).
_base_ = [
    './cascade_mask_rcnn_vim_tiny.py', '../_base_/quickstart_runtime.py'
]

data_root = 'data/toy_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
num_classes = len(metainfo['classes'])
image_size = (160, 128)  # (width, height), as mmdet's transforms take it
embed_dims = 64
num_layers = 4
channels = 64

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True, embed_dims=embed_dims, num_layers=num_layers),
        img_size=image_size[::-1],
        drop_path_rate=0.0,
        init_cfg=None),
    neck=dict(in_channels=embed_dims, out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        # Which pyramid level a RoI is pooled from: mmdet's finest_scale 56
        # sends every toy object (16-108 pixels across after the jitter) to
        # the stride-4 level, made by two deconvolutions from 16 channels;
        # 14 pools 28-56 pixel objects at stride 8 and 56-112 at stride 16,
        # the backbone's own map, the level 56 gives COCO objects of 224-448
        # pixels in 1024x1024 pictures. 400 iterations at lr 1e-3: box AP
        # 0.525 -> 0.552, AP50 0.76 -> 0.99.
        bbox_roi_extractor=dict(out_channels=channels, finest_scale=14),
        bbox_head=[
            dict(head, in_channels=channels, conv_out_channels=channels,
                 fc_out_channels=256, num_classes=num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=channels, finest_scale=14),
        mask_head=dict(
            in_channels=channels, conv_out_channels=channels,
            num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        # 32 RoIs per picture and stage, half of them positive (the real
        # config: 512, a quarter), so the box heads see objects often.
        rcnn=[
            dict(stage,
                 sampler=dict(stage.sampler, num=32, pos_fraction=0.5))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

# LSJ in miniature: the base's pipelines with the toy image size. The toy
# objects are 30-72 pixels wide, so the resize range is narrower than COCO's
# 0.1-2.0 to keep them within the anchors'.
toy_sizes = dict(
    RandomResize=dict(scale=image_size, ratio_range=(0.75, 1.5)),
    RandomCrop=dict(crop_size=image_size),
    Resize=dict(scale=image_size),
    Pad=dict(size=image_size))
train_pipeline, test_pipeline = (
    [dict(step, **toy_sizes.get(step['type'], {})) for step in pipeline]
    for pipeline in (_base_.train_pipeline, _base_.test_pipeline))
# The toy set's split `name`: its annotations, pictures and pipeline. No
# worker processes: on 2 cores they cost more than the small images do.
train_dataloader, val_dataloader = (
    dict(
        num_workers=0,
        persistent_workers=False,
        dataset=dict(
            data_root=data_root,
            metainfo=metainfo,
            ann_file=f'annotations/instances_{name}.json',
            data_prefix=dict(img=f'{name}/'),
            pipeline=pipeline))
    for name, pipeline in (('train', train_pipeline), ('val', test_pipeline)))
train_dataloader.update(batch_size=2)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# From scratch, so a higher lr than the recipe's 1e-4 at batch 64 and no
# layer-wise decay (nothing pretrained to preserve); the warm-up and the two
# lr steps keep the recipe's shape (at 89% and 96% of the run). After 500
# iterations (lr steps at 400 and 450), box AP at lr 2e-3 / 1e-3 / 5e-4 /
# 2.5e-4: 0.50 / 0.61 / 0.66 / 0.65 (1e-3: steps at 480 and 540 of 600). 400
# iterations: 0.59 box AP, in 5.2 minutes of `make demo-det` on a 2-core
# machine shared with other work; 500 took 6.5.
max_iters = 400
optim_wrapper = dict(
    optimizer=dict(lr=5e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=50),
    dict(_base_.param_scheduler[1], end=max_iters,
         milestones=[round(max_iters * step / _base_.max_iters)
                     for step in _base_.param_scheduler[1].milestones]),
]
# Validation (16 pictures, a few seconds) every 100 iterations: the curves
# show where AP stops rising.
train_cfg = dict(max_iters=max_iters, val_interval=100)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters))
