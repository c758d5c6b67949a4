"""One labelling run: list sources, skip those done under the same run identity, label the
rest on a Ray Data actor pool, commit each source's rows with its done record, rebuild the
tables and summarise (with the rules' precision against a synthetic world's ground truth).

    sources --flat_map(plan_label_tasks)--> tasks
            --map_batches(FrameLabeler, ActorPoolStrategy)--> frame rows (label files' text, frames' JPEGs)
            --iter_batches--> driver: files written, per-source assembly, parts/<key>.parquet + done record
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from engine.attempts import is_done, latest_attempt, record_done, record_failure
from engine.config import config_to_dict
from engine.evaluate.world_truth import load_truth, matches_real_object, share
from engine.labels.config import LabelConfig
from engine.labels.sources import LabelSource, list_sources
from engine.labels.stages import FILE_COLUMNS, FrameLabeler, plan_label_tasks, write_frame_files
from engine.mining.identity import file_sha256, package_version
from engine.raycluster import check_actor_fits, own_errors_surface, ray_session
from engine.storage import atomic_write_json, atomic_write_text, write_table
from engine.video.chunks import VideoAssembler

log = logging.getLogger("quarry.label")
FRAME_COLUMNS = ["video_key", "frame", "name", "image_path", "label_path", "width", "height", "video_label",
                 "n_boxes", "n_kept", "use", "sample_kind", "loss_weight"]
BOX_COLUMNS = ["video_key", "frame", "name", "video_label", "class_name", "class_id", "conf", "x1", "y1", "x2", "y2",
               "reason", "kept"]


def run_hash(cfg: LabelConfig) -> str:
    """The detector's bytes and every setting that decides a source's labels."""
    data = config_to_dict(cfg)
    relevant = {k: data[k] for k in ("decode", "detector", "rules")}
    relevant["input"] = {"kind": cfg.input.kind}
    relevant["detector_sha256"] = file_sha256(cfg.detector.source) or f"{cfg.detector.source}@{package_version('ultralytics')}"
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def _source_id(source: LabelSource) -> str:
    """What a source is made of: a rerun redoes it when its items change."""
    return hashlib.sha256(json.dumps([source.uri, list(source.items)], sort_keys=True).encode()).hexdigest()[:16]


def _clear_outputs(out: Path, key: str) -> None:
    (out / "parts" / f"{key}.parquet").unlink(missing_ok=True)
    shutil.rmtree(out / "labels" / key, ignore_errors=True)
    shutil.rmtree(out / "frames" / key, ignore_errors=True)


def _write_failure(writes: list[Future]) -> str | None:
    """Why a source's files could not be written, once every write of its frames has ended."""
    failures = [f.exception() for f in writes if f.exception() is not None]
    return f"writing its label files failed: {failures[0]}" if failures else None


def label_sources(cfg: LabelConfig, sources: list[LabelSource], rh: str) -> dict:
    """Label `sources` on Ray; commit each one; return {key: "done" | error reason}."""
    import ray

    out = Path(cfg.output.out_dir)
    by_key = {s.key: s for s in sources}
    for source in sources:  # a source is redone whole: no stale file of an earlier attempt survives
        _clear_outputs(out, source.key)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([s.task_row() for s in sources], override_num_blocks=max(1, len(sources)))
    ds = ds.flat_map(plan_label_tasks, fn_kwargs={"decode": config_to_dict(cfg.decode),
                                                  "images_per_task": cfg.images_per_task},
                     num_cpus=0, compute=ray.data.TaskPoolStrategy(size=2))
    ds = ds.map_batches(FrameLabeler, batch_size=1, batch_format="pandas",
                        fn_constructor_kwargs={"detector": config_to_dict(cfg.detector), "rules": config_to_dict(cfg.rules),
                                               "decode": config_to_dict(cfg.decode), "out_dir": str(out.resolve()),
                                               "jpeg_quality": cfg.output.jpeg_quality},
                        **cfg.pool.map_batches_kwargs())
    results, assembler, started, frames = {}, VideoAssembler(), time.perf_counter(), 0
    writes: dict[str, list[Future]] = {}  # each source's file writes, finished before it is committed
    with ThreadPoolExecutor(max_workers=2) as writer, own_errors_surface():  # file writes release the GIL
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            written = writer.submit(write_frame_files, batch)
            for key in batch["video_key"].unique():
                writes.setdefault(key, []).append(written)
            for key, rows, error in assembler.add(batch.drop(columns=FILE_COLUMNS)):
                source = by_key[key]
                write_error = _write_failure(writes.pop(key, []))  # waits for them: none lands after a clear-out
                error = error or write_error
                if error is not None:
                    _clear_outputs(out, key)
                    record_failure(out, key, {"source": source.uri, "video_label": source.video_label, "reason": error,
                                              "run_hash": rh})
                    results[key] = error
                    log.warning("[%d/%d] %s: error: %s", len(results), len(sources), key, error)
                    continue
                rows = rows.sort_values("frame", kind="stable").drop(columns=["row_kind", "n_rows", "chunk_index", "n_chunks"])
                write_table(rows, out / "parts" / f"{key}.parquet")
                record_done(out, key, {"uri": source.uri, "source_id": _source_id(source), "run_hash": rh,
                                       "frames": len(rows), "item_errors": int((rows["error"] != "").sum())})
                results[key] = "done"
                frames += len(rows)
                log.info("[%d/%d] %s: %d frames labelled (%.1f frames/s so far)", len(results), len(sources), key,
                         len(rows), frames / (time.perf_counter() - started))
    for source in sources:
        if source.key not in results:  # never silently drop an input
            results[source.key] = record_failure(out, source.key, {"source": source.uri, "video_label": source.video_label,
                                                                   "reason": "labelling produced no result", "run_hash": rh})["reason"]
    return {"results": results, "frames": frames, "seconds": time.perf_counter() - started}


def rebuild_tables(out: Path, sources: list[LabelSource]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """labels.parquet (one row per labelled frame, with its source's metadata), boxes.parquet
    (one row per detection, kept or dropped and why) and errors.parquet (sources that failed and
    images that could not be read), from each source's latest attempt."""
    frames, errors = [], []
    for source in sources:
        attempt = latest_attempt(out, source.key)
        if attempt is None:
            continue
        if attempt[0] == "error":
            errors.append({"key": source.key, "path": source.uri, "reason": attempt[1]["reason"]})
            continue
        part = pd.read_parquet(out / "parts" / f"{source.key}.parquet")
        for row in part[part["error"] != ""].itertuples():
            errors.append({"key": source.key, "path": row.image_path, "reason": row.error.split(": ", 1)[-1]})
        part = part[part["error"] == ""].drop(columns=["error"])
        for name, value in source.metadata.items():
            if name not in part.columns:
                part[name] = value
        frames.append(part)
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FRAME_COLUMNS + ["boxes_json"])
    boxes = []
    for row in labels.itertuples(index=False):
        for name, cid, conf, x1, y1, x2, y2, reason in json.loads(row.boxes_json):
            boxes.append((row.video_key, row.frame, row.name, row.video_label, name, cid, conf, x1, y1, x2, y2, reason,
                          reason == "kept"))
    boxes_df = pd.DataFrame(boxes, columns=BOX_COLUMNS)
    if "video_stem" in labels.columns:
        boxes_df = boxes_df.merge(labels[["video_key", "frame", "video_stem"]], on=["video_key", "frame"], how="left")
    errors_df = pd.DataFrame(errors, columns=["key", "path", "reason"])
    write_table(labels.drop(columns=["boxes_json"]), out / "labels.parquet", csv=True)
    write_table(boxes_df, out / "boxes.parquet")
    write_table(errors_df, out / "errors.parquet")
    return labels, boxes_df, errors_df


def truth_report(boxes: pd.DataFrame, world_dir: Path) -> dict:
    """Seed 001's risk, measured: of the dropped boxes, the share that were not real objects
    (dropping them is right); of the kept boxes, the share that were (keeping them is right)."""
    if "video_stem" not in boxes.columns or boxes.empty:
        return {"boxes": 0}
    real = matches_real_object(boxes, load_truth(world_dir))
    kept = boxes["kept"].to_numpy(bool)
    per_reason = {reason: {"boxes": int(m.sum()), "share_real": share(real[m])}
                  for reason in sorted(boxes["reason"].unique()) for m in [(boxes["reason"] == reason).to_numpy()]}
    fp_video = boxes["video_label"].isin(["fp", "clean"]).to_numpy()
    return {"boxes": len(boxes), "dropped": int((~kept).sum()), "dropped_not_real": share(~real[~kept]),
            "kept": int(kept.sum()), "kept_real": share(real[kept]),
            "false_alarm_videos": {"dropped": int((~kept & fp_video).sum()), "dropped_not_real": share(~real[~kept & fp_video])},
            "per_reason": per_reason}


def run_labelling(cfg: LabelConfig) -> dict:
    started = time.perf_counter()
    out = Path(cfg.output.out_dir)
    sources = list_sources(cfg.input)
    rh = run_hash(cfg)
    done_before = [s for s in sources if is_done(out, s.key, rh, source_id=_source_id(s))]
    todo = [s for s in sources if s not in done_before]
    log.info("%d sources: %d already done, %d to label -> %s", len(sources), len(done_before), len(todo), out)
    labelled = {"results": {}, "frames": 0, "seconds": 0.0}
    if todo:
        with ray_session(cfg.ray):
            check_actor_fits(cfg.ray, cfg.pool, "pool")
            labelled = label_sources(cfg, todo, rh)
    labels, boxes, errors = rebuild_tables(out, sources)
    failed_sources = sum(1 for s in sources if (latest_attempt(out, s.key) or ("error",))[0] == "error")
    summary = {
        "run_id": time.strftime("%Y%m%d-%H%M%S"),
        "run_hash": rh,
        "out_dir": str(out),
        # total = processed (labelled now) + skipped_done (done before, unchanged) + errored
        "sources": {"total": len(sources), "processed": sum(v == "done" for v in labelled["results"].values()),
                    "skipped_done": len(done_before), "errored": failed_sources},
        "frames": {"labelled": len(labels), "unreadable": int(len(errors) - failed_sources),
                   **{k: int(v) for k, v in labels["sample_kind"].value_counts().items()}},
        "boxes": {"total": len(boxes), "kept": int(boxes["kept"].sum()),
                  "by_reason": {k: int(v) for k, v in boxes["reason"].value_counts().items()}},
        "by_video_label": {label: {"frames": int((labels["video_label"] == label).sum()),
                                   "boxes_kept": int(boxes[boxes["video_label"] == label]["kept"].sum()),
                                   "boxes_dropped": int((~boxes[boxes["video_label"] == label]["kept"]).sum())}
                           for label in sorted(labels["video_label"].unique())},
        "errors": errors.to_dict("records"),
        "seconds": {"total": round(time.perf_counter() - started, 1), "labelling": round(labelled["seconds"], 1),
                    "frames_per_s": round(labelled["frames"] / labelled["seconds"], 1) if labelled["seconds"] else 0.0},
    }
    if cfg.ground_truth is not None:
        summary["truth"] = truth_report(boxes, cfg.ground_truth)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return summary


def summary_markdown(s: dict) -> str:
    src, f, b = s["sources"], s["frames"], s["boxes"]
    lines = [f"# Labelling run {s['run_id']}", "",
             f"- sources: {src['total']} = {src['processed']} labelled now + {src['skipped_done']} already done + "
             f"{src['errored']} errored",
             f"- frames: {f['labelled']} labelled ({f.get('hard_negative', 0)} hard negatives, "
             f"{f.get('pseudo_labelled', 0)} pseudo-labelled, {f.get('unused', 0)} unused), {f['unreadable']} unreadable",
             f"- boxes: {b['total']} detected, {b['kept']} kept",
             "", "| reason | boxes |", "|---|---|", *[f"| {k} | {v} |" for k, v in b["by_reason"].items()]]
    if "truth" in s and s["truth"].get("boxes"):
        t = s["truth"]
        lines += ["", "Against the world's ground truth (IoU >= 0.5 with a drawn work-zone object):",
                  f"- dropped boxes that were not real objects: {t['dropped_not_real']} of {t['dropped']}",
                  f"- kept boxes that were real objects: {t['kept_real']} of {t['kept']}"]
    if s["errors"]:
        lines += ["", "## Errors", "", "| path | reason |", "|---|---|", *[f"| {e['path']} | {e['reason']} |" for e in s["errors"]]]
    return "\n".join(lines) + "\n"
