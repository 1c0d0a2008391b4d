"""Prediction panels on tiny synthetic pictures: size, layout, legend."""
import numpy as np
import pytest
from PIL import Image

from mmvim.visualization import Instances, detection_panel, segmentation_panel
from mmvim.visualization.panels import IGNORED_COLOUR, MARGIN, TITLE_HEIGHT

CLASSES = ('sky', 'grass', 'water', 'sun')
PALETTE = [(128, 0, 255), (255, 140, 0), (0, 90, 255), (255, 255, 0)]
HEIGHT, WIDTH, SCALE = 12, 16, 4


def picture():
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)


def label_maps():
    ground_truth = np.zeros((HEIGHT, WIDTH), np.int64)
    ground_truth[6:] = 1
    ground_truth[0, :] = 255  # an unlabelled row
    prediction = ground_truth.copy()
    prediction[0, :] = 0
    prediction[8:, 8:] = 2  # only the prediction has water
    return ground_truth, prediction


def count(pixels, colour):
    return int((pixels == np.array(colour, np.uint8)).all(-1).sum())


def picture_area(panel, index, height=HEIGHT, width=WIDTH):
    """The pixels of picture ``index`` of a panel, from the layout."""
    top = TITLE_HEIGHT
    left = MARGIN + index * (width * SCALE + MARGIN)
    return panel[top:top + height * SCALE, left:left + width * SCALE]


def test_segmentation_panel_layout_colours_and_legend(tmp_path):
    ground_truth, prediction = label_maps()
    out = segmentation_panel(picture(), ground_truth, prediction, CLASSES,
                             PALETTE, tmp_path / 'panel.png', scale=SCALE)
    panel = np.array(Image.open(out).convert('RGB'))
    # Three pictures enlarged 4x side by side, titles and legend around.
    assert panel.shape[1] >= 3 * WIDTH * SCALE
    assert panel.shape[0] >= HEIGHT * SCALE + TITLE_HEIGHT
    image_area, truth_area, predicted_area = (
        picture_area(panel, i) for i in range(3))
    # The input is shown as it is, enlarged by whole pixels.
    np.testing.assert_array_equal(image_area[::SCALE, ::SCALE], picture())
    # Each label pixel became a SCALE x SCALE block of its class colour.
    assert count(truth_area, PALETTE[1]) == (ground_truth == 1).sum() * 16
    assert count(truth_area, IGNORED_COLOUR) == WIDTH * SCALE * SCALE
    assert count(predicted_area, PALETTE[2]) == (prediction == 2).sum() * 16
    assert count(truth_area, PALETTE[2]) == 0
    # The legend under the pictures shows the classes drawn (water only in
    # the prediction) and the ignored pixels' colour, not the absent sun.
    legend = panel[TITLE_HEIGHT + HEIGHT * SCALE:]
    for colour in PALETTE[:3] + [IGNORED_COLOUR]:
        assert count(legend, colour) > 50, colour
    assert count(panel, PALETTE[3]) == 0


def test_segmentation_panel_refuses_bad_input_and_overwriting(tmp_path):
    ground_truth, prediction = label_maps()
    out = tmp_path / 'panel.png'
    with pytest.raises(ValueError, match='labels \\[7\\] outside'):
        segmentation_panel(picture(), ground_truth, np.full_like(
            prediction, 7), CLASSES, PALETTE, out)
    with pytest.raises(ValueError, match='same size'):
        segmentation_panel(picture(), ground_truth[:4], prediction, CLASSES,
                           PALETTE, out)
    with pytest.raises(ValueError, match='one RGB colour per class'):
        segmentation_panel(picture(), ground_truth, prediction, CLASSES,
                           PALETTE[:2], out)
    out.write_bytes(b'a user file')
    with pytest.raises(FileExistsError):
        segmentation_panel(picture(), ground_truth, prediction, CLASSES,
                           PALETTE, out)
    assert out.read_bytes() == b'a user file'


def test_detection_panel_draws_objects_above_the_score(tmp_path):
    height, width = 24, 32
    masks = np.zeros((2, height, width), bool)
    masks[0, 2:10, 2:10] = True  # near the top: its label goes inside
    masks[1, 12:20, 16:26] = True
    boxes = np.array([[2, 2, 10, 10], [16, 12, 26, 20]], np.float32)
    ground_truth = Instances(boxes, np.array([0, 2]), masks)
    prediction = Instances(boxes, np.array([0, 2]), masks,
                           np.array([0.9, 0.05]))
    image = np.full((height, width, 3), 200, np.uint8)
    out = detection_panel(image, ground_truth, prediction, CLASSES,
                          tmp_path / 'det.png', score_thr=0.3,
                          palette=PALETTE, scale=SCALE)
    panel = np.array(Image.open(out).convert('RGB'))
    assert panel.shape[1] >= 3 * width * SCALE
    blended = [tuple(np.round(0.5 * 200 + 0.5 * np.array(c)).astype(int))
               for c in PALETTE]
    truth_area, predicted_area = (
        picture_area(panel, i, height, width) for i in (1, 2))
    # No label (a box of its class colour) is drawn over the titles.
    assert count(panel[:TITLE_HEIGHT], PALETTE[0]) == 0
    assert count(truth_area, PALETTE[0]) > 0
    # Ground truth: both masks blended in; prediction: only the one scored
    # above 0.3 (the 0.05 water object is left out).
    assert count(truth_area, blended[0]) > 0
    assert count(truth_area, blended[2]) > 0
    assert count(predicted_area, blended[0]) > 0
    assert count(predicted_area, blended[2]) == 0
    assert count(picture_area(panel, 0, height, width), blended[0]) == 0
    legend = panel[TITLE_HEIGHT + height * SCALE:]
    for colour in (PALETTE[0], PALETTE[2]):
        assert count(legend, colour) > 50, colour
    assert count(legend, PALETTE[1]) == 0  # no grass object anywhere


def test_detection_panel_checks_labels_and_mask_size(tmp_path):
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    boxes = np.array([[0, 0, 4, 4]], np.float32)
    with pytest.raises(ValueError, match='labels outside'):
        detection_panel(image, Instances(boxes, np.array([5])),
                        Instances(boxes[:0], np.array([], int)), CLASSES,
                        tmp_path / 'a.png')
    with pytest.raises(ValueError, match='masks are'):
        detection_panel(image, Instances(boxes, np.array([0]),
                                         np.zeros((1, 3, 3), bool)),
                        Instances(boxes[:0], np.array([], int)), CLASSES,
                        tmp_path / 'b.png')
