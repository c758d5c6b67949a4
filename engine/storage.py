"""Local file helpers: atomic writes (temp file + rename) of bytes, text, JSON and tables."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success rename it over `target`.

    The temp name keeps the target's suffix so writers that infer a format from the
    extension (PyAV, OpenCV, pyarrow) still work. On error the temp file is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: Path, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: Path, payload: Any) -> Path:
    return atomic_write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_table(df, target: Path, csv: bool = False) -> Path:
    """Write a pandas DataFrame as Parquet (and optionally a CSV twin), atomically."""
    target = Path(target)
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
    if csv:
        with atomic_path(target.with_suffix(".csv")) as tmp:
            df.to_csv(tmp, index=False)
    return target
