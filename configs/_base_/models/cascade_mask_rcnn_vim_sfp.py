# Cascade Mask R-CNN on a Vision Mamba backbone, the model of the Vim paper's
# COCO experiments (ViTDet recipe, Vim-Ti sizes; configs/coco/* set the size
# and the data). mmdet's Cascade Mask R-CNN is the starting point; what
# changes is what ViTDet (and the Vim reference, built on it) changes.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmvim'], allow_failed_imports=False)

# LayerNorm over channels wherever ViTDet replaces BatchNorm (mmcv's 'LN'
# would normalise the width axis of a conv map).
norm_cfg = dict(type='LN2d', requires_grad=True)
embed_dims = 192

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionMamba',
        arch='tiny',
        # pos_embed is resized from the 14x14 pre-training grid to 64x64 once,
        # at loading; other input sizes are interpolated at run time.
        img_size=1024,
        patch_size=16,
        stride=16,
        # One map, after the last layer (-1, i.e. 23 of 24 for the released
        # models), stride 16, as in ViTDet.
        out_indices=-1,
        out_type='featmap',
        # The reference detector reads the last layer's residual stream plus
        # its mixer output without the final RMSNorm ('add', norm_f
        # deleted); the neck's LayerNorms normalise it.
        final_norm=False,
        # The reference's Vim-Ti detector started from an unreleased
        # checkpoint without class token (its Vim-S one kept it). The
        # released checkpoints were trained with a middle class token, so it
        # stays where pre-training put it and the blocks see the kind of
        # sequence they learned on (one extra token among 4096).
        with_cls_token=True,
        drop_path_rate=0.1,
        # Gradient checkpointing: each layer scans all 4096 tokens of a
        # 1024x1024 input; set True (--cfg-options model.backbone.with_cp=True)
        # to trade one more forward pass per layer for memory (Vim-Ti, 4
        # images per GPU: 16.9 -> 11.1 GiB computed, docs/memory.md).
        with_cp=False),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=embed_dims,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=norm_cfg),
    # Two 3x3 convs before the RPN's predictors, as ViTDet's RPN; like there
    # (detectron2's StandardRPNHead) they have no norm, and mmdet's RPNHead
    # has none to offer either.
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        # 4conv1fc box heads with LayerNorm after each conv; class-agnostic
        # regression with ViTDet's per-stage box-delta scales (detectron2
        # weights 10/5, 20/10, 30/15). The stage IoU thresholds 0.5/0.6/0.7,
        # mmdet's loss weights per stage (1, 0.5, 0.25; detectron2 instead
        # scales the gradient of each stage by 1/3) and the losses stay
        # those of mmdet's Cascade Mask R-CNN.
        bbox_head=[
            dict(
                type='Shared4Conv1FCBBoxHead',
                in_channels=256,
                conv_out_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=80,
                norm_cfg=norm_cfg,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=target_stds),
                reg_class_agnostic=True,
                loss_cls=dict(
                    type='CrossEntropyLoss', use_sigmoid=False,
                    loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for target_stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                                [0.033, 0.033, 0.067, 0.067])
        ],
        mask_head=dict(norm_cfg=norm_cfg)))
