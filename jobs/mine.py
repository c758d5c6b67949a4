"""Mine hard negatives from videos: stream them through Ray Data actor pools that decode,
run the detector and CLIP, fuse the scores; gate each video in time; write candidate JPEGs,
per-video timelines, candidates.parquet/.csv, errors.parquet and a run summary; log the run
to MLflow. Reruns skip completed videos.

    quarry mine --config configs/mine.yaml input.source=runs/world/videos.parquet
    ray job submit --working-dir . -- python -m jobs.mine --config configs/mine.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.config import write_resolved_config
from engine.mining.config import MineConfig
from engine.mining.run import check_cue_classes, mining_inputs, run_mining
from engine.mining.summary import summary_markdown
from engine.models.clip import check_clip_source
from engine.models.detector import check_detector_source
from engine.tracking import log_job_run

CONFIG = MineConfig
SUMMARY = "mine candidate frames from videos (Ray Data, detector + CLIP, temporal gate)"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the detector, the CLIP checkpoint and the output
    folder; the videos are read from the store by the scoring tasks themselves."""
    return ["scoring.detector.source", "scoring.clip.checkpoint"], ["output.out_dir"]


def run(config: MineConfig) -> dict:
    check_detector_source(config.scoring.detector.source)
    if config.scoring.use_clip:
        check_clip_source(config.scoring.clip, "scoring.clip")
    check_cue_classes(config)
    videos = mining_inputs(config)
    write_resolved_config(config, config.output.out_dir)
    summary = run_mining(config, videos)
    if config.tracking.enabled:
        out, io = Path(config.output.out_dir), summary["inputs"]
        metrics = {"inputs": io["total"], "processed": io["processed"], "skipped_done": io["skipped_done"],
                   "errored": io["errored"], "frames_scored": summary["frames_scored"],
                   "candidates": summary["candidates"]["candidates"], "frames_per_s": summary["seconds"]["frames_per_s"]}
        summary.update(log_job_run(config.tracking, out, "mine", summary["config_hash"], config, metrics,
                                   [out / n for n in ("summary.json", "summary.md", "candidates.csv", "config.resolved.yaml")]))
    return summary


def format_summary(summary: dict) -> str:
    return summary_markdown(summary)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
