"""What `quarry label` labels, as sources: a video (its frames at decode.stride), or a group
of images (a mining video's candidate snapshots, or one folder of an image tree). A source is
the unit of exactly-once: its outputs are committed together with its done record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.config import ConfigError
from engine.labels.config import LabelInputConfig
from engine.mining.inputs import list_inputs
from engine.storage import is_remote, local_path, safe_key

# candidate columns that change from frame to frame (everything else is per video)
PER_FRAME = {"snapshot_path", "frame", "timestamp_s", "yolo_score", "fused_score", "semantic_state", "gate_pass",
             "sustained_cues", "gate_confidence", "clip_p_workzone", "cue_count", "cue_area_frac", "n_boxes",
             "boxes_json", "isolated_boxes_json"}


@dataclass(frozen=True)
class LabelSource:
    key: str
    kind: str  # video | images
    uri: str  # the video, or the folder / manifest the images come from
    video_label: str = "unknown"
    items: tuple[dict, ...] = ()  # images: {"uri", "name", "frame"}
    metadata: dict = field(default_factory=dict)

    def task_row(self) -> dict:
        return {"uri": self.uri, "key": self.key, "video_label": self.video_label, "source_kind": self.kind,
                "items_json": json.dumps(list(self.items))}


def _videos(cfg: LabelInputConfig) -> list[LabelSource]:
    return [LabelSource(v.key, "video", v.uri, v.video_label, metadata={**v.metadata, "video_stem": Path(v.uri).stem})
            for v in list_inputs(cfg.source, cfg.extensions)]


def _candidates(cfg: LabelInputConfig) -> list[LabelSource]:
    try:
        table = pd.read_parquet(cfg.source) if cfg.source.endswith(".parquet") else pd.read_csv(cfg.source)
    except Exception as exc:
        raise ConfigError(f"input.source = {cfg.source!r}: cannot read candidates manifest ({exc})") from None
    missing = sorted({"video_key", "frame", "snapshot_path", "video_label"} - set(table.columns))
    if missing:
        raise ConfigError(f"input.source = {cfg.source!r}: a candidates manifest needs columns {missing}")
    base = cfg.source.rsplit("/", 1)[0] if is_remote(cfg.source) else str(Path(cfg.source).parent)
    sources = []
    for key, group in table.sort_values(["video_key", "frame"]).groupby("video_key", sort=True):
        items = tuple({"uri": p if is_remote(p) or Path(local_path(p)).is_absolute() else f"{base}/{p}",
                       "name": Path(p).stem, "frame": int(f)} for p, f in zip(group["snapshot_path"], group["frame"]))
        first = group.iloc[0]
        meta = {c: first[c] for c in group.columns if c not in PER_FRAME and c != "video_label"
                and group[c].astype(str).nunique() == 1 and not pd.isna(first[c])}
        meta.setdefault("video_stem", str(key))
        sources.append(LabelSource(safe_key(str(key)) or "video", "images", cfg.source, str(first["video_label"]),
                                   items, {k: (v.item() if hasattr(v, "item") else v) for k, v in meta.items()}))
    return sources


def _image_folder(cfg: LabelInputConfig) -> list[LabelSource]:
    root = Path(local_path(cfg.source))
    if not root.is_dir():
        raise ConfigError(f"input.source = {cfg.source!r}: not a folder of images")
    suffixes = {s.lower() for s in cfg.image_extensions}
    by_folder: dict[Path, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        by_folder.setdefault(path.parent, []).append(path)
    sources = []
    for folder, paths in by_folder.items():
        rel = folder.relative_to(root).as_posix()
        key = safe_key(rel.replace("/", "__")) if rel != "." else "images"
        items = tuple({"uri": str(p), "name": safe_key(p.stem), "frame": i} for i, p in enumerate(paths))
        sources.append(LabelSource(key, "images", str(folder), cfg.video_label, items, {"folder": rel}))
    return sources


def list_sources(cfg: LabelInputConfig) -> list[LabelSource]:
    """The configured sources, sorted by key; raise ConfigError if there are none."""
    sources = {"videos": _videos, "candidates": _candidates, "images": _image_folder}[cfg.kind](cfg)
    if not sources:
        raise ConfigError(f"input.source = {cfg.source!r}: nothing to label ({cfg.kind})")
    keys = [s.key for s in sources]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"input.source = {cfg.source!r}: two sources share a key after making names safe")
    return sources[: cfg.limit] if cfg.limit else sources
