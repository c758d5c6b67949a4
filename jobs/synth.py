"""Generate the synthetic world: road-scene H.264 videos with work zones, lookalikes and
ground truth; a YOLO dataset without lookalikes for the base detector; held-out work-zone
and lookalike frames; authentic and copy-move forged images with masks.

    quarry synth --config configs/synth.yaml out_dir=runs/world seed=1
"""

from __future__ import annotations

import sys

from engine.config import write_resolved_config
from engine.synth.config import SynthConfig
from engine.synth.world import generate_world

CONFIG = SynthConfig
SUMMARY = "generate the synthetic world (videos, ground truth, YOLO and segmentation sets)"


def run(config: SynthConfig) -> dict:
    write_resolved_config(config, config.out_dir)
    summary = generate_world(config)
    return {"out_dir": str(config.out_dir), **summary}


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
