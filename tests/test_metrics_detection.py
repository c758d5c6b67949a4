"""Detection metrics against known answers and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_score, recall_score
from torchvision.ops import box_iou as tv_box_iou

from engine.metrics.detection import DetectionCounts, box_iou, match_detections
from engine.yolo_format import format_yolo_labels, parse_yolo_labels


def _random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_box_iou_known_answer():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert box_iou(a, b) == pytest.approx(np.array([[50 / 150, 0.0, 1.0]]))
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_box_iou_matches_torchvision():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    expected = tv_box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    assert np.allclose(box_iou(a, b), expected, atol=1e-9)


def test_matching_known_answers():
    gt = np.array([[0, 0, 10, 10], [50, 50, 60, 60]])
    gt_cls = np.array([0, 1])
    pred = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [80, 80, 90, 90]])
    conf = np.array([0.6, 0.9, 0.8, 0.7])
    cls = np.array([0, 0, 0, 1])
    # the higher-confidence duplicate takes the cone box; the class-0 box over the class-1 object is an FP
    assert match_detections(pred, conf, cls, gt, gt_cls).tolist() == [False, True, False, False]
    assert match_detections(pred, conf, cls, gt, gt_cls, iou_threshold=0.99).tolist() == [True, False, False, False]
    assert match_detections(np.zeros((0, 4)), [], [], gt, gt_cls).tolist() == []
    assert match_detections(pred, conf, cls, np.zeros((0, 4)), []).tolist() == [False] * 4


def test_matching_agrees_with_ultralytics_on_separated_objects():
    """Where objects don't overlap each other, every sane matcher gives the same TPs."""
    from ultralytics.models.yolo.detect import DetectionValidator

    validator = DetectionValidator()
    validator.iouv = torch.tensor([0.5])
    rng = np.random.default_rng(1)
    for _ in range(30):
        centres = rng.permutation(np.array([[x, y] for x in range(20, 200, 40) for y in range(20, 200, 40)], float))[:6]
        gt = np.concatenate([centres - 8, centres + 8], axis=1)
        gt_cls = rng.integers(0, 3, len(gt))
        keep = rng.random(len(gt)) < 0.7
        pred = gt[keep] + rng.normal(0, 2.5, (keep.sum(), 4))
        pred_cls = np.where(rng.random(keep.sum()) < 0.8, gt_cls[keep], (gt_cls[keep] + 1) % 3)
        conf = rng.random(len(pred))
        ours = match_detections(pred, conf, pred_cls, gt, gt_cls, 0.5)
        iou = tv_box_iou(torch.tensor(gt), torch.tensor(pred))
        theirs = validator.match_predictions(torch.tensor(pred_cls), torch.tensor(gt_cls), iou).numpy()[:, 0]
        assert ours.tolist() == theirs.tolist()


def test_counts_cross_checked_with_sklearn():
    """Precision/recall from counts equal scikit-learn's on the matched-object view."""
    counts = DetectionCounts()
    counts.add_image(np.array([True, False, True]), n_gt=4)  # 2 TP, 1 FP, 2 FN
    counts.add_image(np.array([], bool), n_gt=1)  # 1 FN
    counts.add_image(np.array([False]), n_gt=0)  # 1 FP on an empty image
    # rows: TP (1,1) x2, FP (0,1) x2, FN (1,0) x3
    y_true = [1, 1, 0, 0, 1, 1, 1]
    y_pred = [1, 1, 1, 1, 0, 0, 0]
    assert counts.precision == pytest.approx(precision_score(y_true, y_pred))
    assert counts.recall == pytest.approx(recall_score(y_true, y_pred))
    assert counts.image_fp_rate == pytest.approx(2 / 3)
    assert counts.fp_per_image == pytest.approx(2 / 3)
    assert DetectionCounts().precision == 0.0 and DetectionCounts().image_fp_rate == 0.0


def test_yolo_labels_round_trip():
    xyxy = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 256.0, 144.0]])
    text = format_yolo_labels([1, 3], xyxy, 256, 144)
    assert text.splitlines()[1] == "3 0.500000 0.500000 1.000000 1.000000"
    cls, back = parse_yolo_labels(text, 256, 144)
    assert cls.tolist() == [1, 3] and np.allclose(back, xyxy, atol=1e-3)
    assert format_yolo_labels([], np.zeros((0, 4)), 10, 10) == ""
    assert parse_yolo_labels("\n", 10, 10)[1].shape == (0, 4)
    with pytest.raises(ValueError, match="5 values"):
        parse_yolo_labels("1 0.5 0.5\n", 10, 10)
