# COCO 2017 instances with ViTDet's large-scale jitter (LSJ) at 1024x1024:
# resize by 0.1-2.0 of 1024 (aspect kept), crop a random 1024x1024 window
# (all of the image when smaller), pad to 1024x1024.
# Data root, annotation files and CocoMetric (bbox + segm) come from mmdet.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

image_size = (1024, 1024)
# Padding colour of the crops and test images (mmdet's ViTDet value).
pad_val = dict(img=(114, 114, 114))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=pad_val),
    dict(type='PackDetInputs')
]
# Longer side to 1024 and padded to the training size, so the backbone reads
# the 64x64 grid it was fine-tuned on.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=pad_val),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    num_workers=4,
    # Every crop is square after padding: grouping by aspect ratio buys
    # nothing, so the plain batch sampler is used.
    batch_sampler=None,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
