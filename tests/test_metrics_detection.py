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


def _coco_eval(images):
    """mAP50 and mAP50-95 from pycocotools on the same detections."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": str(c)} for c in range(3)]}
    dets = []
    for i, (pred, conf, cls, boxes, gcls) in enumerate(images, 1):
        gt["images"].append({"id": i, "width": 300, "height": 300})
        for b, c in zip(boxes, gcls):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(c) + 1,
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                                      "iscrowd": 0})
        for b, s, c in zip(pred, conf, cls):
            dets.append({"image_id": i, "category_id": int(c) + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
        evaluator.params.areaRng = [[0, 1e10]] * 4  # one area range: all objects
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[1], evaluator.stats[0]


def test_map_agrees_with_pycocotools():
    from engine.metrics.detection import DetectionEvaluator

    rng = np.random.default_rng(5)
    images = []
    for _ in range(25):
        n = int(rng.integers(0, 6))
        centres = rng.uniform(30, 270, (n, 2))
        sizes = rng.uniform(10, 40, (n, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        gcls = rng.integers(0, 3, n)
        keep = rng.random(n) < 0.8
        pred = boxes[keep] + rng.normal(0, 4, (keep.sum(), 4))
        cls = np.where(rng.random(keep.sum()) < 0.85, gcls[keep], (gcls[keep] + 1) % 3)
        extra = int(rng.integers(0, 3))  # false positives
        ex_c = rng.uniform(30, 270, (extra, 2))
        pred = np.concatenate([pred, np.concatenate([ex_c - 10, ex_c + 10], axis=1)])
        cls = np.concatenate([cls, rng.integers(0, 3, extra)])
        conf = rng.random(len(pred))
        images.append((pred, conf, cls, boxes, gcls))
    ev = DetectionEvaluator()
    for img in images:
        ev.add_image(*img)
    ours = ev.results()
    map50, map50_95 = _coco_eval(images)
    assert ours["map50"] == pytest.approx(map50, abs=0.005)
    assert ours["map50_95"] == pytest.approx(map50_95, abs=0.005)
    assert 0.2 < ours["map50"] < 1.0, "a non-trivial case"


def test_evaluator_on_images_without_objects():
    from engine.metrics.detection import DetectionEvaluator

    ev = DetectionEvaluator(conf_threshold=0.5)
    ev.add_image(np.array([[0, 0, 5, 5]]), [0.9], [1], np.zeros((0, 4)), [])
    ev.add_image(np.array([[0, 0, 5, 5]]), [0.3], [1], np.zeros((0, 4)), [])
    ev.add_image(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [])
    r = ev.results()
    assert (r["map50"], r["map50_95"], r["negative_images"]) == (0.0, 0.0, 3)
    assert r["fp_rate"] == pytest.approx(1 / 3) and r["fp_per_negative_image"] == pytest.approx(1 / 3)
