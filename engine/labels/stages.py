"""The labelling stage: a Ray Data callable class that takes tasks (a chunk of a video, or a
group of images), runs the detector and applies the label rules. Rows leave without pixels: one
per frame, with its YOLO label file's text (and a video frame's JPEG bytes) for the driver to
write under the output folder, as the actor may run on a node without it; then one `chunk_end`
(or `error`) per task, as in mining, so the same assembler collects them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd

from engine.labels.rules import KEPT, LabelRules, decide_boxes, frame_outcome
from engine.models.detector import DetectorSpec
from engine.storage import atomic_write_bytes, atomic_write_text, is_remote, local_copy
from engine.video.chunks import DecodeConfig, decode_task, plan_chunks, task_ids
from engine.yolo_format import format_yolo_labels

ROW_COLUMNS = {
    "row_kind": str,  # frame | chunk_end | error
    "video_key": str,
    "chunk_index": np.int64,
    "n_chunks": np.int64,
    "frame": np.int64,  # video frame, or the image's frame / index in its source
    "name": str,
    "image_path": str,
    "label_path": str,
    "width": np.int64,
    "height": np.int64,
    "video_label": str,
    "boxes_json": str,  # [[class, class_id, conf, x1, y1, x2, y2, reason], ...] native pixels
    "n_boxes": np.int64,
    "n_kept": np.int64,
    "use": bool,
    "sample_kind": str,  # hard_negative | pseudo_labelled | unused
    "loss_weight": np.float64,
    "n_rows": np.int64,
    "error": str,
    "label_text": str,  # the YOLO label file's text, written by the driver at label_path
    "jpeg": object,  # a video frame's JPEG bytes, written by the driver at image_path (b"" for an existing image)
}
FILE_COLUMNS = ["label_text", "jpeg"]
TASK_COLUMNS = ["uri", "video_key", "video_label", "source_kind", "items_json", "fps", "first_frame", "last_frame",
                "native_width", "native_height", "error", "chunk_index", "n_chunks"]


def empty_row(**values) -> dict:
    row = {name: (b"" if kind is object else kind() if kind in (str, bool) else kind(0)) for name, kind in ROW_COLUMNS.items()}
    row.update(values)
    return row


def to_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS)).astype(ROW_COLUMNS)


def write_frame_files(rows: pd.DataFrame) -> None:
    """On the driver: write each labelled frame's label file (and a video frame's JPEG) that an
    actor returned in `rows`."""
    for row in rows[(rows["row_kind"] == "frame") & (rows["error"] == "")].itertuples(index=False):
        if len(row.jpeg):
            atomic_write_bytes(Path(row.image_path), row.jpeg)
        atomic_write_text(Path(row.label_path), row.label_text)


def plan_label_tasks(source: dict, decode: dict, images_per_task: int) -> list[dict]:
    """A source's tasks (Ray Data flat_map): a video's frame ranges, or its images in groups."""
    if source["source_kind"] == "video":
        tasks = plan_chunks(source, decode)
        return [{c: task.get(c, "") for c in TASK_COLUMNS} for task in tasks]
    items = json.loads(source["items_json"])
    groups = [items[i : i + images_per_task] for i in range(0, len(items), images_per_task)] or [[]]
    return [{"uri": source["uri"], "video_key": source["key"], "video_label": source["video_label"],
             "source_kind": "images", "items_json": json.dumps(group), "fps": 0.0, "first_frame": 0, "last_frame": 0,
             "native_width": 0, "native_height": 0, "error": "", "chunk_index": i, "n_chunks": len(groups)}
            for i, group in enumerate(groups)]


def read_image(uri: str) -> np.ndarray:
    """An RGB image from a local path or an object-store URI; OSError naming the problem. An
    image the driver mirrored from the store is read from the store on a node without it."""
    from engine.store_mirror import store_uri

    if not is_remote(uri) and not Path(uri).exists() and (stored := store_uri(uri)):
        uri = stored
    with local_copy(uri) as path:
        if not Path(path).is_file():
            raise OSError("file not found")
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError("cannot read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameLabeler:
    """Holds the detector; labels tasks of frames."""

    def __init__(self, detector: dict, rules: dict, decode: dict, out_dir: str, jpeg_quality: int):
        from engine.labels.config import RulesConfig
        from engine.offline import enable_offline

        enable_offline()
        self.spec = DetectorSpec.model_validate(detector)
        self.rules: LabelRules = RulesConfig.model_validate(rules).to_rules()
        self.decode = DecodeConfig.model_validate(decode)
        self.out, self.jpeg_quality = Path(out_dir), jpeg_quality
        self.setup()

    def setup(self) -> None:
        from engine.models.detector import build_detector
        from engine.staging import pull_on_this_node

        pull_on_this_node({"detector.source": self.spec.source})  # on a node without the driver's mirror
        self.detector = build_detector(self.spec.source)

    def label_images(self, metas: list[dict], images: list[np.ndarray], video_label: str) -> list[dict]:
        """Detect and decide for a batch of frames; one row per frame, with its label file's text.
        `metas[i]`: video_key, chunk_index, n_chunks, frame, name, and image_path when the
        image already exists on disk (else the row carries the frame as a JPEG)."""
        from engine.models.detector import detect

        rows = []
        for meta, image, dets in zip(metas, images, detect(self.detector, images, self.spec)):
            h, w = image.shape[:2]
            reasons = decide_boxes(dets.conf, dets.xyxy, w, h, video_label, self.rules)
            kept = reasons == KEPT
            use, kind, weight = frame_outcome(video_label, int(kept.sum()), self.rules)
            key = meta["video_key"]
            image_path, jpeg = meta.get("image_path") or str(self.out / "frames" / key / f"{meta['name']}.jpg"), b""
            if not meta.get("image_path"):
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for {key} frame {meta['frame']}")
                jpeg = data.tobytes()
            label_path = self.out / "labels" / key / f"{meta['name']}.txt"
            boxes = [[self.detector.names[int(c)], int(c), round(float(s), 4), *(round(float(v), 1) for v in b), r]
                     for c, s, b, r in zip(dets.cls, dets.conf, dets.xyxy, reasons)]
            rows.append(empty_row(
                row_kind="frame", **{k: meta[k] for k in ("video_key", "chunk_index", "n_chunks", "frame", "name")},
                image_path=image_path, label_path=str(label_path), width=w, height=h, video_label=video_label,
                label_text=format_yolo_labels(dets.cls[kept], dets.xyxy[kept], w, h), jpeg=jpeg,
                boxes_json=json.dumps(boxes), n_boxes=len(boxes), n_kept=int(kept.sum()), use=use, sample_kind=kind,
                loss_weight=weight))
        return rows

    def __call__(self, batch: dict) -> Iterator[pd.DataFrame]:
        for task in pd.DataFrame(batch).itertuples(index=False):
            ids = task_ids(task)
            if task.source_kind == "video":
                yield from self._label_video_task(task, ids)
            else:
                yield from self._label_image_task(task, ids)

    def _label_video_task(self, task, ids: dict) -> Iterator[pd.DataFrame]:
        n_rows = 0
        for kind, payload in decode_task(task, self.decode):
            if kind == "frames":
                frame_ids, pixels = payload
                metas = [{**ids, "frame": int(f), "name": f"{task.video_key}_f{int(f)}"} for f in frame_ids]
                rows = self.label_images(metas, list(pixels), task.video_label)
                n_rows += len(rows)
                yield to_frame(rows)
            elif kind == "error":
                yield to_frame([empty_row(row_kind="error", error=payload, video_label=task.video_label, **ids)])
            else:
                yield to_frame([empty_row(row_kind="chunk_end", n_rows=n_rows, **ids)])

    def _label_image_task(self, task, ids: dict) -> Iterator[pd.DataFrame]:
        """Images that cannot be read become frame rows carrying the error; the rest are labelled."""
        rows, metas, images = [], [], []
        for item in json.loads(task.items_json):
            meta = {**ids, "frame": int(item["frame"]), "name": item["name"], "image_path": item["uri"]}
            try:
                images.append(read_image(item["uri"]))
                metas.append(meta)
            except OSError as exc:
                rows.append(empty_row(row_kind="frame", video_label=task.video_label, error=f"{item['uri']}: {exc}",
                                      **{k: meta[k] for k in ("video_key", "chunk_index", "n_chunks", "frame", "name",
                                                              "image_path")}))
        rows += self.label_images(metas, images, task.video_label) if images else []
        yield to_frame(rows + [empty_row(row_kind="chunk_end", n_rows=len(rows), **ids)])
