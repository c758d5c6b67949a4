"""GPU figures, on a machine with a CUDA GPU: mining end to end per GPU against the models alone at the
same batch size, fp16 off and on, both decode layouts, and fp16's effect on the scores; a detection
training step on the GPU with mixed precision off and on; train and tune jobs on the GPU (nccl, fractions).

    python -m bench.gpu --videos 100 --docs docs/benchmarks.md
    python -m bench.gpu --videos 100 --data runs/demo/dataset --model runs/demo/base/base.pt   # with training
    python -m bench.gpu --render bench/results/gpu-<time>.json --docs docs/benchmarks.md  # table from a result

The same synthetic videos and models as bench/mining.py (its seeded random tiny YOLO unless the demo's
detector exists, the tiny CLIP), batches of `decode.batch_frames` frames:
  model only: FrameScorer.score_images (detector + CLIP + fusion) on frames already in memory, timed after
      one warm-up batch (CUDA context, cuDNN's choice of kernels); it returns numbers on the host, so the
      clock stops after the GPU's work;
  the plain batched loop (bench.mining's, its own process) on the GPU, fp16 off;
  the pipeline end to end (`quarry mine`) with `--actors` scoring actors sharing the GPU
      (scoring.num_gpus_per_actor = 1 / actors), fp16 off and on, decoding in the scoring actors and in
      CPU tasks; frames/s per GPU = scored frames/s / GPUs;
  fp16 agreement: the same frames scored in fp32 and in fp16, the scores' largest differences;
  training: bench.train's step (Ultralytics' loss + the FP penalty, weighted sampler, AdamW) on the GPU,
      AMP off and on; then `quarry train` for an epoch on 1 GPU worker (nccl, AMP) and on 2 workers sharing
      one GPU (the config refuses it), and `quarry tune` with two one-worker trials at 0.5 GPU each, each
      recorded as passed or with its output's end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.mining import (
    REPO,
    decoded_batches,
    detector_path,
    make_videos,
    pipeline,
    plain_loop_process,
    publish,
    score_batch,
    score_only,
)

PRECISIONS = {"fp32": "false", "fp16": "true"}


def gpu_facts() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1), "gpus": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count(), "platform": platform.platform()}


def mine_config(manifest: Path, out_dir: Path, detector: str, precision: str, layout: str, actors: int, batch: int):
    from engine.config import load_config
    from engine.mining.config import MineConfig

    half = PRECISIONS[precision]
    return load_config(MineConfig, REPO / "configs" / "mine.yaml", [
        f"input.source={manifest}", f"output.out_dir={out_dir}", f"scoring.detector.source={detector}",
        "scoring.clip.checkpoint=null", f"scoring.detector.half={half}", f"scoring.clip.half={half}", f"decode.layout={layout}",
        f"decode.batch_frames={batch}", f"scoring.min_actors={actors}", f"scoring.max_actors={actors}",
        f"scoring.num_gpus_per_actor={1 / actors}", "tracking.enabled=false", f"ray.num_cpus={os.cpu_count()}"])


def world_manifest(args, work: Path) -> Path:
    """--world, or bench.mining's world of --videos videos (generated once under `work`)."""
    return Path(args.world) if args.world else make_videos(work, args.videos, seed=100 + args.videos)


def mining(args, work: Path) -> dict:
    from engine.mining.inputs import list_inputs

    manifest = world_manifest(args, work)
    detector = args.detector or detector_path(work)
    stamp = int(time.time())
    out = {"videos": args.videos, "detector": detector, "actors": args.actors, "batch_frames": args.batch, "runs": []}
    base = mine_config(manifest, work / f"gpu-plain-{stamp}", detector, "fp32", "actor", args.actors, args.batch)
    videos = list_inputs(base.input.source, base.input.extensions)
    out["plain_loop_fp32"] = plain_loop_process(base, work)
    print("plain loop:", json.dumps(out["plain_loop_fp32"]), flush=True)
    for precision in PRECISIONS:
        cfg = mine_config(manifest, work / "unused", detector, precision, "actor", args.actors, args.batch)
        model_only = score_only(cfg, videos, max_frames=args.model_frames, warmup_batches=1)
        print(f"model only {precision}:", json.dumps(model_only), flush=True)
        for layout in ("actor", "tasks"):
            cfg = mine_config(manifest, work / f"gpu-{precision}-{layout}-{stamp}", detector, precision, layout,
                              args.actors, args.batch)
            p = pipeline(cfg, work)
            p.pop("driver_trace_mb")
            run = {"precision": precision, "layout": layout, "model_only": model_only, "pipeline": p,
                   "pipeline_fps_per_gpu": round(p["fps"] / args.gpus, 1),
                   "pipeline_steady_vs_model_only": round(p["steady_fps"] / model_only["fps"], 3)}
            print(f"pipeline {precision} {layout}:", json.dumps(run["pipeline"]), flush=True)
            out["runs"].append(run)
    return out


def fp16_agreement(args, work: Path) -> dict:
    """The same frames scored in fp32 and in fp16 (detector and CLIP): how far the scores move and
    how often the detections and cue counts differ. Detector: --model (a trained one) if it exists."""
    from engine.config import config_to_dict
    from engine.mining.inputs import list_inputs
    from engine.mining.stages import FrameScorer

    manifest = world_manifest(args, work)
    detector = args.model if Path(args.model).is_file() else (args.detector or detector_path(work))
    configs = {p: mine_config(manifest, work / "unused", detector, p, "actor", 1, args.batch) for p in PRECISIONS}
    fp32 = configs["fp32"]
    batches = decoded_batches(fp32, list_inputs(fp32.input.source, fp32.input.extensions), args.model_frames)
    rows = {}
    for precision, cfg in configs.items():
        scorer = FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
        rows[precision] = [r for ids, pixels in batches for r in score_batch(scorer, ids, pixels)]
    a, b = rows["fp32"], rows["fp16"]
    out = {"detector": detector, "frames": len(a)}
    for key in ("yolo_score", "clip_p_workzone", "fused_score"):
        diff = np.abs(np.array([r[key] for r in a]) - np.array([r[key] for r in b]))
        out[key] = {"max_abs_diff": round(float(diff.max()), 5), "mean_abs_diff": round(float(diff.mean()), 6)}
    out["same_n_boxes_share"] = round(float(np.mean([x["n_boxes"] == y["n_boxes"] for x, y in zip(a, b)])), 4)
    out["same_cue_count_share"] = round(float(np.mean([x["cue_count"] == y["cue_count"] for x, y in zip(a, b)])), 4)
    out["fused_above_0.5_flips"] = int(sum((x["fused_score"] >= 0.5) != (y["fused_score"] >= 0.5) for x, y in zip(a, b)))
    return out


def train_steps(cfg: dict, amp: bool) -> dict:
    """bench.train's step on the GPU: median seconds per step after the warm-up steps."""
    import torch

    from bench.train import _setup, timed_steps

    model, criterion, loader = _setup(cfg)
    model = model.to("cuda").train()
    criterion = type(criterion)(model)  # its anchors and weights on the model's device
    step_s = float(np.median(timed_steps(model, criterion, loader, cfg["steps"], cfg["warmup"], device=torch.device("cuda"),
                                         amp=amp)))
    return {"amp": amp, "step_s": round(step_s, 4), "images_per_s": round(cfg["batch"] / step_s, 1)}


def gpu_job(args, job: str, what: str, overrides: list[str]) -> dict:
    """A Quarry job on the GPU: passed (wall seconds) or its output's last lines."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"jobs.{job}", *overrides, "tracking.enabled=false"], cwd=REPO,
                          capture_output=True, text=True, timeout=args.train_timeout_s)
    result = {"job": job, "what": what, "returncode": done.returncode, "wall_s": round(time.perf_counter() - started, 1)}
    if done.returncode != 0:
        result["error_tail"] = (done.stdout + done.stderr)[-1500:]
    return result


def train_jobs(args, work: Path) -> list[dict]:
    """`quarry train` for one short epoch on 1 GPU worker (nccl, AMP), refused on 2 workers sharing a GPU,
    and `quarry tune` with 2 concurrent one-worker trials at 0.5 GPU each."""
    epoch = ["epochs=1", "samples_per_epoch=256", f"batch={args.train_batch}"]
    train = [f"data={args.data}", f"detect.model={args.model}", *(f"detect.{o}" for o in epoch), "max_failures=0",
             "registry.register_model=false", "scaling.use_gpu=true"]
    return [
        gpu_job(args, "train", "1 worker x 1 GPU", [*train, f"out_dir={work / 'gpu-train-1w'}", "scaling.num_workers=1"]),
        gpu_job(args, "train", "2 workers x 0.5 GPU", [*train, f"out_dir={work / 'gpu-train-2w'}", "scaling.num_workers=2",
                                                       "scaling.gpus_per_worker=0.5"]),
        gpu_job(args, "tune", "2 concurrent trials x 1 worker x 0.5 GPU", [
            f"train.data={args.data}", f"train.detect.model={args.model}", *(f"train.detect.{o}" for o in epoch),
            f"out_dir={work / 'gpu-tune'}", "num_samples=2", "max_concurrent_trials=2", "train.scaling.num_workers=1",
            "train.scaling.use_gpu=true", "train.scaling.gpus_per_worker=0.5"]),
    ]


STARTUP_PROBE = """
import json, sys, time
t = {}
s = time.perf_counter(); import torch; t["import_torch_s"] = time.perf_counter() - s
s = time.perf_counter(); torch.zeros(1, device="cuda"); torch.cuda.synchronize(); t["cuda_init_s"] = time.perf_counter() - s
from engine.config import config_to_dict
from engine.mining.config import MineConfig
from engine.mining.stages import FrameScorer
import numpy as np
from bench.mining import score_batch
cfg = MineConfig.model_validate(json.loads(sys.argv[1]))
s = time.perf_counter(); scorer = FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
t["import_and_build_models_s"] = time.perf_counter() - s
pixels = np.random.default_rng(0).integers(0, 255, (cfg.decode.batch_frames, 144, 256, 3), dtype=np.uint8)
for name in ("first_batch_s", "second_batch_s"):
    s = time.perf_counter(); score_batch(scorer, range(len(pixels)), pixels); t[name] = time.perf_counter() - s
print(json.dumps({k: round(v, 2) for k, v in t.items()}))
"""


def gpu_startup(cfg) -> dict:
    """Where a scoring actor's start-up goes on the GPU: torch, CUDA's context, models, first batches."""
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, json.dumps(cfg.model_dump(mode="json"))], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def training(args, work: Path) -> dict:
    cfg = {"data": str(Path(args.data).resolve()), "model": str(Path(args.model).resolve()), "imgsz": 256,
           "batch": args.train_batch, "steps": args.steps, "warmup": 5, "threads": 4}
    out = {"config": cfg, "steps": [train_steps(cfg, amp=False), train_steps(cfg, amp=True)]}
    print("training steps:", json.dumps(out["steps"]), flush=True)
    out["jobs"] = train_jobs(args, work)
    print("training jobs:", json.dumps(out["jobs"]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100, help="videos in the generated world")
    parser.add_argument("--world", help="an existing world's videos.parquet (else one of --videos is generated)")
    parser.add_argument("--detector", help="detector checkpoint (else bench.mining's)")
    parser.add_argument("--actors", type=int, default=2, help="scoring actors sharing the GPU")
    parser.add_argument("--batch", type=int, default=32, help="decode.batch_frames: frames per model call")
    parser.add_argument("--model-frames", type=int, default=1920, help="frames the model-only figure scores")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the pipeline uses (frames/s per GPU)")
    parser.add_argument("--data", help="a built detection dataset: adds the training figures")
    parser.add_argument("--model", default="runs/demo/base/base.pt", help="the detector training starts from")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--train-timeout-s", type=int, default=240)
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--docs", help="rewrite the GPU table in this Markdown file (docs/benchmarks.md)")
    parser.add_argument("--parts", default="startup,agreement,mining,training", help="what to measure (training needs --data)")
    parser.add_argument("--render", metavar="JSON", nargs="+", help=(
        "only print (and with --docs rewrite) the table of results this bench wrote on a GPU machine, merged"))
    args = parser.parse_args()
    if args.render:
        from bench.mining import rewrite_section

        report = {}
        for path in args.render:
            report.update(json.loads(Path(path).read_text()))
        table = table_markdown(report, ", ".join(args.render))
        print(table)
        if args.docs:
            rewrite_section(Path(args.docs), "gpu", table)
        return
    import torch

    from engine.offline import enable_offline

    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu: no CUDA GPU visible to torch (bench.mining measures the CPU)")
    enable_offline()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    report = {"machine": gpu_facts()}
    if "startup" in parts:
        detector = args.detector or detector_path(work)
        report["startup"] = {p: gpu_startup(mine_config(Path("unused"), work, detector, p, "actor", 1, args.batch))
                             for p in PRECISIONS}
        print("start-up:", json.dumps(report["startup"]), flush=True)
    if "agreement" in parts:
        report["fp16_agreement"] = fp16_agreement(args, work)
        print("fp16 agreement:", json.dumps(report["fp16_agreement"]), flush=True)
    if "mining" in parts:
        report["mining"] = mining(args, work)
    if "training" in parts and args.data:
        report["training"] = training(args, work)
    publish(report, args.out, "gpu", table_markdown, args.docs)


def table_markdown(report: dict, source: str) -> str:
    m = report["machine"]
    lines = [f"Result `{source}` on {m['gpus']}x {m['gpu']} ({m['cpus']} CPUs, torch {m['torch']}, CUDA {m['cuda']})."]
    if "startup" in report:
        lines += ["", "A scoring actor's start-up on the GPU (seconds): " + "; ".join(
            f"{p}: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v}" for k, v in t.items())
            for p, t in report["startup"].items())]
    if "fp16_agreement" in report:
        a = report["fp16_agreement"]
        lines += ["", f"fp16 against fp32 on the same {a['frames']:,} frames (detector `{Path(a['detector']).name}`): "
                  + ", ".join(f"{k} max |diff| {a[k]['max_abs_diff']} (mean {a[k]['mean_abs_diff']})"
                              for k in ("yolo_score", "clip_p_workzone", "fused_score"))
                  + f"; same box count on {a['same_n_boxes_share']:.1%} of frames, same cue count on "
                  f"{a['same_cue_count_share']:.1%}, fused score crossing 0.5 on {a['fused_above_0.5_flips']} frames."]
    if "mining" in report:
        mine = report["mining"]
        loop = mine["plain_loop_fp32"]
        lines += ["", f"Mining {mine['videos']} videos in batches of {mine['batch_frames']} frames, {mine['actors']} scoring "
                  f"actors sharing the GPU; the plain batched loop on the GPU (fp32): {loop['fps']} frames/s "
                  f"({loop['steady_fps']} steady), start-up {loop['startup_s']} s.", "",
                  "| precision | decode in | model only | pipeline per GPU (steady) | steady / model only "
                  "| pipeline / plain loop | start-up | driver peak | Ray workers peak |", "|---|---|---|---|---|---|---|---|---|"]
        for r in mine["runs"]:
            p = r["pipeline"]
            lines.append(f"| {r['precision']} | {r['layout']} | {r['model_only']['fps']} | {r['pipeline_fps_per_gpu']} "
                         f"({p['steady_fps']}) | **{r['pipeline_steady_vs_model_only']}** | {round(p['fps'] / loop['fps'], 2)} "
                         f"| {p['startup_s']} s | {p['driver_peak_mb']:,} MB | {p['ray_workers_peak_mb']:,} MB |")
    if "training" in report:
        t = report["training"]
        lines += ["", "| training on the GPU | result |", "|---|---|"]
        lines += [f"| step (batch {t['config']['batch']}), AMP {'on' if s['amp'] else 'off'} | {s['step_s']} s, "
                  f"{s['images_per_s']} images/s |" for s in t["steps"]]
        for j in t["jobs"]:
            state = {0: f"passed in {j['wall_s']} s", 2: "refused by the config check (exit 2)"}.get(
                j["returncode"], f"failed (exit {j['returncode']})")
            what = j.get("what") or f"{j['workers']} worker(s) x {j['gpus_per_worker']} GPU"  # the first run's keys
            lines.append(f"| `quarry {j.get('job', 'train')}`, {what} | {state} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
