"""Search the fine-tuning knobs on Ray Tune (FP penalty, hard-negative and category weights,
lr, ...): distributions from config, ASHA early stopping, random or Optuna search, each trial a
Ray Train run and an MLflow child run; the best trial's model is registered as `challenger`.
An interrupted search resumes.

    quarry tune --config configs/tune.yaml num_samples=8
    quarry tune search=optuna 'space=[{key: detect.fp_penalty, kind: loguniform, low: 0.5, high: 8}]'
    quarry tune train.data=s3://bucket/dataset train.detect.model=s3://bucket/base.pt out_dir=s3://bucket/tune
"""

from __future__ import annotations

import sys

from engine.config import write_resolved_config
from engine.tune.config import TuneConfig
from engine.tune.run import run_tuning

CONFIG = TuneConfig
SUMMARY = "search fine-tuning knobs on Ray Tune (ASHA, Optuna); register the best as challenger"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the dataset, the starting weights, the output folder."""
    return ["train.data", "train.detect.model"], ["out_dir"]


def run(config: TuneConfig) -> dict:
    write_resolved_config(config, config.out_dir)
    return run_tuning(config)


def format_summary(summary: dict) -> str:
    lines = [f"# Search -> {summary['out_dir']}{' (resumed)' if summary['resumed'] else ''}", "",
             "| trial | epochs | best objective | values |", "|---|---|---|---|"]
    for t in summary["trials"]:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["config"].items())
        best = "—" if t["best_objective"] is None else f"{t['best_objective']:.4f}"
        lines.append(f"| {t['trial']} | {t['epochs']} | {best} | {values} |")
    lines.append(f"\nbest: {summary['best']['trial']} -> {summary['best_model']}")
    if "registered" in summary:
        r = summary["registered"]
        lines.append(f"registered {r['name']} version {r['version']} as @{r['alias']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
