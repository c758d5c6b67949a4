"""Promote the challenger: evaluate `challenger` and `champion` (if any) on the same held-out
data, apply the gate (recall >= bound, FP lower by a margin, mAP not lower than a tolerance),
and move the `champion` alias only when every rule holds. The decision and each rule's numbers
are tags on the version; a refusal exits with code 3 naming the failing rule.

    quarry promote --config configs/promote.yaml
    python -c "import mlflow; m = mlflow.pyfunc.load_model('models:/quarry-detector@champion')"
"""

from __future__ import annotations

import sys

from engine.registry.promote import PromoteConfig, promote

CONFIG = PromoteConfig
SUMMARY = "move the champion alias to the challenger when the promotion gate holds"


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the held-out world or video manifest, the report
    folder and the events cache (the models come from the registry)."""
    return ["evaluation.world", "evaluation.videos"], ["out_dir", "evaluation.events_dir"]


def run(config: PromoteConfig) -> dict:
    return promote(config)


def format_summary(summary: dict) -> str:
    champion = summary["champion_version"]
    before = (f"champion was version {champion}" if champion is not None
              else "no champion before: only the recall rule applies")
    lines = [f"# {summary['model']}: {summary['decision']} "
             f"(challenger version {summary['challenger_version']}, {before})"]
    lines += [f"- {'pass' if r['passed'] else 'FAIL'} {r['rule']}: {r['detail']}" for r in summary["rules"]]
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
