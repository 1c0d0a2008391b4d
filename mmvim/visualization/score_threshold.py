"""The score above which a detector's predictions are worth drawing.

A detector keeps every box scored above its test ``score_thr`` (0.05 for
mmdet's), which is right for AP and wrong for a picture: a fixed threshold
either hides a weak model's hits or buries a good model's objects under
duplicates. This picks the threshold from the scores themselves: the one
whose predictions, matched to the ground truth of a set of pictures, give
the best F1 (hits against misses and false alarms).
"""
import math
from typing import NamedTuple, Sequence

import numpy as np

from .panels import Instances


class ScoreThreshold(NamedTuple):
    """threshold: draw predictions scored >= it (``math.inf`` when no
    prediction matches an object); f1, precision, recall: of the
    predictions above it, matched at ``iou_thr``."""
    threshold: float
    f1: float
    precision: float
    recall: float


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N, M) IoU of x1, y1, x2, y2 boxes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    others = np.asarray(others, np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(-1)

    def area(b):
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    union = area(boxes)[:, None] + area(others)[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def _hits(prediction: Instances, ground_truth: Instances,
          iou_thr: float) -> np.ndarray:
    """Whether each prediction, taken by descending score, is the first to
    claim an object of its class at IoU >= iou_thr (COCO's matching)."""
    order = np.argsort(-np.asarray(prediction.scores), kind='stable')
    ious = box_iou(np.asarray(prediction.boxes)[order], ground_truth.boxes)
    same_class = (np.asarray(prediction.labels)[order][:, None] ==
                  np.asarray(ground_truth.labels)[None, :])
    ious = np.where(same_class, ious, -1.0)
    claimed = np.zeros(len(ground_truth.labels), bool)
    hits = np.zeros(len(order), bool)
    for row, candidate_ious in enumerate(ious):
        candidate_ious = np.where(claimed, -1.0, candidate_ious)
        if candidate_ious.size and candidate_ious.max() >= iou_thr:
            claimed[candidate_ious.argmax()] = True
            hits[row] = True
    result = np.zeros(len(order), bool)
    result[order] = hits
    return result


def _round_into(low: float, high: float) -> float:
    """The shortest decimal ``t`` with ``low < t <= high``: a threshold a
    title can state exactly."""
    for decimals in range(1, 7):
        rounded = round((low + high) / 2, decimals)
        if low < rounded <= high:
            return rounded
    return high


def best_f1_threshold(predictions: Sequence[Instances],
                      ground_truths: Sequence[Instances],
                      iou_thr: float = 0.5) -> ScoreThreshold:
    """The score threshold with the best F1 over a set of pictures.

    ``predictions[i]`` (with scores) and ``ground_truths[i]`` are the
    objects of picture ``i``. A prediction is a hit when it claims an
    object of its class at box IoU >= ``iou_thr`` before any higher-scored
    prediction does; F1 = 2 hits / (predictions + objects) above the
    threshold. The threshold returned lies between the lowest score kept and
    the next one, rounded to as few decimals as that gap allows.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f'{len(predictions)} predictions for '
                         f'{len(ground_truths)} ground truths: give one of '
                         'each per picture')
    if any(p.scores is None for p in predictions):
        raise ValueError('predictions need scores to choose a threshold')
    scores = np.concatenate(
        [np.asarray(p.scores, np.float64).reshape(-1)
         for p in predictions] or [np.zeros(0)])
    hits = np.concatenate(
        [_hits(p, g, iou_thr) for p, g in zip(predictions, ground_truths)]
        or [np.zeros(0, bool)])
    num_objects = sum(len(g.labels) for g in ground_truths)
    if not hits.any():
        return ScoreThreshold(math.inf, 0.0, 0.0, 0.0)
    order = np.argsort(-scores, kind='stable')
    scores, hits = scores[order], hits[order]
    kept = np.arange(1, len(scores) + 1)
    cumulative_hits = np.cumsum(hits)
    f1 = 2 * cumulative_hits / (kept + num_objects)
    # Only a cut between two different scores can be drawn; of equal F1s
    # the first (fewer predictions drawn) wins.
    cut_here = np.append(scores[1:] < scores[:-1], True)
    best = int(np.argmax(np.where(cut_here, f1, -1.0)))
    next_score = scores[best + 1] if best + 1 < len(scores) else 0.0
    return ScoreThreshold(
        _round_into(next_score, scores[best]), float(f1[best]),
        float(cumulative_hits[best] / kept[best]),
        float(cumulative_hits[best] / max(num_objects, 1)))
