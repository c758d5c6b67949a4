"""Mining throughput and memory: the Ray pipeline against the plain single-process loop.

    python -m bench.mining --videos 10,100 --out bench/results

On the same synthetic videos and the same models (the demo's base detector if present,
else a seeded random tiny YOLO; the tiny CLIP), one run measures:
  (a) plain loop: its own process, for each video decode -> detector -> CLIP -> gate, batches of 32
  (b) decode only (decord, stride 2)
  (c) score only: detector + CLIP on frames already in memory
  (d) the Ray Data pipeline end to end (`quarry mine`: includes JPEG snapshots and tables),
      with start-up (Ray + actor pool) and steady state reported apart, with decoding inside
      the scoring actors (decode.layout=actor, the default) and in separate CPU tasks (tasks)
and peak memory (driver and Ray workers) for each video count. Frames/s count scored frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

from engine.config import config_to_dict, load_config
from engine.mining.config import MineConfig
from engine.mining.inputs import list_inputs
from engine.mining.pipeline import video_step_params
from engine.mining.stages import FrameScorer
from engine.mining.timeline import finalize_video
from engine.video.chunks import plan_chunks
from engine.video.decode import decode_frames

REPO = Path(__file__).resolve().parents[1]


class MemorySampler:
    """Peak memory of the driver process and of all Ray worker processes, sampled every 0.2 s.

    USS (pages the process alone holds): RSS would also count the object store's shared
    memory each process has mapped, many times over.
    """

    def __init__(self, driver_pid: int | None = None):
        self.driver_peak = self.workers_peak = 0
        self.driver_pid = driver_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                if self.driver_pid is not None:
                    self.driver_peak = max(self.driver_peak, psutil.Process(self.driver_pid).memory_full_info().uss)
            except psutil.NoSuchProcess:
                pass
            total = 0
            for p in psutil.process_iter(["cmdline"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if "ray::" in cmd or "default_worker.py" in cmd:
                    try:
                        total += p.memory_full_info().uss
                    except psutil.Error:
                        pass
            self.workers_peak = max(self.workers_peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mb(self) -> dict:
        return {"driver_peak_mb": round(self.driver_peak / 2**20), "ray_workers_peak_mb": round(self.workers_peak / 2**20)}


def make_videos(root: Path, n: int, seed: int) -> Path:
    from engine.synth.config import SynthConfig
    from engine.synth.world import generate_world

    manifest = root / f"world-{n}" / "videos.parquet"
    if not manifest.exists():
        cfg = SynthConfig.model_validate({
            "out_dir": str(manifest.parent), "seed": seed,
            "videos": {"n_workzone": n * 2 // 5, "n_lookalike": n * 2 // 5, "n_clean": n - 4 * (n // 5)},
            "detection": {"n_train": 1, "n_val": 1, "n_heldout_workzone": 0, "n_heldout_lookalike": 0},
            "segmentation": {"n_authentic": 0, "n_forged": 0},
        })
        generate_world(cfg)
    return manifest


def detector_path(root: Path) -> str:
    trained = REPO / "runs" / "demo" / "base" / "base.pt"
    if trained.exists():
        return str(trained)
    from engine.models.detector import build_detector

    path = root / "random-tiny.pt"
    if not path.exists():
        build_detector("quarry-yolo-tiny.yaml", ["cone", "barrel", "sign", "barrier"]).save(str(path))
    return str(path)


def plain_loop(cfg: MineConfig, videos) -> dict:
    """What a user writes first: one process, video after video."""
    started = time.perf_counter()
    scorer = FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
    ready = time.perf_counter()
    gate, selection = video_step_params(cfg)
    frames = 0
    for video in videos:
        tasks = plan_chunks({"uri": video.uri, "key": video.key}, config_to_dict(cfg.decode))
        rows = pd.concat(list(scorer(pd.DataFrame(tasks).to_dict("list"))), ignore_index=True)
        timeline = finalize_video(rows[rows.row_kind == "frame"], video.video_label, gate, selection)
        frames += len(timeline)
    end = time.perf_counter()
    return {"frames": frames, "seconds": round(end - started, 2), "startup_s": round(ready - started, 2),
            "fps": round(frames / (end - started), 1), "steady_fps": round(frames / (end - ready), 1)}


def plain_loop_process(cfg: MineConfig, work: Path) -> dict:
    """The plain loop as a user runs it: its own process, timed from launch to exit, like
    the pipeline (interpreter start and imports included in both)."""
    import subprocess
    import sys

    config, result = work / "bench-plain.json", work / "bench-plain-result.json"
    config.write_text(json.dumps(cfg.model_dump(mode="json")))
    started = time.perf_counter()
    with MemorySampler() as mem:
        proc = subprocess.Popen([sys.executable, "-m", "bench.mining", "--plain-loop", str(config), "--result", str(result)],
                                cwd=REPO, stdout=subprocess.DEVNULL)
        mem.driver_pid = proc.pid
        if proc.wait() != 0:
            raise RuntimeError("the plain loop failed")
    seconds = time.perf_counter() - started
    inner = json.loads(result.read_text())
    return {"frames": inner["frames"], "seconds": round(seconds, 2), "fps": round(inner["frames"] / seconds, 1),
            "startup_s": round(seconds - inner["seconds"] + inner["startup_s"], 2), "steady_fps": inner["steady_fps"],
            **mem.mb()}


def decode_only(cfg: MineConfig, videos) -> dict:
    started, frames = time.perf_counter(), 0
    for video in videos:
        for ids, _ in decode_frames(video.uri, range(0, 10**6, cfg.decode.stride), None, cfg.decode.batch_frames):
            frames += len(ids)
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1)}


def score_only(cfg: MineConfig, videos, max_frames: int = 960) -> dict:
    scorer = FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
    batches = []
    for video in videos:
        for ids, pixels in decode_frames(video.uri, range(0, 10**6, cfg.decode.stride), None, cfg.decode.batch_frames):
            batches.append((ids, pixels))
        if sum(len(i) for i, _ in batches) >= max_frames:
            break
    started, frames = time.perf_counter(), 0
    for frame_ids, pixels in batches:
        height, width = pixels.shape[1:3]
        metas = [{"video_key": "x", "chunk_index": 0, "n_chunks": 1, "frame": int(f), "fps": 15.0,
                  "native_width": width, "native_height": height} for f in frame_ids]
        frames += len(scorer.score_images(metas, list(pixels)))
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1)}


def pipeline(cfg: MineConfig, work: Path) -> dict:
    """`quarry mine` in its own process (its driver memory is then its own), sampled for memory."""
    import subprocess
    import sys

    config = work / "bench-mine.json"
    config.write_text(json.dumps(cfg.model_dump(mode="json")))
    started = time.perf_counter()
    with MemorySampler() as mem:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.mine", "--config", str(config), "-q"], cwd=REPO,
                                stdout=subprocess.DEVNULL)
        mem.driver_pid = proc.pid
        if proc.wait() != 0:
            raise RuntimeError("the mining job failed")
    seconds = time.perf_counter() - started
    summary = json.loads((Path(cfg.output.out_dir) / "summary.json").read_text())
    frames, s = summary["frames_scored"], summary["seconds"]
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1),
            "startup_s": s["startup"], "steady_fps": s["steady_frames_per_s"], **mem.mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default="10,100", help="comma-separated video counts")
    parser.add_argument("--out", default="bench/results", help="folder for the JSON result")
    parser.add_argument("--work", default="runs/bench", help="scratch folder for videos and outputs")
    parser.add_argument("--max-actors", type=int, default=2)
    parser.add_argument("--plain-loop", help=argparse.SUPPRESS)  # internal: run only the plain loop on this config
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from engine.offline import enable_offline

    enable_offline()
    if args.plain_loop:
        cfg = MineConfig.model_validate(json.loads(Path(args.plain_loop).read_text()))
        result = plain_loop(cfg, list_inputs(cfg.input.source, cfg.input.extensions))
        Path(args.result).write_text(json.dumps(result))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    detector = detector_path(work)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "detector": detector}, "runs": []}
    for n in [int(v) for v in args.videos.split(",")]:
        manifest = make_videos(work, n, seed=100 + n)
        cfg = load_config(MineConfig, REPO / "configs" / "mine.yaml", [
            f"input.source={manifest}", f"output.out_dir={work / f'mine-{n}-{int(time.time())}'}",
            f"scoring.detector.source={detector}", f"scoring.max_actors={args.max_actors}",
            "tracking.enabled=false", "ray.num_cpus=" + str(os.cpu_count())])
        videos = list_inputs(cfg.input.source, cfg.input.extensions)
        run = {"videos": n, "decode_only": decode_only(cfg, videos)}
        run["plain_loop"] = plain_loop_process(cfg, work)
        run["score_only"] = score_only(cfg, videos)
        run["pipeline"] = pipeline(cfg, work)
        tasks_cfg = cfg.model_copy(deep=True)
        tasks_cfg.decode.layout = "tasks"
        tasks_cfg.output.out_dir = Path(f"{cfg.output.out_dir}-tasks")
        run["pipeline_decode_in_tasks"] = pipeline(tasks_cfg, work)
        p, loop, score = run["pipeline"], run["plain_loop"], run["score_only"]
        run["ratios"] = {
            "pipeline_vs_plain_loop": round(p["fps"] / loop["fps"], 2),
            "pipeline_steady_vs_plain_loop_steady": round(p["steady_fps"] / loop["steady_fps"], 2),
            "pipeline_steady_vs_score_only": round(p["steady_fps"] / score["fps"], 2),
            "decode_in_tasks_vs_decode_in_actor": round(run["pipeline_decode_in_tasks"]["fps"] / p["fps"], 2),
        }
        results["runs"].append(run)
        print(json.dumps(run, indent=1))
    if len(results["runs"]) > 1:
        first, last = results["runs"][0], results["runs"][-1]
        results["memory_growth"] = {
            "videos": [first["videos"], last["videos"]],
            "driver_peak_ratio": round(last["pipeline"]["driver_peak_mb"] / first["pipeline"]["driver_peak_mb"], 2),
            "workers_peak_ratio": round(last["pipeline"]["ray_workers_peak_mb"] / max(first["pipeline"]["ray_workers_peak_mb"], 1), 2),
        }
    print_table(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"mining-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def print_table(results: dict) -> None:
    print("\n| videos | frames | decode only fps | score only fps | plain loop fps (steady) | pipeline fps (steady) | pipeline/plain | pipeline steady/score only | decode-in-tasks pipeline fps | driver peak MB | workers peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        p, l = r["pipeline"], r["plain_loop"]
        print(f"| {r['videos']} | {p['frames']} | {r['decode_only']['fps']} | {r['score_only']['fps']} | {l['fps']} ({l['steady_fps']}) "
              f"| {p['fps']} ({p['steady_fps']}) | {r['ratios']['pipeline_vs_plain_loop']} | {r['ratios']['pipeline_steady_vs_score_only']} "
              f"| {r['pipeline_decode_in_tasks']['fps']} | {p['driver_peak_mb']} | {p['ray_workers_peak_mb']} |")
    if "memory_growth" in results:
        print(f"\nmemory growth {results['memory_growth']}")


if __name__ == "__main__":
    main()
