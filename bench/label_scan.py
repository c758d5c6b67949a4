"""Labelling and scanning throughput: `quarry label` and `quarry scan` against their plain loops.

    python -m bench.label_scan --videos 40 --images 400 --docs docs/benchmarks.md

On one synthetic world and the same models (the demo's base detector if present, else a seeded
random tiny YOLO; a U-Net with random weights for the scan), each in its own process, timed
from launch to exit (interpreter start, imports and model builds in both):
  label: the plain loop runs the labelling stage (`FrameLabeler`: decode at stride 5 ->
         detector -> rules -> JPEG bytes and label text) video after video and writes the
         files (`write_frame_files`); the job runs the same stage on a Ray Data actor pool, its
         driver writes the files and its tables.
  scan:  the plain loop runs the scan stage (`ScanStage`: read -> U-Net -> FP rule) over the
         images in groups of 32; the job runs it on an actor pool and writes its tables.
Writes bench/results/label-scan-<time>.json and, with --docs, the table between the
`bench:label-scan` markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.mining import REPO, detector_path, publish

PLAIN_LABEL = """
import json, sys, time
import pandas as pd
from engine.config import config_to_dict, load_config
from engine.labels.config import LabelConfig
from engine.labels.sources import list_sources
from engine.labels.stages import FrameLabeler, plan_label_tasks, write_frame_files
from engine.offline import enable_offline
enable_offline()
cfg = load_config(LabelConfig, None, sys.argv[1:])
labeler = FrameLabeler(config_to_dict(cfg.detector), config_to_dict(cfg.rules), config_to_dict(cfg.decode),
                       str(cfg.output.out_dir), cfg.output.jpeg_quality)
frames = 0
for source in list_sources(cfg.input):
    tasks = plan_label_tasks(source.task_row(), config_to_dict(cfg.decode), cfg.images_per_task)
    for part in labeler(pd.DataFrame(tasks).to_dict("list")):
        write_frame_files(part)
        frames += int((part.row_kind == "frame").sum())
print(json.dumps({"frames": frames}))
"""

PLAIN_SCAN = """
import json, sys
from engine.config import config_to_dict, load_config
from engine.offline import enable_offline
from engine.segment.scan import ScanConfig, ScanStage, list_images
enable_offline()
cfg = load_config(ScanConfig, None, sys.argv[1:])
stage = ScanStage(config_to_dict(cfg))
paths = list_images(cfg.input)
images = 0
for i in range(0, len(paths), cfg.images_per_task):
    images += len(stage({"paths_json": [json.dumps(paths[i : i + cfg.images_per_task])]}))
print(json.dumps({"images": images}))
"""


def make_world(root: Path, videos: int, images: int) -> Path:
    from engine.synth.config import SynthConfig
    from engine.synth.world import generate_world

    world = root / f"world-{videos}v-{images}i"
    if not (world / "videos.parquet").exists():
        generate_world(SynthConfig.model_validate({
            "out_dir": str(world), "seed": 300,
            "videos": {"n_workzone": videos * 2 // 5, "n_lookalike": videos * 2 // 5, "n_clean": videos - 4 * (videos // 5)},
            "detection": {"n_train": 1, "n_val": 1, "n_heldout_workzone": 0, "n_heldout_lookalike": 0},
            "segmentation": {"n_authentic": images, "n_forged": 2, "n_heldout_authentic": 0, "n_heldout_forged": 0},
        }))
    return world


def segmenter_path(root: Path) -> Path:
    import torch

    from engine.models.segmenter import SegmenterSpec, build_segmenter

    path = root / "random-unet.pt"
    if not path.exists():
        torch.save(build_segmenter(SegmenterSpec()).state_dict(), path)
    return path


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - started, out.stdout


def bench_label(world: Path, detector: str, work: Path) -> dict:
    common = [f"input.source={world / 'videos.parquet'}", f"detector.source={detector}", "tracking.enabled=false",
              "decode.stride=5"]
    loop_s, out = timed([sys.executable, "-c", PLAIN_LABEL, *common, f"output.out_dir={work / 'label-plain'}"])
    frames = json.loads(out.strip().splitlines()[-1])["frames"]
    job_s, _ = timed([sys.executable, "-m", "jobs.label", "-q", *common, f"output.out_dir={work / f'label-{time.time():.0f}'}"])
    return {"frames": frames, "plain_loop": {"seconds": round(loop_s, 1), "fps": round(frames / loop_s, 1)},
            "job": {"seconds": round(job_s, 1), "fps": round(frames / job_s, 1)}, "job_vs_plain_loop": round(loop_s / job_s, 2)}


def bench_scan(world: Path, segmenter: Path, work: Path) -> dict:
    common = [f"input.source={world / 'segmentation' / 'index.parquet'}", "input.where=kind == 'authentic'",
              f"models=[{{checkpoint: {segmenter}}}]", "tracking.enabled=false"]
    loop_s, out = timed([sys.executable, "-c", PLAIN_SCAN, *common])
    images = json.loads(out.strip().splitlines()[-1])["images"]
    job_s, _ = timed([sys.executable, "-m", "jobs.scan", "-q", *common, f"out_dir={work / f'scan-{time.time():.0f}'}"])
    return {"images": images, "plain_loop": {"seconds": round(loop_s, 1), "images_per_s": round(images / loop_s, 1)},
            "job": {"seconds": round(job_s, 1), "images_per_s": round(images / job_s, 1)},
            "job_vs_plain_loop": round(loop_s / job_s, 2)}


def table_markdown(result: dict, source: str) -> str:
    label, scan = result["label"], result["scan"]
    return "\n".join([
        f"Result `{source}` ({result['videos']} videos at stride 5, {result['images']} images at 128 px):", "",
        "| stage | items | plain loop | job (Ray Data) | job / plain loop |", "|---|---|---|---|---|",
        f"| label | {label['frames']:,} frames | {label['plain_loop']['fps']} frames/s ({label['plain_loop']['seconds']} s) "
        f"| {label['job']['fps']} frames/s ({label['job']['seconds']} s) | **{label['job_vs_plain_loop']}** |",
        f"| scan | {scan['images']:,} images | {scan['plain_loop']['images_per_s']} images/s ({scan['plain_loop']['seconds']} s) "
        f"| {scan['job']['images_per_s']} images/s ({scan['job']['seconds']} s) | **{scan['job_vs_plain_loop']}** |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--docs", help="rewrite the label/scan table in this Markdown file (docs/benchmarks.md)")
    args = parser.parse_args()
    from engine.offline import enable_offline

    enable_offline()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    world = make_world(work, args.videos, args.images)
    n_images = int((pd.read_parquet(world / "segmentation" / "index.parquet").kind == "authentic").sum())
    result = {"videos": args.videos, "images": n_images, "label": bench_label(world, detector_path(work), work),
              "scan": bench_scan(world, segmenter_path(work), work)}
    publish(result, args.out, "label-scan", table_markdown, args.docs)


if __name__ == "__main__":
    main()
