"""Exports of a built YOLO-format detection set: COCO JSON (per split) and Label Studio tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image

from engine.storage import atomic_write_text
from engine.yolo_format import parse_yolo_labels


def _objects(root: Path, samples: pd.DataFrame):
    """(sample row, width, height, class ids, xyxy pixel boxes) for every sample."""
    for row in samples.itertuples(index=False):
        with Image.open(root / row.path) as image:
            width, height = image.size
        cls, xyxy = parse_yolo_labels((root / row.label_path).read_text(), width, height)
        yield row, width, height, cls, xyxy


def to_coco(root: Path, samples: pd.DataFrame, names: dict[int, str]) -> dict:
    """A COCO detection dataset: images, annotations (bbox = x, y, w, h in pixels), categories.
    Category ids are the YOLO class ids + 1 (COCO reserves 0)."""
    images, annotations = [], []
    for image_id, (row, width, height, cls, xyxy) in enumerate(_objects(root, samples), 1):
        images.append({"id": image_id, "file_name": row.path, "width": width, "height": height})
        for c, (x1, y1, x2, y2) in zip(cls, xyxy):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2),
                                         round(float(y2 - y1), 2)],
                                "area": round(float((x2 - x1) * (y2 - y1)), 2), "iscrowd": 0})
    categories = [{"id": int(i) + 1, "name": n} for i, n in sorted(names.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_label_studio(root: Path, samples: pd.DataFrame, names: dict[int, str]) -> list[dict]:
    """Label Studio tasks with the boxes as predictions (percent coordinates), for review there."""
    tasks = []
    for row, width, height, cls, xyxy in _objects(root, samples):
        result = [{"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": width,
                   "original_height": height,
                   "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                             "height": 100 * (y2 - y1) / height, "rectanglelabels": [names.get(int(c), str(c))]}}
                  for c, (x1, y1, x2, y2) in zip(cls, xyxy)]
        tasks.append({"data": {"image": f"/data/local-files/?d={row.path}", "kind": row.kind, "split": row.split},
                      "predictions": [{"model_version": "quarry", "result": result}]})
    return tasks


def write_exports(root: Path, samples: pd.DataFrame, names: dict[int, str], kinds: list[str]) -> dict[str, str]:
    written = {}
    if "coco" in kinds:
        for split, part in samples.groupby("split"):
            path = Path(root) / "exports" / f"coco_{split}.json"
            atomic_write_text(path, json.dumps(to_coco(root, part, names)))
            written[f"coco_{split}"] = str(path)
    if "labelstudio" in kinds:
        path = Path(root) / "exports" / "labelstudio_tasks.json"
        atomic_write_text(path, json.dumps(to_label_studio(root, samples, names)))
        written["labelstudio"] = str(path)
    return written
