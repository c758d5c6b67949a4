"""Every benchmark, one after another, each rewriting its table in docs/benchmarks.md:

    python -m bench                          # after `make demo` (its detector, built set, base model)
    python -m bench --videos 10,100,1000 --repeats 3

mining (bench/mining.py) at each video count, labelling and scanning (bench/label_scan.py),
Ray Train's overhead (bench/train.py), Tune trials per hour (bench/tune.py), and where torch sees a
CUDA GPU the GPU figures (bench/gpu.py). Each also runs alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default="10,100")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--docs", default="docs/benchmarks.md")
    parser.add_argument("--demo", default="runs/demo", help="a demo work dir: its dataset and base model")
    args = parser.parse_args()
    demo = [f"--data={args.demo}/dataset", f"--model={args.demo}/base/base.pt"]
    runs = [("bench.mining", ["--videos", args.videos, "--repeats", args.repeats]), ("bench.label_scan", []),
            ("bench.train", ["--steps", "30", *demo]), ("bench.tune", demo)]
    if subprocess.run([sys.executable, "-c", "import torch, sys; sys.exit(not torch.cuda.is_available())"]).returncode == 0:
        runs.append(("bench.gpu", demo))
    for module, extra in runs:
        print(f"== {module}", flush=True)
        subprocess.run([sys.executable, "-m", module, *extra, "--docs", args.docs], check=True)


if __name__ == "__main__":
    main()
