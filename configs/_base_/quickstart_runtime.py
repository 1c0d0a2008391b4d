# What both quickstarts (configs/ade20k/quickstart_upernet_vim_tiny_toy.py,
# configs/coco/quickstart_cascade_mask_rcnn_vim_tiny_toy.py) add to the full
# config they shrink. mmengine refuses a key that two bases of one config
# both set, so only keys the full configs leave unset live here.
randomness = dict(seed=0)  # the same initial weights, hence figures, each run
