"""Generate a small COCO-format instance segmentation dataset procedurally.

The toy data lets the detection configs train and evaluate for real on a
CPU in minutes, with no download: coloured circles, squares and triangles on
a textured background, each with its polygon, box and area. Same arguments,
same bytes: the output depends only on the seed and the sizes.

Layout (what ``configs/coco/quickstart_*_toy.py`` expects)::

    OUT_DIR/annotations/instances_{train,val}.json
    OUT_DIR/{train,val}/000000.png ...

Example::

    python tools/dataset_converters/make_toy_coco.py data/toy_coco
"""
import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from mmvim.runtime.command_line import positive_int
from mmvim.runtime.generated_data import clear_generated_folders

CLASSES = ('circle', 'square', 'triangle')
# Each class gets its own hue (BGR, jittered per instance) so that a model
# trained from scratch for a few minutes can learn it; shape still matters
# for the masks.
CLASS_COLOURS = ((60, 60, 200), (60, 180, 60), (200, 90, 40))
SPLITS = ('train', 'val')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='dataset root to create')
    parser.add_argument('--num-train', type=positive_int, default=64)
    parser.add_argument('--num-val', type=positive_int, default=16)
    parser.add_argument(
        '--image-size', type=positive_int, nargs=2, default=(128, 160),
        metavar=('HEIGHT', 'WIDTH'))
    parser.add_argument('--max-objects', type=positive_int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--overwrite', action='store_true',
        help='replace the annotations/, train/ and val/ of an existing '
        'non-empty OUT_DIR (nothing else in it is touched)')
    return parser.parse_args()


def textured_background(rng: np.random.RandomState, height: int,
                        width: int) -> np.ndarray:
    """Grey-ish stripes plus smoothed noise, so boxes are not found by
    thresholding a flat colour."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(8, 24)
    stripes = 20 * np.sin(
        (xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    noise = cv2.GaussianBlur(
        rng.normal(0, 30, (height, width, 3)).astype(np.float32), (0, 0), 2)
    base = rng.uniform(90, 160, size=3).astype(np.float32)
    image = base + stripes[..., None] + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def shape_polygon(rng: np.random.RandomState, category: str, centre_x: float,
                  centre_y: float, radius: float) -> np.ndarray:
    """Vertices (K, 2) in pixels of a randomly rotated shape."""
    if category == 'circle':
        angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    elif category == 'square':
        angles = rng.uniform(0, math.pi / 2) + np.arange(4) * math.pi / 2
    else:
        angles = rng.uniform(0, 2 * math.pi) + np.arange(3) * 2 * math.pi / 3
    return np.stack([centre_x + radius * np.cos(angles),
                     centre_y + radius * np.sin(angles)], axis=1)


def polygon_area(points: np.ndarray) -> float:
    """Shoelace formula."""
    xs, ys = points[:, 0], points[:, 1]
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
                 / 2)


def make_image(rng: np.random.RandomState, height: int, width: int,
               max_objects: int) -> Tuple[np.ndarray, List[Dict]]:
    """One image and its objects, which never overlap (so each polygon is
    exactly the visible mask)."""
    image = textured_background(rng, height, width)
    objects, placed = [], []
    for _ in range(rng.randint(1, max_objects + 1)):
        for _attempt in range(20):
            radius = rng.uniform(0.12, 0.28) * min(height, width)
            centre_x = rng.uniform(radius, width - radius)
            centre_y = rng.uniform(radius, height - radius)
            if all(math.hypot(centre_x - x, centre_y - y) > radius + r + 2
                   for x, y, r in placed):
                break
        else:
            continue
        placed.append((centre_x, centre_y, radius))
        label = rng.randint(len(CLASSES))
        points = shape_polygon(rng, CLASSES[label], centre_x, centre_y, radius)
        colour = np.clip(
            np.array(CLASS_COLOURS[label]) + rng.randint(-30, 31, size=3), 0,
            255)
        cv2.fillPoly(image, [np.round(points).astype(np.int32)],
                     tuple(int(c) for c in colour))
        objects.append(dict(label=label, points=points))
    return image, objects


def make_split(rng: np.random.RandomState, out_dir: Path, split: str,
               num_images: int, height: int, width: int,
               max_objects: int) -> Dict:
    """Writes the images of one split and returns its COCO dictionary."""
    image_dir = out_dir / split
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(num_images):
        image, objects = make_image(rng, height, width, max_objects)
        file_name = f'{image_id:06d}.png'
        cv2.imwrite(str(image_dir / file_name), image)
        images.append(
            dict(id=image_id, file_name=file_name, height=height,
                 width=width))
        for obj in objects:
            # Box and area from the polygon as stored, so they agree exactly.
            points = np.round(obj['points'], 2)
            x_min, y_min = points.min(axis=0)
            x_max, y_max = points.max(axis=0)
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id,
                     category_id=obj['label'] + 1,
                     segmentation=[points.reshape(-1).tolist()],
                     area=round(polygon_area(points), 2),
                     bbox=[round(float(v), 2) for v in
                           (x_min, y_min, x_max - x_min, y_max - y_min)],
                     iscrowd=0))
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    return dict(images=images, annotations=annotations,
                categories=categories)


def make_toy_coco(out_dir: str, num_train: int = 64, num_val: int = 16,
                  image_size: Tuple[int, int] = (128, 160),
                  max_objects: int = 3, seed: int = 0,
                  overwrite: bool = False) -> None:
    """Creates the dataset under ``out_dir`` (see the module docstring)."""
    root = clear_generated_folders(out_dir, ('annotations', *SPLITS),
                                   overwrite)
    (root / 'annotations').mkdir(parents=True)
    rng = np.random.RandomState(seed)
    height, width = image_size
    for split, num_images in zip(SPLITS, (num_train, num_val)):
        coco = make_split(rng, root, split, num_images, height, width,
                          max_objects)
        with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
            json.dump(coco, f)


def main() -> None:
    args = parse_args()
    try:
        make_toy_coco(args.out_dir, args.num_train, args.num_val,
                      tuple(args.image_size), args.max_objects, args.seed,
                      args.overwrite)
    except FileExistsError as error:
        raise SystemExit(str(error))
    print(f'toy COCO dataset written to {args.out_dir}')


if __name__ == '__main__':
    main()
