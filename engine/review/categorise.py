"""Categorise candidates (seed 000's categories): one at a time in the terminal, or in bulk by
CLIP zero-shot against a prompt per category, or by rules over the manifest's columns. Every
answer is appended to the reviews table the moment it is given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, TextIO

import numpy as np
import pandas as pd

from engine.config import ConfigError
from engine.review.config import ReviewConfig
from engine.review.reviews import append_reviews

KEYS_HELP = "s skip, a accept, r reject, q quit"


def _describe(row) -> str:
    scores = ", ".join(f"{c} {getattr(row, c):.3f}" for c in ("yolo_score", "fused_score", "clip_p_workzone")
                       if hasattr(row, c) and pd.notna(getattr(row, c)))
    return (f"{row.candidate_id}  [{row.video_label}, {getattr(row, 'semantic_state', '?')}]  {scores}\n"
            f"  image: {row.image}")


def interactive(table: pd.DataFrame, categories: list[str], reviews_path: Path,
                read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> dict:
    """One candidate at a time, those without a category first in manifest order: a number
    picks a category, `a`/`r` accept or reject, `s` skips, `q` stops. Resumable: candidates
    that have a category are not asked again."""
    todo = table[table["category"].isna()]
    menu = "  ".join(f"{i} {name}" for i, name in enumerate(categories, 1)) + f"  |  {KEYS_HELP}"
    answered = skipped = 0
    print(f"{len(todo)} of {len(table)} candidates without a category. {menu}", file=out, flush=True)
    for position, row in enumerate(todo.itertuples(index=False), 1):
        print(f"[{position}/{len(todo)}] {_describe(row)}", file=out, flush=True)
        while True:
            try:
                key = read("> ").strip().lower()
            except EOFError:
                key = "q"
            if key == "q":
                return {"answered": answered, "skipped": skipped, "left": len(todo) - position + 1, "stopped": True}
            if key == "s":
                skipped += 1
                break
            if key in ("a", "r"):
                append_reviews(reviews_path, [{"candidate_id": row.candidate_id, "field": "decision",
                                               "value": "accepted" if key == "a" else "rejected", "source": "interactive"}])
                print("  saved", file=out, flush=True)
                continue  # a decision and a category are separate answers: ask for the category too
            if key.isdigit() and 1 <= int(key) <= len(categories):
                append_reviews(reviews_path, [{"candidate_id": row.candidate_id, "field": "category",
                                               "value": categories[int(key) - 1], "source": "interactive"}])
                answered += 1
                print(f"  saved: {categories[int(key) - 1]}", file=out, flush=True)
                break
            print(f"  unknown key {key!r}: {menu}", file=out, flush=True)
    return {"answered": answered, "skipped": skipped, "left": 0, "stopped": False}


def by_clip(table: pd.DataFrame, cfg: ReviewConfig) -> dict:
    """Zero-shot: each candidate's snapshot against one prompt per category; the most probable
    category (at least `min_probability`) is recorded with its probability."""
    import cv2

    from engine.models.clip import build_clip, check_clip_source, encode_images, encode_texts, logit_scale

    todo = table if cfg.categorise.overwrite else table[table["category"].isna()]
    names = list(cfg.categories)
    check_clip_source(cfg.categorise.clip, "categorise.clip")
    clip = build_clip(cfg.categorise.clip)
    text = encode_texts(clip, [cfg.categories[n] for n in names])
    scale = logit_scale(clip)
    records, unreadable = [], []
    rows = list(todo.itertuples(index=False))
    for start in range(0, len(rows), 64):
        batch, images = [], []
        for row in rows[start : start + 64]:
            bgr = cv2.imread(row.image)
            if bgr is None:
                unreadable.append(row.image)
                continue
            batch.append(row)
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if not images:
            continue
        logits = scale * (encode_images(clip, images) @ text.T)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        for row, p in zip(batch, probs):
            best = int(np.argmax(p))
            if p[best] >= cfg.categorise.min_probability:
                records.append({"candidate_id": row.candidate_id, "field": "category", "value": names[best],
                                "source": "clip", "score": round(float(p[best]), 4)})
    append_reviews(cfg.reviews_path, records)
    counts = pd.Series([r["value"] for r in records], dtype=object).value_counts().to_dict()
    return {"categorised": len(records), "by_category": {k: int(v) for k, v in counts.items()},
            "below_min_probability": len(rows) - len(records) - len(unreadable), "unreadable": unreadable}


def by_rules(table: pd.DataFrame, cfg: ReviewConfig) -> dict:
    """The first rule whose `where` query matches a candidate gives its category."""
    if not cfg.categorise.rules:
        raise ConfigError("categorise.rules is empty: give [{category: ..., where: ...}, ...]")
    todo = table if cfg.categorise.overwrite else table[table["category"].isna()]
    chosen = pd.Series(None, index=todo.index, dtype=object)
    for rule in cfg.categorise.rules:
        try:
            hit = todo.query(rule.where).index
        except Exception as exc:
            raise ConfigError(f"categorise.rules: where = {rule.where!r}: {exc}") from None
        chosen[hit.difference(chosen.dropna().index)] = rule.category
    records = [{"candidate_id": cid, "field": "category", "value": cat, "source": "rules"}
               for cid, cat in zip(todo["candidate_id"], chosen) if pd.notna(cat)]
    append_reviews(cfg.reviews_path, records)
    return {"categorised": len(records), "unmatched": int(chosen.isna().sum()),
            "by_category": {k: int(v) for k, v in chosen.dropna().value_counts().items()}}
