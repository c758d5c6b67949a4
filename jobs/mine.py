"""Mine hard negatives from videos: stream them through Ray Data actor pools that decode,
run the detector and CLIP, fuse the scores; gate each video in time; write candidate JPEGs,
per-video timelines, candidates.parquet/.csv, errors.parquet and a run summary; log the run
to MLflow. Reruns skip completed videos.

    quarry mine --config configs/mine.yaml input.source=runs/world/videos.parquet
    ray job submit --working-dir . -- python -m jobs.mine --config configs/mine.yaml
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from engine.config import write_resolved_config
from engine.mining.config import MineConfig
from engine.mining.inputs import list_inputs
from engine.mining.outputs import read_marker, rebuild_tables
from engine.mining.pipeline import completed_keys, init_ray, mine_videos, run_hash
from engine.mining.summary import summarize_candidates, summary_markdown
from engine.models.detector import check_detector_source
from engine.storage import atomic_write_json, atomic_write_text
from engine.tracking import mlflow_run, resolve_tracking_uri

CONFIG = MineConfig
SUMMARY = "mine candidate frames from videos (Ray Data, detector + CLIP, temporal gate)"
log = logging.getLogger("quarry.mine")


def run(config: MineConfig) -> dict:
    started = time.perf_counter()
    out = Path(config.output.out_dir)
    check_detector_source(config.scoring.detector.source)
    videos = list_inputs(config.input.source, config.input.extensions, config.input.limit)
    write_resolved_config(config, out)
    rh = run_hash(config)
    done_before = completed_keys(out, videos, rh)
    todo = [v for v in videos if v.key not in done_before]
    log.info("%d inputs: %d already done, %d to mine -> %s", len(videos), len(done_before), len(todo), out)
    provenance = {"mode": config.selection.mode, "detector": config.scoring.detector.source,
                  "clip": config.scoring.clip.arch if config.scoring.use_clip else "none", "config_hash": rh}
    frames_scored, mining_s, startup_s, steady_fps = 0, 0.0, 0.0, 0.0
    if todo:
        started_ray = init_ray(config)
        try:
            mined = mine_videos(config, todo, provenance)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        frames_scored, mining_s = mined["frames_scored"], mined["seconds"]
        startup_s, steady_fps = mined["startup_s"], mined["steady_fps"]
    candidates, errors = rebuild_tables(out, videos)
    markers = [m for m in (read_marker(out, v.key) for v in videos) if m]
    reasons: dict[str, int] = {}
    for marker in markers:
        for reason, count in marker["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    summary = {
        "run_id": time.strftime("%Y%m%d-%H%M%S"),
        "mode": config.selection.mode,
        "config_hash": rh,
        "out_dir": str(out),
        "inputs": {"total": len(videos), "processed": len(markers), "errored": len(errors),
                   "skipped_done": len(done_before)},
        "frames_scored": frames_scored,
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "candidates": summarize_candidates(candidates, config.gate.min_cue_kinds),
        "errors": errors[["video_path", "reason"]].to_dict("records"),
        "seconds": {"total": round(time.perf_counter() - started, 1), "mining": round(mining_s, 1),
                    "frames_per_s": round(frames_scored / mining_s, 1) if mining_s else 0.0,
                    # until the first video is done (cluster + actor pool start), then the rest
                    "startup": round(startup_s, 1), "steady_frames_per_s": round(steady_fps, 1)},
    }
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    if config.tracking.enabled:
        _track(config, summary, out)
    return summary


def _track(config: MineConfig, summary: dict, out: Path) -> None:
    import mlflow

    uri = resolve_tracking_uri(config.tracking.tracking_uri, out)
    with mlflow_run(uri, config.tracking.experiment, f"mine-{summary['run_id']}", config.model_dump(mode="json"),
                    {"quarry.job": "mine", "quarry.config_hash": summary["config_hash"]}) as run:
        io = summary["inputs"]
        mlflow.log_metrics({"inputs": io["total"], "processed": io["processed"], "errored": io["errored"],
                            "frames_scored": summary["frames_scored"], "candidates": summary["candidates"]["candidates"],
                            "frames_per_s": summary["seconds"]["frames_per_s"]})
        for name in ("summary.json", "summary.md", "candidates.csv", "config.resolved.yaml"):
            mlflow.log_artifact(str(out / name))
        summary["mlflow_run_id"] = run.info.run_id
        summary["tracking_uri"] = uri


def format_summary(summary: dict) -> str:
    return summary_markdown(summary)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
