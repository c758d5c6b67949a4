"""Per-input attempt records of a job's output folder: `done/<key>.json` when an input's
outputs were committed, `errors/<key>.json` when it failed. The latest attempt decides:
a success removes the input's error record, a failure removes its done record (the job
removes the outputs that went with it), and should a crash leave both, the newer wins.
Each record carries the job's run hash, so a rerun can tell what is still valid."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.storage import atomic_write_json


def done_path(out: Path, key: str) -> Path:
    return Path(out) / "done" / f"{key}.json"


def error_path(out: Path, key: str) -> Path:
    return Path(out) / "errors" / f"{key}.json"


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def record_done(out: Path, key: str, record: dict) -> dict:
    """Write the done record (after the input's outputs), then drop an older error record."""
    record = {**record, "key": key, "attempted_at": time.time()}
    atomic_write_json(done_path(out, key), record)
    error_path(out, key).unlink(missing_ok=True)
    return record


def record_failure(out: Path, key: str, record: dict) -> dict:
    """Write the error record, then drop an older done record."""
    record = {**record, "key": key, "attempted_at": time.time()}
    atomic_write_json(error_path(out, key), record)
    done_path(out, key).unlink(missing_ok=True)
    return record


def latest_attempt(out: Path, key: str) -> tuple[str, dict] | None:
    """("done", record) or ("error", record) of the input's latest attempt, or None."""
    done, error = _read(done_path(out, key)), _read(error_path(out, key))
    if done and error:  # a crash between writing one record and removing the other
        return ("done", done) if done.get("attempted_at", 0) >= error.get("attempted_at", 0) else ("error", error)
    if done:
        return "done", done
    return ("error", error) if error else None


def is_done(out: Path, key: str, run_hash: str, **same) -> bool:
    """The input's latest attempt succeeded under `run_hash` (and matches `same`, e.g. its uri)."""
    attempt = latest_attempt(out, key)
    return bool(attempt and attempt[0] == "done" and attempt[1].get("run_hash") == run_hash
                and all(attempt[1].get(k) == v for k, v in same.items()))
