"""The loop on the synthetic world, on one machine, offline: synth, base models (a detector and
a tiny CLIP), false-alarm, flicker and edge-case mining, labelling, review, dataset building,
fine-tuning on Ray Train, a Ray Tune search, evaluation on held-out data, promotion in the MLflow
registry, and with `rounds=2` a second round on fresh videos; `task=segment` runs the
segmentation branch instead (base segmenter, scan, fine-tune with seed 003's loss) and
`task=all` both (steps in engine/demo/run.py). Steps whose config and inputs are unchanged since
the last run in the same work dir are reused, and the report says so.

    quarry demo                                   # the detection loop under runs/demo
    quarry demo task=segment                      # the segmentation branch, on the same world
    quarry demo profile=quick work_dir=runs/quick # a first look in < 5 min
    quarry demo --config configs/demo.yaml rounds=2 seed=1
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.demo.config import DemoConfig
from engine.demo.report import format_report
from engine.demo.run import run_demo
from engine.storage import atomic_write_json, atomic_write_text

CONFIG = DemoConfig
SUMMARY = "run the whole loop on the synthetic world: mine, label, build, fine-tune, tune, evaluate, promote"


def run(config: DemoConfig) -> dict:
    result = run_demo(config)
    work = Path(config.work_dir)
    # the segmentation branch alone keeps its own files, so it does not overwrite the detection loop's
    suffix = "-segment" if config.task == "segment" else ""
    atomic_write_text(work / f"demo_report{suffix}.md", format_report(result))
    atomic_write_json(work / f"demo_summary{suffix}.json", result)
    return result


def format_summary(result: dict) -> str:
    return format_report(result)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
