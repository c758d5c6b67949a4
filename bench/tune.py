"""Tune trials per hour: `quarry tune` on a built set, timed from launch to exit, against the
time its trials spent training (the sum of their epochs' seconds).

    python -m bench.tune --data runs/demo/dataset --model runs/demo/base/base.pt --trials 4 --docs docs/benchmarks.md

Each trial fine-tunes for `--epochs` epochs of `--samples` images on 2 Ray Train workers (the
demo's settings); FIFO, one trial at a time. Writes bench/results/tune-<time>.json and, with
--docs, the table between the `bench:tune` markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.mining import REPO, publish
from engine.train.trainer import latest_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/demo/dataset")
    parser.add_argument("--model", default="runs/demo/base/base.pt")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--docs", help="rewrite the tune table in this Markdown file (docs/benchmarks.md)")
    args = parser.parse_args()
    out_dir = Path(args.work) / f"tune-{time.time():.0f}"
    command = [sys.executable, "-m", "jobs.tune", "-q", f"train.data={args.data}", f"train.detect.model={args.model}",
               f"out_dir={out_dir}", f"num_samples={args.trials}", "scheduler=fifo", f"train.detect.epochs={args.epochs}",
               f"train.detect.samples_per_epoch={args.samples}", "tracking.enabled=false", "resume=false"]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"quarry tune failed:\n{run.stderr[-3000:]}")
    training = 0.0
    for trial in sorted((out_dir / "trials").iterdir()):
        training += sum(h["epoch_seconds"] for h in json.loads((latest_checkpoint(trial) / "history.json").read_text()))
    result = {"trials": args.trials, "epochs": args.epochs, "samples_per_epoch": args.samples, "seconds": round(seconds, 1),
              "trials_per_hour": round(args.trials * 3600 / seconds, 1), "training_seconds": round(training, 1),
              "training_share": round(training / seconds, 2)}
    publish(result, args.out, "tune", table_markdown, args.docs)


def table_markdown(result: dict, source: str) -> str:
    return "\n".join([
        f"Result `{source}` ({result['trials']} trials, {result['epochs']} epochs of {result['samples_per_epoch']} images each, "
        "2 workers, FIFO):", "",
        "| search, launch to exit | trials per hour | time in trial epochs | share |", "|---|---|---|---|",
        f"| {result['seconds']} s | **{result['trials_per_hour']}** | {result['training_seconds']} s | {result['training_share']} |"])


if __name__ == "__main__":
    main()
