"""One mining run: list inputs under stable keys, check the models' cue classes, skip videos
already done under the same run identity, mine the rest on Ray, rebuild the tables, summarise."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from engine.attempts import latest_attempt
from engine.config import ConfigError
from engine.mining.config import MineConfig
from engine.mining.identity import model_identity, package_version, run_hash
from engine.mining.inputs import VideoInput, list_inputs
from engine.mining.outputs import rebuild_tables
from engine.mining.pipeline import completed_keys, mine_videos
from engine.mining.stages import MAX_CUE_KINDS
from engine.mining.summary import summarize_candidates, summary_markdown
from engine.raycluster import check_actor_fits, ray_session
from engine.storage import atomic_write_json, atomic_write_text

log = logging.getLogger("quarry.mine")
KEYS_FILE = "keys.json"  # uri -> output key of every input this out_dir has seen


def mining_inputs(config: MineConfig) -> list[VideoInput]:
    """The configured inputs, each under the key it had in earlier runs into the same out_dir:
    a new input that shares a stem gets a new key instead of renaming (and orphaning) the
    outputs of the old one. The registry is updated before any work."""
    path = Path(config.output.out_dir) / KEYS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    videos = list_inputs(config.input.source, config.input.extensions, config.input.limit, known_keys=known)
    added = {v.uri: v.key for v in videos if v.uri not in known}
    if added:
        atomic_write_json(path, {**known, **added})
    return videos


def check_cue_classes(config: MineConfig) -> None:
    """Fail before any work when the gate could never pass or names classes the detector lacks."""
    from engine.models.detector import detector_class_names

    s, k = config.scoring, config.gate.min_cue_kinds
    if s.cue_classes is None and k == 1:
        return  # any detector has a class: nothing to check, and no model to build here
    names = detector_class_names(s.detector.source)
    cues = s.cue_classes or names
    unknown = sorted(set(cues) - set(names))
    if unknown:
        raise ConfigError(f"scoring.cue_classes = {s.cue_classes}: {unknown} are not classes of the detector "
                          f"{s.detector.source} ({names})")
    if len(cues) > MAX_CUE_KINDS:
        raise ConfigError(f"scoring.cue_classes: the detector has {len(cues)} classes; at most {MAX_CUE_KINDS} "
                          "fit the cue mask, so name the cue classes")
    if k > len(cues):
        raise ConfigError(f"gate.min_cue_kinds = {k}: more than the {len(cues)} cue classes {cues} of "
                          f"{s.detector.source}, so the gate could never pass")


def run_mining(config: MineConfig, videos: list[VideoInput]) -> dict:
    """Mine `videos` into `config.output.out_dir`; write and return the run summary."""
    started = time.perf_counter()
    out = Path(config.output.out_dir)
    models = model_identity(config)
    rh = run_hash(config, models)
    done_before = completed_keys(out, videos, rh)
    todo = [v for v in videos if v.key not in done_before]
    log.info("%d inputs: %d already done, %d to mine -> %s", len(videos), len(done_before), len(todo), out)
    provenance = {"mode": config.selection.mode, "detector": config.scoring.detector.source,
                  "detector_sha256": (models["detector"] or "")[:12],
                  "clip": config.scoring.clip.arch if config.scoring.use_clip else "none",
                  "clip_checkpoint_sha256": (models["clip"] or "")[:12] if config.scoring.clip.checkpoint else None,
                  "quarry_version": package_version("quarry"), "config_hash": rh}
    mined = {"results": {}, "frames_scored": 0, "seconds": 0.0, "startup_s": 0.0, "steady_fps": 0.0}
    if todo:
        with ray_session(config.ray):
            check_actor_fits(config.ray, config.scoring, "scoring")
            mined = mine_videos(config, todo, provenance)
    candidates, errors = rebuild_tables(out, videos)
    attempts = [a for a in (latest_attempt(out, v.key) for v in videos) if a]
    reasons: dict[str, int] = {}
    for kind, marker in attempts:
        for reason, count in (marker["reasons"].items() if kind == "done" else ()):
            reasons[reason] = reasons.get(reason, 0) + count
    frames, mining_s = mined["frames_scored"], mined["seconds"]
    summary = {
        "run_id": time.strftime("%Y%m%d-%H%M%S"),
        "mode": config.selection.mode,
        "config_hash": rh,
        "models": models,
        "out_dir": str(out),
        # total = processed (mined now) + skipped_done (done before, unchanged) + errored
        "inputs": {"total": len(videos), "processed": sum("marker" in r for r in mined["results"].values()),
                   "skipped_done": len(done_before), "errored": len(errors)},
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
