"""Event-level evaluation: a model mines the held-out videos with the mining job (the same Ray
Data pipeline, detector and gate as in production), and the timelines' gate decisions become
alarm events (engine/evaluate/events.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.evaluate.events import video_events
from engine.mining.config import MineConfig
from engine.mining.inputs import list_inputs


def evaluate_videos(weights: Path, mining: MineConfig, manifest: Path, out_dir: Path, merge_gap: int) -> dict:
    """Mine `manifest`'s videos with `weights` into `out_dir`; event metrics from the timelines."""
    from jobs import mine

    cfg = mining.model_copy(deep=True)
    cfg.input.source = str(manifest)
    cfg.output.out_dir = Path(out_dir)
    cfg.scoring.detector.source = str(weights)
    cfg.tracking.enabled = False
    summary = mine.run(cfg)
    videos = list_inputs(str(manifest), cfg.input.extensions)
    meta = pd.read_parquet(manifest) if str(manifest).endswith(".parquet") else pd.read_csv(manifest)
    durations = dict(zip(meta["video_stem"], meta["duration_s"])) if "duration_s" in meta else {}
    timelines, labels, seconds = {}, {}, {}
    for video in videos:
        path = Path(out_dir) / "timelines" / f"{video.key}.parquet"
        if not path.is_file():
            continue  # an input that failed: in the mining run's errors
        timelines[video.key] = pd.read_parquet(path, columns=["frame", "gate_pass"])
        labels[video.key] = video.video_label
        seconds[video.key] = float(durations.get(Path(video.uri).stem, video.metadata.get("duration_s") or 0.0))
    result = video_events(timelines, labels, seconds, merge_gap)
    result["errored_videos"] = summary["inputs"]["errored"]
    return result
