"""The reviews table: an append-only JSON-lines file beside the candidates manifest. Every
answer (a category, an accept/reject decision) is one line, written and flushed to disk at
once, never rewritten; the current answer for a candidate is its latest line per field. A
line cut short by a crash is skipped with a warning, so earlier answers are never lost. A table
in object storage gets each answer as it is written (engine/staging.py: publish_now)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

from engine.config import ConfigError
from engine.staging import publish_now

log = logging.getLogger("quarry.review")
FIELDS = ("category", "decision")
DECISIONS = ("accepted", "rejected")


def candidate_ids(candidates: pd.DataFrame) -> pd.Series:
    """A candidate's id: `<video_key>_f<frame>`, the stem of its snapshot."""
    return candidates["video_key"].astype(str) + "_f" + candidates["frame"].astype(int).astype(str)


def append_reviews(path: Path, records: list[dict]) -> int:
    """Append answers ({candidate_id, field, value, source, [score]}) and fsync; return how many."""
    bad = [r for r in records if r.get("field") not in FIELDS]
    if bad:
        raise ValueError(f"review field must be one of {FIELDS}, got {bad[0].get('field')!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps({**record, "at": stamp}, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        publish_now(path)  # in object storage: each answer reaches the store as it is given
    except ConfigError as exc:  # the answer is on disk; the command's end uploads it again
        log.warning("%s; the command's end tries again", exc)
    return len(records)


def read_reviews(path: Path) -> pd.DataFrame:
    """Every answer ever given, in order (candidate_id, field, value, source, at, score)."""
    rows = []
    path = Path(path)
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s line %d is not a complete answer (an interrupted write?); skipped", path, number)
    return pd.DataFrame(rows, columns=["candidate_id", "field", "value", "source", "at", "score"])


def current_reviews(path: Path) -> pd.DataFrame:
    """One row per reviewed candidate: its latest `category` and `decision` (and their sources)."""
    answers = read_reviews(path)
    out = pd.DataFrame(columns=["candidate_id", "category", "category_source", "decision"])
    if answers.empty:
        return out
    latest = answers.drop_duplicates(["candidate_id", "field"], keep="last")
    wide = latest.pivot(index="candidate_id", columns="field", values="value")
    sources = latest[latest["field"] == "category"].set_index("candidate_id")["source"]
    wide = wide.reindex(columns=list(FIELDS))
    wide["category_source"] = sources.reindex(wide.index)
    return wide.reset_index()[["candidate_id", "category", "category_source", "decision"]]


def with_reviews(candidates: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The candidates with candidate_id, category, category_source and decision columns."""
    table = candidates.copy()
    table["candidate_id"] = candidate_ids(table)
    return table.merge(current_reviews(path), on="candidate_id", how="left")
