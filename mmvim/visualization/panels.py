"""Side-by-side pictures a person can judge: input | ground truth | prediction.

Each picture is enlarged by a whole factor (nearest neighbour, so every label
pixel stays a block of one colour), titled, and the colours of the classes
drawn are listed in a legend under the pictures. Drawn with matplotlib's Agg
canvas (no pyplot, no display, no global backend switch).
"""
import math
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

DPI = 100
MARGIN = 16  # pixels around and between the pictures
TITLE_HEIGHT = 40
LEGEND_ROW_HEIGHT = 36
LEGEND_COLUMNS = 6
LEGEND_ENTRY_WIDTH = 170  # pixels a legend entry may take in its row
FONT_SIZE = 14
IGNORED_NAME, IGNORED_COLOUR = 'ignored', (0, 0, 0)
# Distinct colours for datasets whose metainfo has no palette (RGB).
DEFAULT_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200),
                   (245, 130, 48), (145, 30, 180), (70, 240, 240),
                   (240, 50, 230), (210, 245, 60), (250, 190, 212),
                   (0, 128, 128))
MASK_OPACITY = 0.5

Colour = Tuple[int, int, int]


class Instances(NamedTuple):
    """Objects of one picture, in the picture's pixel coordinates.

    boxes: (N, 4) x1, y1, x2, y2; labels: (N,) class indices; masks:
    (N, H, W) booleans or None; scores: (N,) or None (ground truth).
    """
    boxes: np.ndarray
    labels: np.ndarray
    masks: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None

    def above(self, score_thr: float) -> 'Instances':
        """The instances scored at least ``score_thr`` (all without scores)."""
        if self.scores is None:
            return self
        keep = np.asarray(self.scores) >= score_thr
        return Instances(
            np.asarray(self.boxes)[keep],
            np.asarray(self.labels)[keep],
            None if self.masks is None else np.asarray(self.masks)[keep],
            np.asarray(self.scores)[keep])


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('image must be an (H, W, 3) uint8 RGB array, got '
                         f'{image.dtype} of shape {image.shape}')
    return image


def _check_scale(scale: int) -> int:
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f'scale must be a whole number >= 1, got {scale!r}')
    return scale


def _enlarge(array: np.ndarray, scale: int) -> np.ndarray:
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def _palette_for(classes: Sequence[str],
                 palette: Optional[Sequence[Colour]]) -> np.ndarray:
    if palette is None:
        palette = [
            DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]
            for i in range(len(classes))
        ]
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.shape != (len(classes), 3):
        raise ValueError(f'palette must give one RGB colour per class: '
                         f'{len(classes)} classes, palette of shape '
                         f'{palette.shape}')
    return palette


def _legend(classes: Sequence[str], colours: np.ndarray,
            labels) -> List[Tuple[str, Colour]]:
    """Legend entries of the classes drawn (a dataset may have 150)."""
    return [(classes[label], tuple(colours[label]))
            for label in sorted(set(int(label) for label in labels))]


def _save_panel(pictures: List[np.ndarray],
                titles: List[str],
                legend: List[Tuple[str, Colour]],
                out_file,
                overwrite: bool,
                draw_on=None) -> Path:
    """Lays the same-size pictures out in a row, titles above, legend below.

    ``draw_on(index, axes)`` may add boxes or text to picture ``index`` in
    the enlarged picture's pixel coordinates.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out_file = Path(out_file)
    if out_file.exists() and not overwrite:
        raise FileExistsError(f'{out_file} already exists; choose another '
                              'path or pass overwrite=True to replace it')
    height, width = pictures[0].shape[:2]
    fig_width = len(pictures) * width + (len(pictures) + 1) * MARGIN
    columns = max(1, min(LEGEND_COLUMNS, len(legend),
                         fig_width // LEGEND_ENTRY_WIDTH))
    legend_height = LEGEND_ROW_HEIGHT * math.ceil(len(legend) / columns)
    fig_height = TITLE_HEIGHT + height + MARGIN + legend_height
    fig = Figure(figsize=(fig_width / DPI, fig_height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    bottom = (legend_height + MARGIN) / fig_height
    for index, (picture, title) in enumerate(zip(pictures, titles)):
        left = (MARGIN + index * (width + MARGIN)) / fig_width
        axes = fig.add_axes(
            [left, bottom, width / fig_width, height / fig_height])
        axes.imshow(picture, interpolation='nearest')
        axes.set_title(title, fontsize=FONT_SIZE)
        axes.set_axis_off()
        if draw_on is not None:
            draw_on(index, axes)
        axes.set_xlim(-0.5, width - 0.5)
        axes.set_ylim(height - 0.5, -0.5)
    handles = [
        Patch(facecolor=np.asarray(colour) / 255, edgecolor='black',
              label=name) for name, colour in legend
    ]
    fig.legend(
        handles=handles,
        loc='lower center',
        ncol=columns,
        frameon=False,
        fontsize=FONT_SIZE,
        handlelength=2.5,
        handleheight=1.2)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=DPI)
    return out_file


def segmentation_panel(image,
                       ground_truth,
                       prediction,
                       classes: Sequence[str],
                       palette: Sequence[Colour],
                       out_file,
                       scale: int = 4,
                       ignore_index: int = 255,
                       overwrite: bool = False) -> Path:
    """Writes input | ground truth | prediction of one picture as a PNG.

    Args:
        image: (H, W, 3) uint8 RGB picture.
        ground_truth, prediction: (H, W) class indices; ``ignore_index``
            (unlabelled pixels) is painted black.
        classes, palette: names and RGB colours of the classes.
        scale: whole-number enlargement of each picture.
    """
    image = _check_image(image)
    scale = _check_scale(scale)
    colours = _palette_for(classes, palette)
    maps = []
    for name, labels in (('ground truth', ground_truth),
                         ('prediction', prediction)):
        labels = np.asarray(labels)
        if labels.shape != image.shape[:2]:
            raise ValueError(f'{name} is {labels.shape}, the image '
                             f'{image.shape[:2]}: they must be the same size')
        known = (labels == ignore_index) | ((labels >= 0) &
                                            (labels < len(classes)))
        if not known.all():
            raise ValueError(
                f'{name} holds labels {sorted(set(np.unique(labels[~known])))}'
                f' outside 0..{len(classes) - 1} and ignore_index '
                f'{ignore_index}')
        painted = np.zeros((*labels.shape, 3), np.uint8)
        painted[:] = IGNORED_COLOUR
        valid = labels != ignore_index
        painted[valid] = colours[labels[valid]]
        maps.append(painted)
    present = np.union1d(np.unique(ground_truth), np.unique(prediction))
    legend = _legend(classes, colours, present[present != ignore_index])
    if (np.asarray(ground_truth) == ignore_index).any():
        legend.append((IGNORED_NAME, IGNORED_COLOUR))
    pictures = [_enlarge(picture, scale) for picture in [image, *maps]]
    return _save_panel(pictures, ['input', 'ground truth', 'prediction'],
                       legend, out_file, overwrite)


def _paint_masks(image: np.ndarray, instances: Instances,
                 colours: np.ndarray) -> np.ndarray:
    painted = image.astype(np.float32)
    if instances.masks is not None:
        for mask, label in zip(np.asarray(instances.masks, bool),
                               instances.labels):
            painted[mask] = ((1 - MASK_OPACITY) * painted[mask] +
                             MASK_OPACITY * colours[label])
    return painted.round().astype(np.uint8)


def detection_panel(image,
                    ground_truth: Instances,
                    prediction: Instances,
                    classes: Sequence[str],
                    out_file,
                    score_thr: float = 0.3,
                    score_source: Optional[str] = None,
                    palette: Optional[Sequence[Colour]] = None,
                    scale: int = 4,
                    overwrite: bool = False) -> Path:
    """Writes input | ground-truth objects | predicted objects as a PNG.

    Boxes are outlined and masks blended in their class's colour; only
    predictions scored at least ``score_thr`` are drawn, and the prediction's
    title says how many of how many that is, and where the threshold came
    from when ``score_source`` says so (e.g. 'best F1 on val').
    """
    image = _check_image(image)
    scale = _check_scale(scale)
    colours = _palette_for(classes, palette)
    shown = prediction.above(score_thr)
    for name, instances in (('ground truth', ground_truth),
                            ('prediction', shown)):
        labels = np.asarray(instances.labels)
        if labels.size and (labels.min() < 0
                            or labels.max() >= len(classes)):
            raise ValueError(f'{name} has labels outside 0..'
                             f'{len(classes) - 1}: {sorted(set(labels))}')
        if instances.masks is not None and np.asarray(
                instances.masks).shape[1:] != image.shape[:2]:
            raise ValueError(f'{name} masks are '
                             f'{np.asarray(instances.masks).shape[1:]}, the '
                             f'image {image.shape[:2]}')
    layers = [None, ground_truth, shown]
    pictures = [
        _enlarge(image if instances is None else _paint_masks(
            image, instances, colours), scale) for instances in layers
    ]

    def draw_boxes(index, axes):
        from matplotlib.patches import Rectangle
        instances = layers[index]
        if instances is None:
            return
        scores = ([None] * len(instances.labels)
                  if instances.scores is None else instances.scores)
        for box, label, score in zip(instances.boxes, instances.labels,
                                     scores):
            x1, y1, x2, y2 = np.asarray(box, float) * scale - 0.5
            colour = colours[label] / 255
            axes.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                          edgecolor=colour, linewidth=2))
            text = classes[label] + ('' if score is None else
                                     f' {score:.2f}')
            # Above the box, or inside it where that would leave the picture.
            above = y1 >= 2 * FONT_SIZE
            axes.text(x1, y1 - 2 if above else y1 + 2, text,
                      fontsize=FONT_SIZE - 3, color='white',
                      va='bottom' if above else 'top', clip_on=True,
                      bbox=dict(facecolor=colour, edgecolor='none', pad=1))

    titles = [
        'input', f'ground truth ({len(ground_truth.labels)})',
        f'prediction, score >= {score_thr:g}' +
        ('' if score_source is None else f', {score_source}') +
        f' ({len(shown.labels)} of {len(prediction.labels)})'
    ]
    legend = _legend(classes, colours,
                     np.union1d(ground_truth.labels, shown.labels))
    return _save_panel(pictures, titles, legend, out_file, overwrite,
                       draw_boxes)
