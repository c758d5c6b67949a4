"""Held-out detector evaluation on a hand-made folder with a stub model: known counts."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from engine.evaluate.heldout import evaluate_heldout, evaluate_yolo_folder
from engine.models.detector import DetectorSpec
from engine.yolo_format import format_yolo_labels


class TableModel:
    """Answers `predict` from a table: image size -> boxes (tells images apart by their width)."""

    def __init__(self, answers):
        self.answers = answers

    def predict(self, images, **kwargs):
        out = []
        for image in images:
            boxes = self.answers.get(image.shape[1], [])
            xyxy = torch.tensor([b[:4] for b in boxes], dtype=torch.float32).reshape(-1, 4)
            out.append(SimpleNamespace(boxes=SimpleNamespace(
                xyxy=xyxy, conf=torch.tensor([b[4] for b in boxes], dtype=torch.float32),
                cls=torch.tensor([b[5] for b in boxes], dtype=torch.float32))))
        return out


def _folder(root, images):
    """images: {name: (width, [(cls, x1, y1, x2, y2), ...])}"""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, (width, gt) in images.items():
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), np.zeros((40, width, 3), np.uint8))
        (root / "labels" / f"{name}.txt").write_text(
            format_yolo_labels([g[0] for g in gt], np.array([g[1:] for g in gt], float).reshape(-1, 4), width, 40))


def test_workzone_and_lookalike_counts_known_answer(tmp_path):
    _folder(tmp_path / "workzone", {"a": (100, [(0, 10, 10, 20, 20), (1, 50, 10, 60, 20)]), "b": (101, [(2, 0, 0, 30, 30)])})
    _folder(tmp_path / "lookalike", {"c": (102, []), "d": (103, []), "e": (104, [])})
    model = TableModel({
        100: [(10, 10, 20, 20, 0.9, 0), (70, 10, 80, 20, 0.8, 1)],  # a: one TP, one FP; the class-1 object missed
        101: [(0, 0, 30, 30, 0.7, 3)],  # b: right place, wrong class -> FP and a miss
        102: [(5, 5, 9, 9, 0.6, 0), (1, 1, 3, 3, 0.5, 2)],  # c: two FPs on a lookalike frame
        104: [(5, 5, 9, 9, 0.3, 0)],  # e: one FP
    })
    spec = DetectorSpec(source="x.pt", conf_threshold=0.25)
    counts = evaluate_yolo_folder(model, tmp_path / "workzone", spec)
    assert (counts["tp"], counts["fp"], counts["fn"], counts["images"]) == (1, 2, 2, 2)
    # AP50 per class with ground truth: cone 1.0 (its one box found first), barrel 0 (missed), sign 0 -> 1/3
    assert counts["map50"] == pytest.approx(1 / 3, abs=1e-6)
    metrics = evaluate_heldout(model, tmp_path, spec)
    assert metrics["workzone"]["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["workzone"]["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["lookalike"] == {"images": 3, "fp_rate": pytest.approx(2 / 3, abs=1e-4),
                                    "fp_per_image": pytest.approx(1.0), "fp": 3}
    assert metrics["workzone"]["map50"] == pytest.approx(1 / 3, abs=1e-4)


def test_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="no images under"):
        evaluate_yolo_folder(TableModel({}), tmp_path, DetectorSpec(source="x.pt"))
