"""One build: the set (detection or segmentation), its sampling weights, the effective share
of each kind once weighted, exports, and a summary."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from engine.build.config import BuildConfig
from engine.build.weights import effective_shares, sample_weights, unmatched_rules
from engine.config import ConfigError
from engine.storage import atomic_write_json, write_table

log = logging.getLogger("quarry.build")


def dataset_hash(samples) -> str:
    """Identifies a built set by its samples, splits, weights and label contents."""
    digest = hashlib.sha256()
    for row in samples.sort_values("path").itertuples(index=False):
        digest.update(f"{row.path}|{row.split}|{row.weight:.6g}|{row.loss_weight:.6g}|{row.kind}".encode())
    return digest.hexdigest()[:12]


def built_set_task(columns) -> str | None:
    """The task a built set's samples table (its column names) is for: detect sets name label
    files, segment sets mask files."""
    return "detect" if "label_path" in columns else "segment" if "mask_path" in columns else None


def check_out_dir(cfg: BuildConfig) -> None:
    """A set of the other task in `out_dir` would be half replaced (its samples table and images),
    half left (labels/ or masks/): refuse before touching it."""
    import pyarrow.parquet as pq

    table = Path(cfg.out_dir) / "samples.parquet"
    if not table.is_file():
        return
    held = built_set_task(pq.read_schema(table).names)
    if held is not None and held != cfg.task:
        raise ConfigError(f"out_dir = {str(cfg.out_dir)!r}: holds a {held} set; building a {cfg.task} set there "
                          "would overwrite it: give another out_dir (configs/train-segment.yaml reads a segment set "
                          "from runs/dataset-seg)")


def run_build(cfg: BuildConfig) -> dict:
    started = time.perf_counter()
    out = Path(cfg.out_dir)
    if cfg.task == "detect":
        from engine.build.detection import build_detection_set

        built = build_detection_set(cfg)
    else:
        from engine.build.segmentation import build_segmentation_set

        built = build_segmentation_set(cfg)
    samples = built["samples"]
    w = cfg.weights
    samples["weight"] = sample_weights(samples, w.kind, w.category, w.metadata,
                                       w.forged_area if cfg.task == "segment" else None)
    unmatched = unmatched_rules(samples, w.category, w.metadata)
    for key in unmatched:
        log.warning("%s: no sample of this set matches it, so it weighs nothing (a typo?)", key)
    write_table(samples, out / "samples.parquet", csv=True)
    write_table(built["duplicates"], out / "duplicates.parquet")
    write_table(built["errors"], out / "errors.parquet")
    train = samples[samples["split"] == "train"]
    summary = {
        "task": cfg.task, "out_dir": str(out), "dataset_hash": dataset_hash(samples),
        "samples": {split: int((samples["split"] == split).sum()) for split in ("train", "val")},
        "by_kind": {str(k): int(v) for k, v in samples["kind"].value_counts().items()},
        "by_category": ({str(k): int(v) for k, v in samples["category"].value_counts().items()}
                        if "category" in samples else {}),
        "effective_share_train": effective_shares(train, train["weight"].to_numpy()) if len(train) else {},
        "duplicates_dropped": len(built["duplicates"]),
        "weights_unmatched": unmatched,
        "errors": built["errors"].to_dict("records"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if cfg.task == "detect" and cfg.exports:
        from engine.build.exports import write_exports

        summary["exports"] = write_exports(out, samples, built["names"], cfg.exports)
    atomic_write_json(out / "summary.json", summary)
    return summary


def summary_markdown(s: dict) -> str:
    lines = [f"# Built {s['task']} set: {s['out_dir']} ({s['dataset_hash']})", "",
             f"- samples: {s['samples']['train']} train / {s['samples']['val']} val; "
             f"{s['duplicates_dropped']} near-duplicates dropped; {len(s['errors'])} errors",
             "", "| kind | train samples | share | share after weighting |", "|---|---|---|---|"]
    for kind, v in s["effective_share_train"].items():
        lines.append(f"| {kind} | {v['samples']} | {v['share']:.3f} | {v['weighted_share']:.3f} |")
    if s["by_category"]:
        lines += ["", "categories: " + ", ".join(f"{k} {v}" for k, v in s["by_category"].items())]
    if s["errors"]:
        lines += ["", "| path | error |", "|---|---|", *[f"| {e['path']} | {e['reason']} |" for e in s["errors"]]]
    return "\n".join(lines) + "\n"
