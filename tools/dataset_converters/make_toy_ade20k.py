"""Write a small procedurally generated dataset in the ADE20K layout.

It exists so that the segmentation recipe can be trained and evaluated end to
end in minutes on a CPU, without downloading ADE20K. The layout and label
convention are ADE20K's, so the same dataset class and pipelines read it::

    ROOT/images/{training,validation}/toy_00000.jpg
    ROOT/annotations/{training,validation}/toy_00000.png

Annotation value 0 means "unlabelled" (object outlines, as in ADE20K) and
classes are 1..len(CLASSES); configs read it with ``reduce_zero_label=True``.

Each picture is a landscape: sky above a wavy horizon, grass below, with an
optional sun, pond and houses. Every class has its own colour family *and*
texture (smooth gradient, noise, ripples, brick rows), with colours jittered
per picture, so a small model has to use more than a fixed colour to get a
high mIoU, yet learns it in a few hundred iterations.

Generation is deterministic: picture ``i`` of a split depends only on
``(seed, split, i)``.
"""
import argparse

import numpy as np
from PIL import Image

from mmvim.runtime.command_line import positive_int
from mmvim.runtime.generated_data import clear_generated_folders

# Names of annotation values 1..5 (value 0 is unlabelled).
CLASSES = ('sky', 'grass', 'water', 'sun', 'house')
SKY, GRASS, WATER, SUN, HOUSE = range(1, len(CLASSES) + 1)
SPLITS = ('training', 'validation')


def _jitter(rng, rgb, spread):
    """Shift a base colour by up to ``spread`` per channel."""
    return np.clip(np.asarray(rgb, float) + rng.uniform(-spread, spread, 3),
                   0, 255)


def draw_scene(rng, height, width):
    """Return an (H, W, 3) uint8 picture and its (H, W) uint8 annotation."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    image = np.zeros((height, width, 3))
    label = np.zeros((height, width), np.uint8)

    # Sky over grass, split by a wavy horizon.
    horizon = (height * rng.uniform(0.35, 0.6) +
               rng.uniform(2, 8) * np.sin(2 * np.pi * xx /
                                          rng.uniform(30, 90) +
                                          rng.uniform(0, 2 * np.pi)))
    sky = yy < horizon
    label[sky] = SKY
    label[~sky] = GRASS
    top, low = _jitter(rng, (40, 90, 200), 30), _jitter(rng, (170, 200, 240),
                                                        25)
    t = np.clip(yy / np.maximum(horizon, 1), 0, 1)[..., None]
    image[sky] = ((1 - t) * top + t * low)[sky]
    grass = _jitter(rng, (60, 150, 50), 30)
    blotches = 20 * np.sin(xx / rng.uniform(5, 12)) * np.cos(
        yy / rng.uniform(5, 12))
    image[~sky] = (grass + blotches[..., None] +
                   rng.normal(0, 25, (height, width, 1)))[~sky]

    if rng.random() < 0.8:  # sun: a smooth bright disk in the sky
        radius = rng.uniform(0.12, 0.22) * height
        cy = rng.uniform(0.8 * radius, 0.35 * height)
        cx = rng.uniform(radius, width - radius)
        dist = np.hypot(yy - cy, xx - cx)
        disk = (dist < radius) & sky
        label[disk] = SUN
        glow = (1 - dist / radius)[..., None] * 40
        image[disk] = np.clip(_jitter(rng, (240, 190, 40), 15) + glow, 0,
                              255)[disk]

    if rng.random() < 0.8:  # pond: an ellipse with horizontal ripples
        cy = rng.uniform(horizon.max() + 0.1 * height, 0.95 * height)
        cx = rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.08, 0.16) * height, rng.uniform(
            0.2, 0.4) * width
        pond = (((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 < 1) & ~sky
        label[pond] = WATER
        ripples = 30 * np.sin(2 * np.pi * yy / rng.uniform(3, 6) +
                              0.5 * np.sin(xx / 5))
        image[pond] = (_jitter(rng, (30, 160, 190), 25) +
                       ripples[..., None])[pond]

    for _ in range(rng.integers(1, 3)):  # houses: brick walls on the horizon
        w = rng.uniform(0.15, 0.35) * width
        h = rng.uniform(0.2, 0.4) * height
        x0 = rng.uniform(0, width - w)
        base = horizon[0, int(x0 + w / 2)] + rng.uniform(2, 10)
        wall = (xx >= x0) & (xx < x0 + w) & (yy < base) & (yy >= base - h)
        label[wall] = HOUSE
        brick_h = rng.integers(4, 8)
        row = (yy // brick_h).astype(int)
        offset = (row % 2) * brick_h
        mortar = (yy % brick_h < 1) | ((xx + offset) % (2 * brick_h) < 1)
        brick = _jitter(rng, (170, 60, 40), 25)
        image[wall] = np.where(mortar[..., None], 200, brick)[wall]

    image += rng.normal(0, 6, image.shape)
    # Like ADE20K, outlines between regions stay unlabelled.
    edge = np.zeros_like(label, bool)
    edge[1:] |= label[1:] != label[:-1]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    label[edge] = 0
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_toy_ade20k(root,
                    num_train=200,
                    num_val=50,
                    size=(160, 120),
                    seed=0,
                    overwrite=False):
    """Write the dataset under ``root``; ``size`` is (width, height).

    Refuses to write into a non-empty ``root`` unless ``overwrite``, which
    then replaces only the ``images`` and ``annotations`` folders.
    """
    root = clear_generated_folders(root, ('images', 'annotations'),
                                   overwrite)
    width, height = size
    for split_id, (split, count) in enumerate(zip(SPLITS,
                                                  (num_train, num_val))):
        image_dir = root / 'images' / split
        ann_dir = root / 'annotations' / split
        image_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for index in range(count):
            rng = np.random.default_rng([seed, split_id, index])
            image, label = draw_scene(rng, height, width)
            name = f'toy_{index:05d}'
            Image.fromarray(image).save(image_dir / f'{name}.jpg', quality=95)
            Image.fromarray(label).save(ann_dir / f'{name}.png')
    return root


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'root', nargs='?', default='data/toy_ade20k', help='output folder')
    parser.add_argument('--num-train', type=positive_int, default=200)
    parser.add_argument('--num-val', type=positive_int, default=50)
    parser.add_argument(
        '--size',
        type=positive_int,
        nargs=2,
        default=(160, 120),
        metavar=('WIDTH', 'HEIGHT'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace images/ and annotations/ of an existing dataset')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        root = make_toy_ade20k(args.root, args.num_train, args.num_val,
                               tuple(args.size), args.seed, args.overwrite)
    except FileExistsError as error:
        raise SystemExit(f'error: {error}')
    print(f'wrote {args.num_train} training and {args.num_val} validation '
          f'pictures to {root}')


if __name__ == '__main__':
    main()
