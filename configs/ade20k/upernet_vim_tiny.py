# UperNet + Vim-Ti on ADE20K (512x512 crops, 60k iterations, 4 GPUs x 8
# images): 41.0 mIoU in the Vim paper. Data: data/ade/ADEChallengeData2016;
# backbone: the released ImageNet checkpoint, see docs/segmentation.md.
_base_ = [
    '../_base_/models/upernet_vim.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_60k_adamw_layer_decay.py',
]
crop_size = (512, 512)
# Another path: --cfg-options model.backbone.init_cfg.checkpoint=PATH
checkpoint = 'checkpoints/vim_t_midclstok_76p1acc.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
# lr 2e-4 and weight decay 0.1: the values of the reference Vim-Ti run (its
# launch script overrides the config's 1e-4 / 0.05).
optim_wrapper = dict(
    optimizer=dict(lr=2e-4, weight_decay=0.1),
    paramwise_cfg=dict(layer_decay_rate=0.92))
train_dataloader = dict(batch_size=8)
