"""The run summary of a mining job: the distributions seed 000 reports, as JSON and Markdown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.mining.gating import SEMANTIC_STATES

CUE_BINS = [(0, 2), (3, 5), (6, 10), (11, 20), (21, None)]


def _stats(values: pd.Series) -> dict:
    if values.empty:
        return {"mean": None, "std": None, "min": None, "max": None}
    v = values.to_numpy(np.float64)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4), "min": round(float(v.min()), 4),
            "max": round(float(v.max()), 4)}


def _at_least(values: pd.Series, thresholds: list[float]) -> dict:
    n = len(values)
    return {f">={t}": {"count": int((values >= t).sum()), "pct": round(100.0 * float((values >= t).sum()) / n, 1) if n else 0.0}
            for t in thresholds}


def summarize_candidates(candidates: pd.DataFrame, min_cue_kinds: int) -> dict:
    """Score, gate-confidence, zone-state, cue-count and sustained-cue distributions."""
    n = len(candidates)
    cue_bins = {}
    for low, high in CUE_BINS:
        inside = candidates["cue_count"] >= low if high is None else candidates["cue_count"].between(low, high)
        cue_bins[f"{low}+" if high is None else f"{low}-{high}"] = int(inside.sum())
    top = min_cue_kinds + 3  # seed 000 bins sustained cues as 2, 3, 4, 5+
    sustained = {str(k): int((candidates["sustained_cues"] == k).sum()) for k in range(min_cue_kinds, top)}
    sustained[f"{top}+"] = int((candidates["sustained_cues"] >= top).sum())
    return {
        "candidates": n,
        "yolo_score": {**_stats(candidates["yolo_score"]), **_at_least(candidates["yolo_score"], [0.8, 0.9])},
        "fused_score": _stats(candidates["fused_score"]),
        "gate_confidence": _at_least(candidates["gate_confidence"], [0.5, 0.7, 0.85]),
        "gate_pass": int(candidates["gate_pass"].sum()),
        "semantic_state": {s: int((candidates["semantic_state"] == s).sum()) for s in SEMANTIC_STATES},
        "cue_count_bins": cue_bins,
        "cue_count_mean": round(float(candidates["cue_count"].mean()), 2) if n else None,
        "sustained_cues": sustained,
    }


def summary_markdown(summary: dict) -> str:
    """A human-readable report of `summary` (the job's summary.json)."""
    c, io = summary["candidates"], summary["inputs"]
    lines = [
        f"# Mining run {summary['run_id']}",
        "",
        f"- mode: {summary['mode']}; config hash {summary['config_hash']}",
        f"- inputs: {io['total']} = {io['processed']} mined now + {io['skipped_done']} already done "
        f"(unchanged models and settings) + {io['errored']} errored",
        f"- frames scored: {summary['frames_scored']}; candidates: {c['candidates']}",
        f"- wall time: {summary['seconds']['total']} s; {summary['seconds']['frames_per_s']} frames/s while mining "
        f"({summary['seconds']['startup']} s to the first scored frame; {summary['seconds']['steady_frames_per_s']} "
        "frames/s steady, from 10 % to 90 % of the frames scored)",
        "",
        "## Frame outcomes",
        "",
        "| reason | frames |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in summary["reasons"].items()],
    ]
    if c["candidates"]:
        y, f = c["yolo_score"], c["fused_score"]
        lines += [
            "",
            "## Candidates",
            "",
            f"YOLO score: mean {y['mean']} ± {y['std']} (min {y['min']}, max {y['max']}); "
            f">=0.80: {y['>=0.8']['count']} ({y['>=0.8']['pct']}%), >=0.90: {y['>=0.9']['count']} ({y['>=0.9']['pct']}%)",
            f"Fused score (CLIP+YOLO): mean {f['mean']} ± {f['std']} (min {f['min']}, max {f['max']})",
            "Gate confidence: " + ", ".join(f"{k}: {v['count']} ({v['pct']}%)" for k, v in c["gate_confidence"].items()),
            "Zone state: " + ", ".join(f"{k} {v}" for k, v in c["semantic_state"].items()),
            "Cue counts: " + ", ".join(f"{k}: {v}" for k, v in c["cue_count_bins"].items()) + f"; mean {c['cue_count_mean']}",
            "Sustained cues: " + ", ".join(f"{k}: {v}" for k, v in c["sustained_cues"].items()),
        ]
    if summary["errors"]:
        lines += ["", "## Errors", "", "| video | reason |", "|---|---|"]
        lines += [f"| {e['video_path']} | {e['reason']} |" for e in summary["errors"]]
    return "\n".join(lines) + "\n"
