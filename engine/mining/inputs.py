"""List the videos to mine: a folder, a glob, an object-store prefix, one file, or a manifest.

Every input gets a `key`: its file stem made safe for file names (ASCII letters, digits,
`-`, `_`, `.`; no leading dot, no `..`), with a short hash of its URI appended when the
stem had to change or collides with another input's. Outputs are named by key. Keys already
given out (`known_keys`, the mining job's registry of its out_dir) are kept, so a new input
that shares a stem never renames an existing one's outputs.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from engine.config import ConfigError
from engine.storage import is_remote, local_path, remote_filesystem, safe_key

VideoLabel = Literal["tp", "fp", "clean", "unknown"]  # a video's label in a manifest and in configs
VIDEO_LABELS = get_args(VideoLabel)
MANIFEST_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class VideoInput:
    uri: str
    key: str
    video_label: str = "unknown"
    metadata: dict = field(default_factory=dict)


def assign_keys(uris: list[str], known_keys: dict[str, str] | None = None) -> list[str]:
    """Unique output keys for `uris` (see module doc). A URI in `known_keys` keeps its key;
    a new one gets its safe stem unless that is taken or shared, else stem + URI hash."""
    known = known_keys or {}
    taken = set(known.values())
    new = [u for u in uris if u not in known]
    stems = {u: Path(local_path(u.rstrip("/"))).stem for u in new}
    safe = {u: safe_key(stems[u]) for u in new}
    seen: dict[str, int] = {}
    for k in safe.values():
        seen[k] = seen.get(k, 0) + 1
    keys = []
    for uri in uris:
        if uri in known:
            keys.append(known[uri])
            continue
        key = safe[uri]
        if key != stems[uri] or seen[key] > 1 or not key or key in taken:
            key = f"{key or 'video'}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"
        keys.append(key)
    return keys


def _list_remote(prefix: str, extensions: list[str]) -> list[str]:
    kind, fs, path = remote_filesystem(prefix)
    scheme = prefix.split("://", 1)[0]
    if kind == "pyarrow":
        import pyarrow.fs as pafs

        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        names = [i.path for i in infos if i.type == pafs.FileType.File]
    else:
        names = list(fs.find(path))
    return sorted(f"{scheme}://{n.lstrip('/')}" if not n.startswith(f"{scheme}://") else n
                  for n in names if Path(n).suffix.lower() in extensions)


def _read_manifest(source: str) -> pd.DataFrame:
    try:
        if source.endswith(".parquet"):
            return pd.read_parquet(source)
        return pd.read_csv(source)
    except Exception as exc:
        raise ConfigError(f"input.source = {source!r}: cannot read manifest ({exc})") from None


def _from_manifest(source: str, known_keys: dict[str, str] | None) -> list[VideoInput]:
    table = _read_manifest(source)
    if "video_uri" not in table.columns:
        raise ConfigError(f"input.source = {source!r}: manifest needs a video_uri column (has {list(table.columns)})")
    labels = table["video_label"].fillna("unknown").astype(str) if "video_label" in table.columns else pd.Series(["unknown"] * len(table))
    bad = sorted(set(labels) - set(VIDEO_LABELS))
    if bad:
        raise ConfigError(f"input.source = {source!r}: video_label values {bad} are not one of {list(VIDEO_LABELS)}")
    base = source.rsplit("/", 1)[0] if is_remote(source) else str(Path(source).parent)
    uris = []
    for uri in table["video_uri"].astype(str):
        # relative URIs in a manifest are relative to the manifest's folder
        uris.append(uri if is_remote(uri) or Path(local_path(uri)).is_absolute() else f"{base}/{uri}")
    meta_cols = [c for c in table.columns if c not in ("video_uri", "video_label", "video_stem")]
    metadata = table[meta_cols].astype(object).where(table[meta_cols].notna(), None).to_dict("records")
    return [VideoInput(u, k, l, m) for u, k, l, m in zip(uris, assign_keys(uris, known_keys), labels, metadata)]


def _listed_file(path: Path) -> bool:
    """A file to mine: a regular file, or a link to nowhere (kept so that it ends as an error row
    naming it, not silently missing from the count)."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def list_inputs(source: str, extensions: list[str], limit: int | None = None,
                known_keys: dict[str, str] | None = None) -> list[VideoInput]:
    """Resolve `source` to a sorted list of inputs; raise ConfigError naming it if it matches nothing."""
    extensions = [e.lower() for e in extensions]
    if source.lower().endswith(MANIFEST_SUFFIXES):
        inputs = _from_manifest(source, known_keys)
    else:
        if is_remote(source):
            uris = _list_remote(source, extensions)
        elif any(ch in source for ch in "*?["):
            uris = sorted(p for p in glob.glob(source, recursive=True) if _listed_file(Path(p)))
        elif Path(local_path(source)).is_dir():
            uris = sorted(str(p) for p in Path(local_path(source)).rglob("*") if _listed_file(p) and p.suffix.lower() in extensions)
        elif Path(local_path(source)).is_file():
            uris = [local_path(source)]
        else:
            raise ConfigError(f"input.source = {source!r}: no such file, folder, pattern or manifest")
        inputs = [VideoInput(u, k) for u, k in zip(uris, assign_keys(uris, known_keys))]
    if not inputs:
        raise ConfigError(f"input.source = {source!r}: matched no videos (extensions {extensions})")
    return inputs[:limit] if limit else inputs
