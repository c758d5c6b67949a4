"""Storage helpers: atomic writes (temp file + rename) of bytes, text, JSON and tables; URIs on
local disk or an object store (pyarrow.fs for s3/gs/hdfs, fsspec otherwise); file-name-safe keys."""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
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


def safe_key(stem: str) -> str:
    """A file-name-safe ASCII version of `stem` (may be empty before de-duplication)."""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_stem)
    key = re.sub(r"\.{2,}", "_", key).lstrip(".")
    return key[:120]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    """The path of a local URI (`file://` stripped)."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def remote_filesystem(uri: str):
    """(filesystem, path) through pyarrow.fs for s3/gs/hdfs, else fsspec."""
    try:
        import pyarrow.fs as pafs

        return "pyarrow", *pafs.FileSystem.from_uri(uri)
    except Exception:  # pyarrow knows s3/gs/hdfs; anything else goes to fsspec
        import fsspec

        return "fsspec", *fsspec.core.url_to_fs(uri)


@contextmanager
def local_copy(uri: str, scratch_dir: str | None = None) -> Iterator[str]:
    """A local path for `uri`: the path itself, or a temporary download of a remote object."""
    if not is_remote(uri):
        yield local_path(uri)
        return
    import shutil
    import tempfile

    kind, fs, path = remote_filesystem(uri)
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="quarry-") as tmp:
        target = Path(tmp) / (safe_key(Path(path).stem) + Path(path).suffix)
        opener = fs.open_input_stream if kind == "pyarrow" else (lambda p: fs.open(p, "rb"))
        with opener(path) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        yield str(target)
