"""Fine-tune on Ray Train (DDP): an Ultralytics detector in Quarry's own loop (weighted
hard-negative sampling on every rank, Ultralytics' loss with per-sample weights, an FP penalty
on images with no object), or smp segmentation variants with seed 003's loss. Checkpoints
every epoch; a dead worker is replaced and the run resumes; the best model is registered in
MLflow.

    quarry train --config configs/train.yaml data=runs/dataset
    ray job submit --working-dir . -- python -m jobs.train --config configs/train.yaml scaling.use_gpu=true scaling.num_workers=4
"""

from __future__ import annotations

import sys

from engine.config import write_resolved_config
from engine.train.config import TrainConfig
from engine.train.run import check_inputs, run_training

CONFIG = TrainConfig
SUMMARY = "fine-tune on Ray Train with weighted hard-negative sampling and an FP penalty"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the dataset, the starting weights, the output folder."""
    return ["data", "detect.model", "segment.variants.*.checkpoint"], ["out_dir"]


def run(config: TrainConfig) -> dict:
    check_inputs(config)
    write_resolved_config(config, config.out_dir)
    return run_training(config)


def format_summary(summary: dict) -> str:
    lines = [f"# Training ({summary['task']}) -> {summary['out_dir']}", ""]
    for name, m in summary["models"].items():
        best = m["best"]
        metrics = ", ".join(f"{k} {best[k]:.3f}" for k in ("val_map50", "val_map50_95", "val_precision", "val_recall",
                                                             "val_hn_fp_rate", "val_f1", "val_fp_rate") if k in best)
        lines.append(f"- {name}: best epoch {m['best_epoch']} of {m['epochs_run']} ({metrics}) -> {m['best_model']} "
                     f"[{m['seconds']:.0f} s]")
        if "registered" in m:
            r = m["registered"]
            lines.append(f"  registered {r.get('name')} version {r.get('version')} ({r['model_uri']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
