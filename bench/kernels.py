"""Whether the CPU kernels torch picks change a training run's numbers.

    python -m bench.kernels [--steps 5]

torch (ATen), oneDNN and MKL each choose their kernels by the instruction set the processor
offers. A processor with AVX-512 runs other kernels than one with AVX2 only, and kernels of
different widths add in different orders. This trains the demo's detector architecture (random
weights, seed 0) for a few SGD steps on fixed random images in one fresh process per setting,
and compares each setting's weights with the processor's own choice ("auto"). Forcing a
narrower kernel stands in for another processor: if the weights differ here, a seed's figures
differ between machines of one kind that have different processors (docs/demo.md, "Figures by
machine"). Writes bench/results/kernels-<time>.json, with a digest of each setting's weights to
compare hosts by. No timings: this measures numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# each setting: the environment that forces one library's kernels to a narrower instruction set
SETTINGS: dict[str, dict[str, str]] = {
    "auto": {},
    "auto_again": {},  # the same choice again: a run repeats to the bit
    "aten_default": {"ATEN_CPU_CAPABILITY": "default"},  # torch's own kernels without AVX2
    "onednn_sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},  # convolutions
    "mkl_compatible": {"MKL_CBWR": "COMPATIBLE"},  # matrix products (MKL's reproducible SSE2 path)
    # torch's and oneDNN's kernels held to AVX2: on an AVX-512 host, an AVX2 host's instruction set
    # (the demo with it still printed other figures than an AVX2 host: docs/demo.md)
    "avx2_pinned": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def train_probe(steps: int, out: Path) -> None:
    """Train the demo's detector architecture `steps` SGD steps on fixed images; save its weights."""
    import torch

    from engine.machine import describe_machine
    from engine.models.detector import TINY_YOLO, build_detector

    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = build_detector(TINY_YOLO, ["cone", "barrier"]).model.train()
    images = torch.rand(4, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(steps):
        # the mean square of every head output: a loss that reaches every weight
        loss = sum((t.float() ** 2).mean() for t in _tensors(model(images)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save({"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "loss": float(loss.detach()),
                "machine": describe_machine()}, out)


def _tensors(output) -> list:
    """Every tensor in a model's output (a tensor, or lists and dicts of them)."""
    if isinstance(output, dict):
        return [t for v in output.values() for t in _tensors(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _tensors(v)]
    return [output]


def weights_digest(state: dict) -> str:
    """sha256 of the weights' bytes in key order: equal digests on two hosts mean bit-identical weights."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def compare(steps: int) -> dict:
    import torch

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in SETTINGS.items():
            out = Path(tmp) / f"{name}.pt"
            subprocess.run([sys.executable, "-m", "bench.kernels", "--probe", str(out), "--steps", str(steps)],
                           cwd=REPO, env={**os.environ, **env}, check=True)
            results[name] = torch.load(out, weights_only=False)
        auto = results["auto"]["state"]
        report = {"machine": results["auto"]["machine"], "steps": steps, "settings": {}}
        for name, r in results.items():
            diff = max(float((r["state"][k].float() - auto[k].float()).abs().max()) for k in auto)
            report["settings"][name] = {"env": SETTINGS[name], "kernels": r["machine"]["torch_cpu_capability"],
                                        "loss": r["loss"], "weights_sha256": weights_digest(r["state"]),
                                        "identical_to_auto": diff == 0.0, "max_abs_weight_diff": diff}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # one setting's run, in its own process
    args = parser.parse_args()
    if args.probe:
        train_probe(args.steps, args.probe)
        return
    report = compare(args.steps)
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_cpu_capability']} kernels by itself); "
          f"{args.steps} SGD steps of the demo's detector:")
    for name, s in report["settings"].items():
        print(f"  {name:15s} {s['kernels']:8s} loss {s['loss']:.9g}  "
              + ("identical weights" if s["identical_to_auto"] else f"weights differ, max |diff| {s['max_abs_weight_diff']:.3g}")
              + f"  sha256 {s['weights_sha256'][:12]}")
    path = REPO / "bench" / "results" / f"kernels-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
