"""Build a training set from hard negatives, with a sampling-weights table (seeds 000, 002, 003).
Detection: the base YOLO data, `quarry label`'s pseudo-labelled and false-alarm frames, and
reviewed mining candidates as background images (empty label files); split by video,
near-duplicates dropped by CLIP similarity; COCO and Label Studio exports. Segmentation:
forged images with masks plus hard negatives with zero masks, weighted by forged area.

    quarry build --config configs/build.yaml
    quarry build task=segment segment.hard_negatives=runs/scan/hard_negatives.parquet
"""

from __future__ import annotations

import sys

from engine.build.config import BuildConfig
from engine.build.run import check_out_dir, run_build, summary_markdown
from engine.config import write_resolved_config

CONFIG = BuildConfig
SUMMARY = "build a YOLO or segmentation training set with sampling weights from hard negatives"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): each table brings the folder its rows point into; the
    CLIP checkpoint near-duplicates are judged with."""
    return ["detect.base_data", "detect.labels", "detect.candidates", "segment.index", "segment.hard_negatives",
            "clip.checkpoint"], ["out_dir"]


def run(config: BuildConfig) -> dict:
    check_out_dir(config)
    write_resolved_config(config, config.out_dir)
    return run_build(config)


def format_summary(summary: dict) -> str:
    return summary_markdown(summary)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
