"""Scan images with a segmentation model (or a weighted ensemble) for hard negatives (seeds 002,
003): per image the forged-pixel share at a threshold, connected regions over a minimum area,
max probability and a dark tag; flagged authentic images, worst first, capped at max_samples,
go to hard_negatives.parquet for `quarry build task=segment`.

    quarry scan --config configs/scan.yaml input.source=runs/world/segmentation/index.parquet
    quarry scan input.source=/data/authentic/ input.where=null models='[{checkpoint: a.pt, weight: 1.2}]'
"""

from __future__ import annotations

import sys

from engine.config import write_resolved_config
from engine.segment.scan import ScanConfig, run_scan, summary_markdown
from engine.tracking import log_job_run

CONFIG = ScanConfig
SUMMARY = "scan images with a segmentation model for hard negatives (Ray Data)"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the images (a table brings its folder), the checkpoints."""
    return ["input.source", "models.*.checkpoint"], ["out_dir"]


def run(config: ScanConfig) -> dict:
    write_resolved_config(config, config.out_dir)
    summary = run_scan(config)
    if config.tracking.enabled:
        metrics = {k: summary[k] for k in ("images", "scanned", "errored", "flagged", "hard_negatives")}
        summary.update(log_job_run(config.tracking, config.out_dir, "scan", "", config, metrics,
                                   [config.out_dir / n for n in ("summary.json", "hard_negatives.csv", "config.resolved.yaml")]))
    return summary


def format_summary(summary: dict) -> str:
    return summary_markdown(summary)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
