"""One mining run: skip finished videos, mine the rest on Ray, rebuild the tables, summarise."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import time
from pathlib import Path

from engine.mining.config import MineConfig
from engine.mining.inputs import VideoInput
from engine.mining.outputs import read_marker, rebuild_tables
from engine.mining.pipeline import completed_keys, init_ray, mine_videos, run_hash
from engine.mining.summary import summarize_candidates, summary_markdown
from engine.storage import atomic_write_json, atomic_write_text

log = logging.getLogger("quarry.mine")


def file_digest(path) -> str | None:
    """First 12 hex digits of a local file's SHA-256 (identifies a checkpoint's version)."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_mining(config: MineConfig, videos: list[VideoInput]) -> dict:
    """Mine `videos` into `config.output.out_dir`; write and return the run summary."""
    started = time.perf_counter()
    out = Path(config.output.out_dir)
    rh = run_hash(config)
    done_before = completed_keys(out, videos, rh)
    todo = [v for v in videos if v.key not in done_before]
    log.info("%d inputs: %d already done, %d to mine -> %s", len(videos), len(done_before), len(todo), out)
    provenance = {"mode": config.selection.mode, "detector": config.scoring.detector.source,
                  "detector_sha256": file_digest(config.scoring.detector.source),
                  "clip": config.scoring.clip.arch if config.scoring.use_clip else "none",
                  "clip_checkpoint_sha256": file_digest(config.scoring.clip.checkpoint),
                  "quarry_version": package_version("quarry"), "config_hash": rh}
    mined = {"frames_scored": 0, "seconds": 0.0, "startup_s": 0.0, "steady_fps": 0.0}
    if todo:
        started_ray = init_ray(config)
        try:
            mined = mine_videos(config, todo, provenance)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    candidates, errors = rebuild_tables(out, videos)
    markers = [m for m in (read_marker(out, v.key) for v in videos) if m]
    reasons: dict[str, int] = {}
    for marker in markers:
        for reason, count in marker["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    frames, mining_s = mined["frames_scored"], mined["seconds"]
    summary = {
        "run_id": time.strftime("%Y%m%d-%H%M%S"),
        "mode": config.selection.mode,
        "config_hash": rh,
        "out_dir": str(out),
        "inputs": {"total": len(videos), "processed": len(markers), "errored": len(errors),
                   "skipped_done": len(done_before)},
        "frames_scored": frames,
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "candidates": summarize_candidates(candidates, config.gate.min_cue_kinds),
        "errors": errors[["video_path", "reason"]].to_dict("records"),
        "seconds": {"total": round(time.perf_counter() - started, 1), "mining": round(mining_s, 1),
                    "frames_per_s": round(frames / mining_s, 1) if mining_s else 0.0,
                    # until the first video is done (cluster + actor pool start), then the rest
                    "startup": round(mined["startup_s"], 1), "steady_frames_per_s": round(mined["steady_fps"], 1)},
    }
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return summary
