# Cascade Mask R-CNN + Vim-Ti on COCO 2017 (ViTDet recipe: simple feature
# pyramid, LSJ 1024x1024, 100 epochs = 184,375 iterations at batch 64):
# 45.7 box AP / 39.2 mask AP in the Vim paper. Data: data/coco (mmdet's
# layout); backbone: the released ImageNet checkpoint, see docs/detection.md.
#
# Batch 64 = 16 GPUs x 4 images (the reference launch script ran 4 GPUs x
# 16). Other splits keep 64 (e.g. 8 x 8 or 32 x 2): tools/dist_train.sh
# CONFIG GPUS --cfg-options train_dataloader.batch_size=N. Peak memory per
# GPU in fp32 without / with with_cp, computed by
# tools/analysis_tools/estimate_memory.py (docs/memory.md; not measured on
# a GPU): 2 images 9.2 / 6.3 GiB, 4 images 16.9 / 11.1 GiB, 8 images
# 32.6 / 20.9 GiB; a card needs that + 10% + 1 GiB. Mixed precision:
# tools/train.py --amp (bfloat16 where the GPU has it: float16 gave NaN
# losses with Vim).
_base_ = [
    '../_base_/models/cascade_mask_rcnn_vim_sfp.py',
    '../_base_/datasets/coco_instance_lsj_1024.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/schedules/schedule_det_lsj_100e_adamw_layer_decay.py',
]
# Another path: --cfg-options model.backbone.init_cfg.checkpoint=PATH
checkpoint = 'checkpoints/vim_t_midclstok_76p1acc.pth'
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
train_dataloader = dict(batch_size=4)
# Iteration-based logging and checkpoints (mmdet's runtime counts epochs).
# Every checkpoint is kept (no max_keep_ckpts, which deletes older ones): one
# holds the weights and AdamW's moments, about 0.8 GB for Vim-Ti and 1 GB for
# Vim-S, so one every 10,000 iterations fills 15-19 GB over the run.
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=10000, save_last=True))
log_processor = dict(by_epoch=False)
