# The optimizer of both Vim recipes: AdamW with layer-wise lr decay, the
# decay rate per layer applied by mmvim's constructor, which reads the depth
# (24 layers for the released models) from the backbone. Each schedule
# states its lr, weight decay and layer decay rate.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', betas=(0.9, 0.999)),
    constructor='VimLayerDecayOptimWrapperConstructor',
    # True reproduces the reference segmentation run's name matching (see
    # schedule_60k_adamw_layer_decay.py).
    paramwise_cfg=dict(reference_name_bug=False))
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
