"""The mining plan on Ray Data, and the driver loop that turns scored rows into outputs.

    inputs (one row per video) --flat_map(plan_chunks)--> chunk tasks
        [--map_batches(decode_chunks)--> decoded frames, with decode.layout=tasks]
        --map_batches(FrameScorer, ActorPoolStrategy(min, max), num_gpus)--> frame rows
        --iter_batches--> driver: per-video assembly (idempotent on retried rows),
                          gate + selection (pure), outputs + completion marker

Ray Data keeps no row order and its group-by waits for a full shuffle, so the driver
assembles each video itself: a video is finished when every chunk reported its end, and
its timeline is then sorted by frame. Only in-flight videos are held, and rows carry no
pixels, so driver memory stays flat as the number of videos grows.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from engine.attempts import is_done
from engine.config import config_to_dict
from engine.metrics.throughput import steady_rate
from engine.mining.config import MineConfig
from engine.mining.gating import GateParams
from engine.mining.inputs import VideoInput
from engine.mining.outputs import commit_video, record_error
from engine.mining.selection import SelectionParams
from engine.mining.stages import MAX_CUE_KINDS, FrameScorer, decode_chunks
from engine.mining.timeline import finalize_video
from engine.raycluster import own_errors_surface
from engine.video.chunks import VideoAssembler, plan_chunks

log = logging.getLogger("quarry.mine")
MAX_PENDING_WRITES = 8  # videos whose outputs are being written; bounds driver memory



def _warn_if_no_cpu_left(cfg: MineConfig) -> None:
    """Decode tasks (layout=tasks) need CPUs that the scoring actors do not hold."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    held = cfg.scoring.min_actors * cfg.scoring.num_cpus_per_actor
    if cfg.decode.layout == "tasks" and held >= total:
        log.warning("scoring.min_actors x num_cpus_per_actor = %g of the cluster's %g CPUs leaves none for the "
                    "decode tasks (decode.layout=tasks); the job waits until the cluster grows", held, total)


def build_dataset(cfg: MineConfig, videos: list[VideoInput]):
    """The Ray Data plan: one row per video -> chunk tasks -> scored frame rows."""
    import ray

    _warn_if_no_cpu_left(cfg)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver logs per-video progress instead
    decode = config_to_dict(cfg.decode)
    ds = ray.data.from_items([{"uri": v.uri, "key": v.key} for v in videos], override_num_blocks=max(1, len(videos)))
    # Planning only probes files: it asks for no CPU, so scoring actors that hold every CPU
    # cannot starve it (they did with min_actors = CPUs: a deadlock), and a small task pool
    # keeps it from spawning a worker process per block.
    ds = ds.flat_map(plan_chunks, fn_kwargs={"decode": decode}, num_cpus=0, compute=ray.data.TaskPoolStrategy(size=2))
    if cfg.decode.layout == "tasks":
        ds = ds.map_batches(decode_chunks, fn_kwargs={"decode": decode}, batch_size=1, batch_format="pandas", num_cpus=1)
    s = cfg.scoring
    return ds.map_batches(
        FrameScorer,
        fn_constructor_kwargs={"scoring": config_to_dict(s), "decode": decode},
        # actor layout: one chunk task per call, the scorer batches frames itself;
        # tasks layout: batches of decoded frames
        batch_size=cfg.decode.batch_frames if cfg.decode.layout == "tasks" else 1,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(min_size=s.min_actors, max_size=s.max_actors),
        num_gpus=s.num_gpus_per_actor or None,
        num_cpus=s.num_cpus_per_actor,
    )


def video_step_params(cfg: MineConfig) -> tuple[GateParams, SelectionParams]:
    """The pure per-video step's parameters, from the job config."""
    gate = GateParams(min_cue_kinds=cfg.gate.min_cue_kinds, min_frames=cfg.gate.min_frames,
                      window_frames=cfg.gate.window_frames, persistence_weight=cfg.gate.persistence_weight,
                      n_kinds=MAX_CUE_KINDS)
    return gate, SelectionParams(**cfg.selection.model_dump())


def mine_videos(cfg: MineConfig, videos: list[VideoInput], provenance: dict) -> dict:
    """Score, gate and commit every video in `videos`; return per-key markers and errors."""
    out = Path(cfg.output.out_dir)
    rh = provenance["config_hash"]
    gate, selection = video_step_params(cfg)
    by_key = {v.key: v for v in videos}
    results: dict[str, dict] = {}
    futures: list[tuple[str, Future]] = []
    started, frames_done = time.perf_counter(), 0
    arrivals: list[tuple[float, int]] = []  # (when, scored frames) per batch: start-up and steady rate
    assembler = VideoAssembler()
    with ThreadPoolExecutor(max_workers=2) as writer, own_errors_surface():  # JPEG work releases the GIL
        for batch in build_dataset(cfg, videos).iter_batches(batch_size=None, batch_format="pandas"):
            arrivals.append((time.perf_counter() - started, int((batch["row_kind"] == "frame").sum())))
            for key, frames, error in assembler.add(batch):
                video = by_key[key]
                if error is not None:
                    results[key] = {"error": record_error(out, video, error, rh)}
                    log.warning("[%d/%d] %s: error: %s", len(results), len(videos), key, error)
                    continue
                pending = [f for _, f in futures if not f.done()]
                if len(pending) >= MAX_PENDING_WRITES:  # back-pressure: wait for a writer
                    wait(pending, return_when=FIRST_COMPLETED)
                timeline = finalize_video(frames, video.video_label, gate, selection)
                frames_done += len(timeline)
                futures.append((key, writer.submit(
                    commit_video, out, video, timeline.drop(columns=["row_kind", "n_rows", "error"]), provenance,
                    float(timeline["fps"].iloc[0]) / cfg.decode.stride, cfg.output.timeline_csv,
                    cfg.output.annotated_mp4, cfg.output.jpeg_quality, rh)))
                rate = frames_done / (time.perf_counter() - started)
                log.info("[%d/%d] %s: %d frames scored, %d candidates (%.1f frames/s so far)", len(results) + len(futures),
                         len(videos), key, len(timeline), int(timeline["is_candidate"].sum()), rate)
        for key, future in futures:
            try:
                results[key] = {"marker": future.result()}
            except Exception as exc:  # e.g. the file went bad between scoring and snapshotting
                results[key] = {"error": record_error(out, by_key[key], f"writing outputs failed: {exc}", rh)}
    for video in videos:  # never silently drop an input
        if video.key not in results:
            results[video.key] = {"error": record_error(out, video, "scoring produced no result for this video", rh)}
    scored = [(t, n) for t, n in arrivals if n > 0]
    return {"results": results, "frames_scored": frames_done, "seconds": time.perf_counter() - started,
            "startup_s": scored[0][0] if scored else 0.0,  # until the first scored frame reached the driver
            "steady_fps": steady_rate(*zip(*scored)) or 0.0 if scored else 0.0}


def completed_keys(out: Path, videos: list[VideoInput], rh: str) -> set[str]:
    """Inputs whose latest attempt succeeded under the same run hash (models and settings)."""
    return {video.key for video in videos if is_done(out, video.key, rh, uri=video.uri)}
