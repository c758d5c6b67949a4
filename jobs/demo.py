"""The whole loop on the synthetic world, on one machine, offline. Steps so far:
  1. synth     generate the world (videos with ground truth, YOLO and segmentation sets)
  2. pretrain  train the base detector with Ultralytics' trainer; score it on held-out frames
Steps whose inputs and config are unchanged since the last run in the same work dir are
reused, and the report says so.

    quarry demo --config configs/demo.yaml work_dir=runs/demo seed=0
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from pydantic import Field

from engine.config import Section, config_hash, write_resolved_config
from engine.evaluate.config import HeldoutEvalConfig
from engine.storage import atomic_write_json, atomic_write_text
from engine.synth.config import DetectionSetConfig, SegmentationSetConfig, SynthConfig, VideoSetConfig
from engine.train.base_detector import BaseTrainingConfig
from jobs import pretrain, synth

log = logging.getLogger("quarry.demo")


class DemoConfig(Section):
    """`quarry demo`: every step on the synthetic world under one work dir."""

    work_dir: Path = Field(Path("runs/demo"), description="all outputs go under this folder")
    seed: int = Field(0, ge=0, description="seed of the world and of training")
    reuse: bool = Field(True, description="reuse a step's outputs when its config and inputs are unchanged")
    videos: VideoSetConfig = VideoSetConfig()
    detection: DetectionSetConfig = DetectionSetConfig()
    segmentation: SegmentationSetConfig = SegmentationSetConfig()
    base_model: BaseTrainingConfig = BaseTrainingConfig()
    evaluation: HeldoutEvalConfig = HeldoutEvalConfig()


CONFIG = DemoConfig
SUMMARY = "run the loop end to end on the synthetic world (synth, base model, ...)"


def _cached(marker: Path, key: str, reuse: bool) -> dict | None:
    """The summary stored at `marker` if it was made with `key`, else None."""
    if reuse and marker.is_file():
        stored = json.loads(marker.read_text())
        if stored.get("key") == key:
            return stored["summary"]
    return None


def run(config: DemoConfig) -> dict:
    work = Path(config.work_dir)
    write_resolved_config(config, work)
    steps: dict[str, dict] = {}

    synth_cfg = SynthConfig(out_dir=work / "world", seed=config.seed, videos=config.videos,
                            detection=config.detection, segmentation=config.segmentation)
    key = config_hash(synth_cfg)
    started = time.perf_counter()
    summary = _cached(work / "world" / ".demo-step.json", key, config.reuse)
    reused = summary is not None
    if not reused:
        log.info("step 1/2: synth -> %s", synth_cfg.out_dir)
        summary = synth.run(synth_cfg)
        atomic_write_json(work / "world" / ".demo-step.json", {"key": key, "summary": summary})
    steps["synth"] = {"reused": reused, "seconds": round(time.perf_counter() - started, 1), **summary}

    training = config.base_model.model_copy(update={"seed": config.seed})
    pre_cfg = pretrain.PretrainConfig(world_dir=work / "world", out_dir=work / "base", training=training,
                                      evaluation=config.evaluation)
    key = config_hash(pre_cfg) + steps["synth"]["config_hash"]
    started = time.perf_counter()
    summary = _cached(work / "base" / ".demo-step.json", key, config.reuse)
    reused = summary is not None
    if not reused:
        log.info("step 2/2: pretrain -> %s", pre_cfg.out_dir)
        summary = pretrain.run(pre_cfg)
        atomic_write_json(work / "base" / ".demo-step.json", {"key": key, "summary": summary})
    steps["pretrain"] = {"reused": reused, "seconds": round(time.perf_counter() - started, 1), **summary}

    result = {"work_dir": str(work), "steps": steps}
    atomic_write_text(work / "demo_report.md", format_summary(result))
    atomic_write_json(work / "demo_summary.json", result)
    return result


def format_summary(result: dict) -> str:
    """The demo's report: what each step made, and the base model's held-out quality."""
    s, p = result["steps"]["synth"], result["steps"]["pretrain"]
    how = lambda step: "reused (unchanged)" if step["reused"] else f"{step['seconds']:.0f} s"  # noqa: E731
    v, d, g = s["videos"], s["detection_images"], s["segmentation_images"]
    wz, la = p["heldout"]["workzone"], p["heldout"]["lookalike"]
    lines = [
        f"# Quarry demo — {result['work_dir']}",
        "",
        f"1. synth ({how(s)}): {v['tp'] + v['fp'] + v['clean']} H.264 videos ({v['tp']} work-zone tp, {v['fp']} lookalike fp, "
        f"{v['clean']} clean; {s['video_frames']} frames), YOLO set {d['train']} train / {d['val']} val, "
        f"held-out {d['heldout_workzone']} work-zone + {d['heldout_lookalike']} lookalike frames, "
        f"{g['authentic']} authentic ({g['dark']} dark) + {g['forged']} forged segmentation images",
        f"2. pretrain ({how(p)}): base detector {p['weights']}",
        "",
        f"Base model on held-out frames (conf >= {p['heldout']['conf_threshold']}, IoU >= {p['heldout']['iou_threshold']}):",
        "",
        "| frames | images | precision | recall | FP rate (frames with any detection) | FPs per frame |",
        "|---|---|---|---|---|---|",
        f"| work zone | {wz['images']} | {wz['precision']:.3f} | {wz['recall']:.3f} | — | — |",
        f"| lookalike (no objects) | {la['images']} | — | — | {la['fp_rate']:.3f} | {la['fp_per_image']:.3f} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
