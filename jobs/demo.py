"""The whole loop on the synthetic world, on one machine, offline. Steps so far:
  1. synth     generate the world (videos with ground truth, YOLO and segmentation sets)
  2. pretrain  train the base detector with Ultralytics' trainer; score it on held-out frames
  3. mine      stream the world's videos through Ray Data with the base detector and CLIP;
               keep the frames of false-alarm videos where the base model raises an alarm
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
from engine.mining.config import GateConfig, MineConfig, SelectionConfig
from engine.storage import atomic_write_json, atomic_write_text
from engine.synth.config import CaptionSetConfig, DetectionSetConfig, SegmentationSetConfig, SynthConfig, VideoSetConfig
from engine.train.base_detector import BaseTrainingConfig
from engine.train.clip_pretrain import ClipTrainingConfig
from jobs import mine, pretrain, synth

log = logging.getLogger("quarry.demo")
N_STEPS = 3


class DemoConfig(Section):
    """`quarry demo`: every step on the synthetic world under one work dir."""

    work_dir: Path = Field(Path("runs/demo"), description="all outputs go under this folder")
    seed: int = Field(0, ge=0, description="seed of the world and of training")
    reuse: bool = Field(True, description="reuse a step's outputs when its config and inputs are unchanged")
    videos: VideoSetConfig = VideoSetConfig()
    detection: DetectionSetConfig = DetectionSetConfig()
    segmentation: SegmentationSetConfig = SegmentationSetConfig()
    captions: CaptionSetConfig = CaptionSetConfig()
    base_model: BaseTrainingConfig = BaseTrainingConfig()
    clip: ClipTrainingConfig = ClipTrainingConfig()
    evaluation: HeldoutEvalConfig = HeldoutEvalConfig()
    mine: MineConfig = Field(
        MineConfig(gate=GateConfig(min_cue_kinds=1), selection=SelectionConfig(mode="false-alarms", quota_per_video=20, min_gap_frames=2)),
        description="the mining step; the demo sets its input.source, output.out_dir and scoring.detector.source",
    )


CONFIG = DemoConfig
SUMMARY = "run the loop end to end on the synthetic world (synth, base model, mining so far)"


def _cached(marker: Path, key: str, reuse: bool) -> dict | None:
    """The summary stored at `marker` if it was made with `key`, else None."""
    if reuse and marker.is_file():
        stored = json.loads(marker.read_text())
        if stored.get("key") == key:
            return stored["summary"]
    return None


def _step(name: str, index: int, out_dir: Path, key: str, reuse: bool, run_step) -> dict:
    """Run one step, or reuse its summary when its config key is unchanged; time it."""
    started = time.perf_counter()
    marker = out_dir / ".demo-step.json"
    summary = _cached(marker, key, reuse)
    reused = summary is not None
    if not reused:
        log.info("step %d/%d: %s -> %s", index, N_STEPS, name, out_dir)
        summary = run_step()
        atomic_write_json(marker, {"key": key, "summary": summary})
    return {**summary, "reused": reused, "step_seconds": round(time.perf_counter() - started, 1)}


def run(config: DemoConfig) -> dict:
    work = Path(config.work_dir)
    write_resolved_config(config, work)
    steps: dict[str, dict] = {}

    synth_cfg = SynthConfig(out_dir=work / "world", seed=config.seed, videos=config.videos,
                            detection=config.detection, segmentation=config.segmentation, captions=config.captions)
    steps["synth"] = _step("synth", 1, synth_cfg.out_dir, config_hash(synth_cfg), config.reuse,
                           lambda: synth.run(synth_cfg))

    training = config.base_model.model_copy(update={"seed": config.seed})
    pre_cfg = pretrain.PretrainConfig(world_dir=work / "world", out_dir=work / "base", training=training,
                                      evaluation=config.evaluation, clip=config.clip)
    key = config_hash(pre_cfg) + steps["synth"]["config_hash"]
    steps["pretrain"] = _step("pretrain", 2, pre_cfg.out_dir, key, config.reuse, lambda: pretrain.run(pre_cfg))

    mine_cfg = config.mine.model_copy(deep=True)
    mine_cfg.input.source = str(work / "world" / "videos.parquet")
    mine_cfg.output.out_dir = work / "mine"
    mine_cfg.scoring.detector.source = str(work / "base" / "base.pt")
    if config.clip.enabled:  # the CLIP pretrain trained stands in for the user's pretrained one
        mine_cfg.scoring.clip.checkpoint = work / "base" / "clip.pt"
    if mine_cfg.tracking.tracking_uri is None:
        mine_cfg.tracking.tracking_uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    key = config_hash(mine_cfg) + key
    steps["mine"] = _step("mine", 3, mine_cfg.output.out_dir, key, config.reuse, lambda: mine.run(mine_cfg))

    result = {"work_dir": str(work), "steps": steps}
    atomic_write_text(work / "demo_report.md", format_summary(result))
    atomic_write_json(work / "demo_summary.json", result)
    return result


def format_summary(result: dict) -> str:
    """The demo's report: what each step made, and the base model's held-out quality."""
    s, p, m = result["steps"]["synth"], result["steps"]["pretrain"], result["steps"]["mine"]
    how = lambda step: "reused (unchanged)" if step["reused"] else f"{step['step_seconds']:.0f} s"  # noqa: E731
    v, d, g = s["videos"], s["detection_images"], s["segmentation_images"]
    wz, la = p["heldout"]["workzone"], p["heldout"]["lookalike"]
    lines = [
        f"# Quarry demo — {result['work_dir']}",
        "",
        f"1. synth [{how(s)}]: {v['tp'] + v['fp'] + v['clean']} H.264 videos ({v['tp']} work-zone tp, {v['fp']} lookalike fp, "
        f"{v['clean']} clean; {s['video_frames']} frames), YOLO set {d['train']} train / {d['val']} val, "
        f"held-out {d['heldout_workzone']} work-zone + {d['heldout_lookalike']} lookalike frames, "
        f"{g['authentic']} authentic ({g['dark']} dark) + {g['forged']} forged segmentation images",
        f"2. pretrain [{how(p)}]: base detector {p['weights']}",
        "",
        f"Base model on held-out frames (conf >= {p['heldout']['conf_threshold']}, IoU >= {p['heldout']['iou_threshold']}):",
        "",
        "| frames | images | precision | recall | FP rate (frames with any detection) | FPs per frame |",
        "|---|---|---|---|---|---|",
        f"| work zone | {wz['images']} | {wz['precision']:.3f} | {wz['recall']:.3f} | — | — |",
        f"| lookalike (no objects) | {la['images']} | — | — | {la['fp_rate']:.3f} | {la['fp_per_image']:.3f} |",
        "",
        f"3. mine [{how(m)}]: {m['mode']} mode over {m['inputs']['total']} videos "
        f"({m['inputs']['processed']} mined, {m['inputs']['skipped_done']} already done, {m['inputs']['errored']} errored), "
        f"{m['frames_scored']} frames scored, "
        f"{m['candidates']['candidates']} candidate frames -> {m['out_dir']}/candidates.parquet",
        "   frame outcomes: " + ", ".join(f"{k} {v}" for k, v in m["reasons"].items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
