"""The detection panel's score threshold: best F1 of predictions matched to
the ground truth, stated in as few decimals as the scores allow."""
import math

import numpy as np
import pytest

from mmvim.visualization import Instances, best_f1_threshold
from mmvim.visualization.score_threshold import box_iou

SQUARE, TRIANGLE = 0, 1


def objects(boxes, labels, scores=None):
    return Instances(
        np.array(boxes, np.float32).reshape(-1, 4), np.array(labels),
        scores=None if scores is None else np.array(scores))


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10],
                                      [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_threshold_keeps_the_hits_and_drops_the_noise():
    truth = [
        objects([[0, 0, 10, 10], [20, 20, 40, 40]], [SQUARE, TRIANGLE]),
        objects([[5, 5, 25, 25]], [SQUARE]),
    ]
    predictions = [
        objects(
            [[0, 0, 10, 11], [20, 20, 40, 40], [0, 0, 10, 10],
             [20, 20, 40, 40], [50, 50, 60, 60]],
            [SQUARE, TRIANGLE, SQUARE, SQUARE, SQUARE],
            # a hit, a hit, a duplicate of the first, the right place with
            # the wrong class, a box on nothing
            [0.91, 0.74, 0.52, 0.33, 0.31]),
        objects([[5, 5, 25, 24]], [SQUARE], [0.66]),
    ]
    chosen = best_f1_threshold(predictions, truth)
    # All three objects found by the three best predictions: F1 = 1; the
    # threshold falls between 0.66 and 0.52, stated with one decimal.
    assert chosen.threshold == 0.6
    assert (chosen.f1, chosen.precision, chosen.recall) == (1.0, 1.0, 1.0)


def test_of_equal_f1s_the_one_drawing_fewer_wins():
    truth = [objects([[0, 0, 10, 10], [20, 20, 30, 30]], [SQUARE, SQUARE])]
    # The second object is found only below two false alarms.
    predictions = [
        objects([[0, 0, 10, 10], [40, 40, 50, 50], [60, 60, 70, 70],
                 [20, 20, 30, 30]], [SQUARE] * 4, [0.9, 0.8, 0.7, 0.6])
    ]
    chosen = best_f1_threshold(predictions, truth)
    # Keeping the first (1 hit of 2 objects) and keeping all four (2 hits, 2
    # false alarms) both give F1 2/3: the panel draws one.
    assert chosen.threshold == pytest.approx(0.85)
    assert chosen.f1 == pytest.approx(2 / 3)
    assert (chosen.precision, chosen.recall) == (1.0, 0.5)


def test_tied_scores_are_kept_or_dropped_together():
    truth = [objects([[0, 0, 10, 10]], [SQUARE])]
    predictions = [
        objects([[0, 0, 10, 10], [40, 40, 50, 50]], [SQUARE, SQUARE],
                [0.5, 0.5])
    ]
    chosen = best_f1_threshold(predictions, truth)
    assert chosen.threshold <= 0.5
    assert chosen.precision == 0.5 and chosen.recall == 1.0


def test_nothing_found_draws_nothing():
    truth = [objects([[0, 0, 10, 10]], [SQUARE])]
    predictions = [objects([[0, 0, 10, 10]], [TRIANGLE], [0.9])]
    assert best_f1_threshold(predictions, truth).threshold == math.inf
    assert best_f1_threshold([objects([], [], [])],
                             truth).threshold == math.inf


def test_refuses_unpaired_or_unscored_predictions():
    truth = [objects([[0, 0, 10, 10]], [SQUARE])]
    with pytest.raises(ValueError, match='one of each per picture'):
        best_f1_threshold([], truth)
    with pytest.raises(ValueError, match='need scores'):
        best_f1_threshold(truth, truth)
