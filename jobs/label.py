"""Pseudo-label frames with the current detector (seed 001): a video set at a stride, a mining
candidates manifest, or an image folder, on a Ray Data actor pool. Writes YOLO label files;
in videos whose alarm was false (fp/clean) the boxes that raised it are dropped by rule, and
every box keeps its reason. Reruns skip sources already done with the same model and rules.

    quarry label --config configs/label.yaml input.source=runs/world/videos.parquet
    quarry label input.kind=candidates input.source=runs/mine/candidates.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.config import write_resolved_config
from engine.labels.config import LabelConfig
from engine.labels.run import run_labelling, summary_markdown
from engine.models.detector import check_detector_source
from engine.tracking import log_job_run

CONFIG = LabelConfig
SUMMARY = "pseudo-label frames, dropping false-alarm boxes by rule (Ray Data)"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): video and candidate sources are read from the store
    by the tasks; an image folder is mirrored."""
    inputs = ["detector.source", "ground_truth"] + (["input.source"] if data.get("input", {}).get("kind") == "images" else [])
    return inputs, ["output.out_dir"]


def run(config: LabelConfig) -> dict:
    check_detector_source(config.detector.source)
    write_resolved_config(config, config.output.out_dir)
    summary = run_labelling(config)
    if config.tracking.enabled:
        out = Path(config.output.out_dir)
        metrics = {"frames": summary["frames"]["labelled"], "boxes_kept": summary["boxes"]["kept"],
                   "boxes_dropped": summary["boxes"]["total"] - summary["boxes"]["kept"],
                   "sources_errored": summary["sources"]["errored"]}
        if summary.get("truth", {}).get("boxes"):
            metrics.update({k: summary["truth"][k] for k in ("dropped_not_real", "kept_real") if summary["truth"][k] is not None})
        summary.update(log_job_run(config.tracking, out, "label", summary["run_hash"], config, metrics,
                                   [out / n for n in ("summary.json", "summary.md", "config.resolved.yaml")]))
    return summary


def format_summary(summary: dict) -> str:
    return summary_markdown(summary)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
