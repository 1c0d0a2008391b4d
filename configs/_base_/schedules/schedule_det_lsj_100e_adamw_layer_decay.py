# The ViTDet / Vim COCO schedule: 100 epochs of LSJ = 184,375 iterations at
# batch 64 (x 64 images / 118k per epoch), lr x0.1 at 163,889 (88 epochs) and
# 177,546 (96 epochs) after a 250-iteration linear warm-up; AdamW lr 1e-4,
# weight decay 0.1, layer-wise lr decay 0.837 over the 24 Vim layers.
_base_ = ['./adamw_layer_decay.py']
max_iters = 184375
# COCO val every 5000 iterations (37 times a run).
val_interval = 5000
# Unlike the reference segmentation code (whose rule looked for `blocks.N`,
# see reference_name_bug), the reference detector decayed the lr of
# `layers.N` and exempted pos_embed from weight decay, as ours does.
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.1),
    paramwise_cfg=dict(layer_decay_rate=0.837))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=250),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[163889, 177546],
        gamma=0.1)
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=val_interval)
# The lr is for 64 images per iteration; with another total batch,
# `--cfg-options auto_scale_lr.enable=True` scales it linearly.
auto_scale_lr = dict(enable=False, base_batch_size=64)
