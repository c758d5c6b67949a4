"""Evaluate models side by side on held-out data: frames (precision, recall, F1, MCC, FP rate,
mAP50 / mAP50-95, slices worst first, calibration before and after a fitted temperature, TTA),
videos (event recall, false alarms per video and per hour through the mining gate), or
segmentation images (pixel metrics, FP rate on authentic images); an HTML report and a JSON
of every number, logged to MLflow. Models are files or registry URIs.

    quarry evaluate --config configs/evaluate.yaml
    quarry evaluate 'models=[{name: base, source: runs/base/base.pt}, {name: champion, source: "models:/quarry-detector@champion"}]'
"""

from __future__ import annotations

import sys

from engine.config import write_resolved_config
from engine.evaluate.run import EvaluateConfig, headline, run_evaluation

CONFIG = EvaluateConfig
SUMMARY = "evaluate models side by side on held-out frames, videos or segmentation images; HTML report"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the world, a video manifest, model files (registry
    URIs are not store URIs and pass through), the events cache and the report folder."""
    return ["world", "videos", "models.*.source"], ["out_dir", "events_dir"]


def run(config: EvaluateConfig) -> dict:
    write_resolved_config(config, config.out_dir)
    return run_evaluation(config)  # logs its MLflow run in the registry's store


def format_summary(result: dict) -> str:
    rows = {name: headline(m) for name, m in result["models"].items()}
    keys = list(dict.fromkeys(k for r in rows.values() for k in r))
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join("—" if r.get(k) is None else f"{r[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + f"\n\nreport: {result['report']}\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
