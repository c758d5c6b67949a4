"""Mining throughput and memory: the Ray pipeline against the plain single-process loop.

    python -m bench.mining --videos 10,100 --repeats 3 --docs docs/benchmarks.md

On the same synthetic videos and the same models (the demo's base detector if present,
else a seeded random tiny YOLO; the tiny CLIP), one run measures:
  (a) plain loops in their own process, for each video decode -> detector -> CLIP -> gate: frames in
      batches of 32 (the batched loop), or one at a time (seed 000's frame-by-frame loop)
  (b) decode only (decord, stride 2)
  (c) score only: detector + CLIP on frames already in memory
  (d) the Ray Data pipeline end to end (`quarry mine`: includes JPEG snapshots and tables),
      with start-up (until the first scored frame) and steady state (scored frames/s between
      10 % and 90 % of them, the same window for every variant) reported apart, with decoding inside
      the scoring actors (decode.layout=actor, the default) and in separate CPU tasks (tasks)
and peak memory (driver and Ray workers) for each video count, and where start-up goes (imports,
Ray's start, one scoring actor's imports and model builds). Frames/s count scored frames.
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
from engine.metrics.throughput import steady_rate
from engine.mining.config import MineConfig
from engine.mining.inputs import list_inputs
from engine.mining.pipeline import video_step_params
from engine.mining.stages import FrameScorer, to_frame
from engine.mining.timeline import finalize_video
from engine.video.chunks import plan_chunks
from engine.video.decode import decode_frames

REPO = Path(__file__).resolve().parents[1]


class MemorySampler:
    """Peak anonymous resident memory (RssAnon: heap, tensors, buffers) of the driver process
    and of all Ray worker processes together, sampled ten times a second.

    Not RSS: it counts the object store's shared memory once per process that mapped it. Not
    USS either: a library's code pages count in a process's USS only while no other process
    maps them, so the driver's USS fell by ~250 MB while scoring actors shared torch's pages
    and rose again once they exited, and a peak sampled once a second depended on whether a
    sample fell in the ~1 s between the actors' exit and the driver's. RssAnon moves with
    nothing but what the process allocates, and /proc/<pid>/status costs ~0.05 ms to read
    (USS: ~6 ms, a walk of the page tables).
    """

    INTERVAL_S = 0.1

    def __init__(self, driver_pid: int | None = None):
        self.driver_peak = self.workers_peak = 0
        self.driver_pid = driver_pid
        self.driver_trace: list[list] = []  # [seconds since start, driver MB], one point a second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def anonymous_bytes(pid: int) -> int:
        """RssAnon of a process; 0 once it is gone."""
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024  # kB
        except OSError:
            pass
        return 0

    def _run(self):
        started = time.perf_counter()
        while not self._stop.is_set():
            if self.driver_pid is not None:
                driver, now_s = self.anonymous_bytes(self.driver_pid), time.perf_counter() - started
                self.driver_peak = max(self.driver_peak, driver)
                if driver and now_s >= len(self.driver_trace):
                    self.driver_trace.append([round(now_s, 1), round(driver / 2**20)])
            total = 0
            for p in psutil.process_iter(["cmdline"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if "ray::" in cmd or "default_worker.py" in cmd:
                    total += self.anonymous_bytes(p.pid)
            self.workers_peak = max(self.workers_peak, total)
            self._stop.wait(self.INTERVAL_S)

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


def plain_loop(cfg: MineConfig, videos, frame_by_frame: bool = False) -> dict:
    """What a user writes first: one process, video after video, frames decoded and scored in
    batches of `decode.batch_frames` (the plain batched loop) or one at a time (seed 000's
    frame-by-frame loop). Arrivals of scored frames are timed as the pipeline's are."""
    started = time.perf_counter()
    scorer = FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
    gate, selection = video_step_params(cfg)
    arrivals, frames = [], 0
    for video in videos:
        if frame_by_frame:
            parts = []
            for ids, pixels in decode_frames(video.uri, range(0, 10**6, cfg.decode.stride), None, 1):
                height, width = pixels.shape[1:3]
                meta = {"video_key": video.key, "chunk_index": 0, "n_chunks": 1, "frame": int(ids[0]), "fps": 15.0,
                        "native_width": width, "native_height": height}
                parts.append(to_frame(scorer.score_images([meta], list(pixels))))
                arrivals.append((time.perf_counter() - started, 1))
            rows = pd.concat(parts, ignore_index=True)
        else:
            tasks = plan_chunks({"uri": video.uri, "key": video.key}, config_to_dict(cfg.decode))
            parts = []
            for part in scorer(pd.DataFrame(tasks).to_dict("list")):
                parts.append(part)
                arrivals.append((time.perf_counter() - started, int((part.row_kind == "frame").sum())))
            rows = pd.concat(parts, ignore_index=True)
        timeline = finalize_video(rows[rows.row_kind == "frame"], video.video_label, gate, selection)
        frames += len(timeline)
    end = time.perf_counter()
    scored = [(t, n) for t, n in arrivals if n > 0]
    return {"frames": frames, "seconds": round(end - started, 2), "startup_s": round(scored[0][0], 2),
            "fps": round(frames / (end - started), 1), "steady_fps": round(steady_rate(*zip(*scored)) or 0.0, 1)}


def plain_loop_process(cfg: MineConfig, work: Path, frame_by_frame: bool = False) -> dict:
    """A plain loop as a user runs it: its own process, timed from launch to exit, like
    the pipeline (interpreter start and imports included in both)."""
    import subprocess
    import sys

    config, result = work / "bench-plain.json", work / "bench-plain-result.json"
    config.write_text(json.dumps(cfg.model_dump(mode="json")))
    started = time.perf_counter()
    with MemorySampler() as mem:
        proc = subprocess.Popen([sys.executable, "-m", "bench.mining", "--plain-loop", str(config), "--result", str(result),
                                 *(["--frame-by-frame"] if frame_by_frame else [])], cwd=REPO, stdout=subprocess.DEVNULL)
        mem.driver_pid = proc.pid
        if proc.wait() != 0:
            raise RuntimeError("the plain loop failed")
    seconds = time.perf_counter() - started
    inner = json.loads(result.read_text())
    return {"frames": inner["frames"], "seconds": round(seconds, 2), "fps": round(inner["frames"] / seconds, 1),
            "startup_s": round(seconds - inner["seconds"] + inner["startup_s"], 2), "steady_fps": inner["steady_fps"],
            **mem.mb()}


STARTUP_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
t2 = time.perf_counter()

@ray.remote(num_cpus=0)
class Probe:
    def __init__(self, config):
        self.t = {}
        t = time.perf_counter(); import torch; self.t["import_torch_s"] = time.perf_counter() - t
        t = time.perf_counter(); import ultralytics; self.t["import_ultralytics_s"] = time.perf_counter() - t
        t = time.perf_counter(); import open_clip; self.t["import_open_clip_s"] = time.perf_counter() - t
        from engine.mining.config import MineConfig
        from engine.mining.stages import FrameScorer
        from engine.config import config_to_dict
        cfg = MineConfig.model_validate(json.loads(config))
        t = time.perf_counter(); FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
        self.t["build_models_s"] = time.perf_counter() - t
    def times(self):
        return self.t

t3 = time.perf_counter()
inner = ray.get(Probe.remote(sys.argv[1]).times.remote())
t4 = time.perf_counter()
print(json.dumps({"import_ray_s": t1 - t0, "ray_init_s": t2 - t1, "actor_ready_s": t4 - t3, **inner}))
"""


def startup_breakdown(cfg: MineConfig) -> dict:
    """Where the pipeline's start-up goes: interpreter and Quarry imports in the driver, Ray's
    start, and one scoring actor's start (its imports and model builds timed inside it)."""
    import subprocess
    import sys

    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import jobs.mine, engine.mining.pipeline"], cwd=REPO, check=True)
    driver_imports = time.perf_counter() - started
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, json.dumps(cfg.model_dump(mode="json"))], cwd=REPO,
                         capture_output=True, text=True, check=True)
    times = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(v, 2) for k, v in {"python_and_quarry_imports_s": driver_imports, **times}.items()}


def decode_only(cfg: MineConfig, videos) -> dict:
    started, frames = time.perf_counter(), 0
    for video in videos:
        for ids, _ in decode_frames(video.uri, range(0, 10**6, cfg.decode.stride), None, cfg.decode.batch_frames):
            frames += len(ids)
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1)}


def decoded_batches(cfg: MineConfig, videos, max_frames: int) -> list[tuple]:
    """(frame ids, pixels) batches of `decode.batch_frames` from the first videos, until `max_frames`."""
    batches = []
    for video in videos:
        for ids, pixels in decode_frames(video.uri, range(0, 10**6, cfg.decode.stride), None, cfg.decode.batch_frames):
            batches.append((ids, pixels))
        if sum(len(i) for i, _ in batches) >= max_frames:
            break
    return batches


def score_batch(scorer: FrameScorer, frame_ids, pixels) -> list[dict]:
    height, width = pixels.shape[1:3]
    metas = [{"video_key": "x", "chunk_index": 0, "n_chunks": 1, "frame": int(f), "fps": 15.0,
              "native_width": width, "native_height": height} for f in frame_ids]
    return scorer.score_images(metas, list(pixels))


def score_only(cfg: MineConfig, videos, max_frames: int = 960, warmup_batches: int = 0) -> dict:
    """Detector + CLIP + fusion on frames already in memory; `warmup_batches` scored first, untimed."""
    scorer = FrameScorer(config_to_dict(cfg.scoring), config_to_dict(cfg.decode))
    batches = decoded_batches(cfg, videos, max_frames)
    for frame_ids, pixels in batches[:warmup_batches]:
        score_batch(scorer, frame_ids, pixels)
    started, frames = time.perf_counter(), 0
    for frame_ids, pixels in batches:
        frames += len(score_batch(scorer, frame_ids, pixels))
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
            "startup_s": s["startup"], "steady_fps": s["steady_frames_per_s"], **mem.mb(),
            # where the driver's memory goes over the run: streaming, then the tables rebuilt at the end
            "driver_trace_mb": mem.driver_trace, "mining_s": s["mining"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default="10,100", help="comma-separated video counts")
    parser.add_argument("--out", default="bench/results", help="folder for the JSON result")
    parser.add_argument("--work", default="runs/bench", help="scratch folder for videos and outputs")
    parser.add_argument("--max-actors", type=int, default=2)
    parser.add_argument("--docs", help="rewrite the mining table in this Markdown file (docs/benchmarks.md)")
    parser.add_argument("--all-variants-below", type=int, default=1000, help=(
        "from this many videos on, only the batched loop and one pipeline run (the others take an hour at 1,000)"))
    parser.add_argument("--repeats", type=int, default=1, help="pipeline runs per video count (their spread is reported)")
    parser.add_argument("--plain-loop", help=argparse.SUPPRESS)  # internal: run only the plain loop on this config
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--frame-by-frame", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from engine.offline import enable_offline

    enable_offline()
    if args.plain_loop:
        cfg = MineConfig.model_validate(json.loads(Path(args.plain_loop).read_text()))
        result = plain_loop(cfg, list_inputs(cfg.input.source, cfg.input.extensions), args.frame_by_frame)
        Path(args.result).write_text(json.dumps(result))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    detector = detector_path(work)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "detector": detector}, "runs": []}
    random_clip = "scoring.clip.checkpoint=null"  # random weights, as the detector's: the same work as trained ones
    probe_cfg = load_config(MineConfig, REPO / "configs" / "mine.yaml", [f"scoring.detector.source={detector}", random_clip])
    results["startup_breakdown"] = startup_breakdown(probe_cfg)
    print("start-up breakdown:", json.dumps(results["startup_breakdown"]))
    for n in [int(v) for v in args.videos.split(",")]:
        manifest = make_videos(work, n, seed=100 + n)
        cfg = load_config(MineConfig, REPO / "configs" / "mine.yaml", [
            f"input.source={manifest}", f"output.out_dir={work / f'mine-{n}-{int(time.time())}'}",
            f"scoring.detector.source={detector}", random_clip, f"scoring.max_actors={args.max_actors}",
            "tracking.enabled=false", "ray.num_cpus=" + str(os.cpu_count())])
        videos = list_inputs(cfg.input.source, cfg.input.extensions)
        full = n < args.all_variants_below
        run = {"videos": n, "decode_only": decode_only(cfg, videos)}
        run["plain_loop"] = plain_loop_process(cfg, work)
        if full:
            run["frame_by_frame_loop"] = plain_loop_process(cfg, work, frame_by_frame=True)
        run["score_only"] = score_only(cfg, videos)
        repeats = []
        for i in range(args.repeats if full else 1):
            again = cfg.model_copy(deep=True)
            again.output.out_dir = Path(f"{cfg.output.out_dir}-{i}")
            repeats.append(pipeline(again, work))
        run["pipeline"] = sorted(repeats, key=lambda r: r["fps"])[len(repeats) // 2]  # the median run
        run["pipeline_spread"] = {k: [min(r[k] for r in repeats), max(r[k] for r in repeats)]
                                  for k in ("fps", "steady_fps", "startup_s")}
        if full:
            tasks_cfg = cfg.model_copy(deep=True)
            tasks_cfg.decode.layout = "tasks"
            tasks_cfg.output.out_dir = Path(f"{cfg.output.out_dir}-tasks")
            run["pipeline_decode_in_tasks"] = pipeline(tasks_cfg, work)
        p, loop, score = run["pipeline"], run["plain_loop"], run["score_only"]
        run["ratios"] = {
            "pipeline_vs_plain_loop": round(p["fps"] / loop["fps"], 2),
            "pipeline_steady_vs_plain_loop_steady": round(p["steady_fps"] / loop["steady_fps"], 2),
            "pipeline_steady_vs_score_only": round(p["steady_fps"] / score["fps"], 2),
        }
        if full:
            run["ratios"]["pipeline_vs_frame_by_frame_loop"] = round(p["fps"] / run["frame_by_frame_loop"]["fps"], 2)
            run["ratios"]["decode_in_tasks_vs_decode_in_actor"] = round(run["pipeline_decode_in_tasks"]["fps"] / p["fps"], 2)
        results["runs"].append(run)
        print(json.dumps(run, indent=1))
    if len(results["runs"]) > 1:  # growth from the first run of 100 videos or more (the 100 -> 1,000)
        last = results["runs"][-1]
        first = next((r for r in results["runs"][:-1] if r["videos"] >= 100), results["runs"][0])
        results["memory_growth"] = {
            "videos": [first["videos"], last["videos"]],
            "driver_peak_ratio": round(last["pipeline"]["driver_peak_mb"] / first["pipeline"]["driver_peak_mb"], 2),
            "workers_peak_ratio": round(last["pipeline"]["ray_workers_peak_mb"] / max(first["pipeline"]["ray_workers_peak_mb"], 1), 2),
        }
    publish(results, args.out, "mining", table_markdown, args.docs)


def table_markdown(results: dict, source: str) -> str:
    """The result as the Markdown table docs/benchmarks.md shows (frames/s of scored frames;
    steady: between 10 % and 90 % of the frames scored, — where 80 % of them reached the driver
    at once; [min-max] over the pipeline's repeats)."""
    lines = [f"Result `{source}`; start-up breakdown (seconds): "
             + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v}" for k, v in results["startup_breakdown"].items()),
             "",
             "| videos | frames | decode only | score only | frame-by-frame loop (steady) | batched loop (steady) "
             "| pipeline (steady) | pipeline / batched loop | pipeline / frame-by-frame | decode-in-tasks pipeline (steady) "
             "| pipeline start-up | driver peak | Ray workers peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        p, loop, spread = r["pipeline"], r["plain_loop"], r["pipeline_spread"]
        missing = {"fps": "—", "steady_fps": "—"}
        fbf, tasks = r.get("frame_by_frame_loop", missing), r.get("pipeline_decode_in_tasks", missing)
        span = (lambda k: f" [{spread[k][0]}-{spread[k][1]}]" if spread[k][0] != spread[k][1] else "")
        lines.append(
            f"| {r['videos']:,} | {p['frames']:,} | {r['decode_only']['fps']} | {r['score_only']['fps']} "
            f"| {fbf['fps']} ({fbf['steady_fps']}) | {loop['fps']} ({loop['steady_fps']}) "
            f"| {p['fps']}{span('fps')} ({p['steady_fps']}{span('steady_fps')}) | **{r['ratios']['pipeline_vs_plain_loop']}** "
            f"| **{r['ratios'].get('pipeline_vs_frame_by_frame_loop', '—')}** | {tasks['fps']} ({tasks['steady_fps'] or '—'}) "
            f"| {p['startup_s']} s{span('startup_s')} | {p['driver_peak_mb']:,} MB | {p['ray_workers_peak_mb']:,} MB |")
    if "memory_growth" in results:
        g = results["memory_growth"]
        lines.append(f"\nPeak memory from {g['videos'][0]:,} to {g['videos'][1]:,} videos: driver x{g['driver_peak_ratio']}, "
                     f"Ray workers x{g['workers_peak_ratio']}.")
    return "\n".join(lines)


def publish(result: dict, out_dir: str, name: str, render, docs: str | None) -> None:
    """Write `result` as bench/results/<name>-<time>.json, print its table (`render(result,
    path)`) and, with `docs`, rewrite the table between the `bench:<name>` markers there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    table = render(result, str(path))
    print(f"\n{table}\n\nwrote {path}")
    if docs:
        rewrite_section(Path(docs), name, table)
        print(f"rewrote the {name} table in {docs}")


def rewrite_section(doc: Path, name: str, text: str) -> None:
    """Replace what lies between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `doc`."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    content = doc.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{doc}: no {start} ... {end} section to rewrite")
    head, rest = content.split(start, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    main()
