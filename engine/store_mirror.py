"""The local mirror of an object store, and the transfers that keep it current.

A store URI `scheme://bucket/key` has one place in the mirror, `<root>/<scheme>/<bucket>/<key>`
(`mirror_path`; `store_uri` is its inverse), so every job and every node finds an object at the
same path. A `Transfer` is one URI and its mirror: `pull` brings the mirror up to date (only
objects whose size or time changed are downloaded, what the store no longer holds is dropped),
`push_folder` uploads what a job wrote or changed and deletes what it removed. Which URIs a job
transfers, and when, is engine/staging.py's part.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from engine.config import ConfigError
from engine.storage import atomic_path, is_remote

log = logging.getLogger("quarry.storage")

MIRROR_ENV = "QUARRY_STORE_MIRROR"
TABLE_SUFFIXES = (".parquet", ".csv", ".yaml", ".yml", ".json")  # their rows name files beside them
TRANSFER_THREADS = 8


def mirror_root() -> Path:
    """Where object-store URIs are mirrored: $QUARRY_STORE_MIRROR, else ~/.cache/quarry/store."""
    return Path(os.environ.get(MIRROR_ENV) or Path.home() / ".cache" / "quarry" / "store")


def mirror_path(uri: str) -> Path:
    """The local place of `uri` in the mirror: <root>/<scheme>/<bucket>/<key>."""
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        raise ConfigError(f"{redact(uri)}: credentials do not belong in a URI; set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (or the store's own variables) instead")
    key = [p for p in parts.path.split("/") if p]
    if not parts.netloc or ".." in key:
        raise ConfigError(f"{uri}: expected scheme://bucket/key")
    return mirror_root().joinpath(parts.scheme, parts.netloc, *key)


def store_uri(path: Path | str, root: Path | str | None = None) -> str | None:
    """The store URI whose mirror `path` is (the inverse of `mirror_path`); None for a path
    outside the mirror `root` (default: this process's)."""
    try:
        parts = Path(path).resolve().relative_to(Path(root or mirror_root()).resolve()).parts
    except ValueError:
        return None
    return f"{parts[0]}://{'/'.join(parts[1:])}" if len(parts) >= 2 else None


def redact(uri: str) -> str:
    parts = urlsplit(uri)
    return uri.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1]) if "@" in parts.netloc else uri


@dataclass
class Transfer:
    """One remote URI and its mirror: an input (pulled) or an output folder (pulled and pushed)."""

    key: str
    uri: str
    output: bool
    at: list = field(default_factory=list)  # the value's place in the config data (keys and list indices)
    given: str = ""  # the URI the user gave (`localise`; `as_given` puts it back)
    local: Path | None = None  # its mirror (default: this process's mirror of `uri`)
    pulled: dict[str, tuple[int, int]] = field(default_factory=dict)  # relative path -> (size, mtime_ns)

    def __post_init__(self) -> None:
        self.local = Path(self.local) if self.local is not None else mirror_path(self.uri)


def mirror_objects(paths: list[str]) -> list[str]:
    """Each store URI among `paths` replaced by its mirror path, downloaded when missing or changed
    (a table naming objects elsewhere in the store); local paths, and objects the store does not
    hold, are returned as given, so the caller reports them missing by their own name."""
    import pyarrow.fs as pafs

    def local(path: str) -> str:
        if not is_remote(path):
            return path
        fs, remote = pafs.FileSystem.from_uri(path)
        info = fs.get_file_info(remote)
        if info.type != pafs.FileType.File:
            return path
        pull_file(fs, remote, info, mirror_path(path))
        return str(mirror_path(path))

    if not any(is_remote(p) for p in paths):
        return list(paths)
    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        return list(pool.map(local, paths))


def pull(t: Transfer) -> None:
    """Bring one transfer's mirror up to date: an output folder (may be new), an input folder, a
    table with the folder its rows point into, or one object."""
    fs, root, info = open_store(t)
    if t.output:
        bucket = root.split("/", 1)[0]
        if info.type.name == "NotFound" and fs.get_file_info(bucket).type.name == "NotFound":
            raise ConfigError(f"{t.key} = {t.uri!r}: the store has no bucket {bucket!r}")
        pull_folder(fs, root, t, missing_ok=True)
    elif info.type.name == "Directory":
        pull_folder(fs, root, t, missing_ok=False)
    elif info.type.name == "File" and t.uri.lower().endswith(TABLE_SUFFIXES):
        parent = root.rsplit("/", 1)[0]  # a table brings the folder its rows point into
        pull_folder(fs, parent, Transfer(t.key, t.uri.rsplit("/", 1)[0], False, local=t.local.parent), missing_ok=False)
    elif info.type.name == "File":
        pull_file(fs, root, info, t.local)
    else:
        raise ConfigError(f"{t.key} = {t.uri!r}: no such object or prefix in the store")


def must_exist(t: Transfer) -> None:
    if open_store(t)[2].type.name != "File":
        raise ConfigError(f"{t.key} = {t.uri!r}: no such object or prefix in the store")


def open_store(t: Transfer):
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(t.uri)
        return fs, root, fs.get_file_info(root)
    except Exception as exc:  # unknown scheme, no credentials, unreachable endpoint
        raise ConfigError(f"{t.key} = {t.uri!r}: cannot reach the store ({first_line(exc)})") from None


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def file_stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def pull_file(fs, remote: str, info, local: Path) -> None:
    """Download one object unless the mirror already holds it (same size and time)."""
    remote_mtime = info.mtime_ns or 0
    if local.is_file() and file_stat(local) == (info.size, remote_mtime):
        return
    with atomic_path(local) as tmp:
        with fs.open_input_stream(remote) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    os.utime(local, ns=(remote_mtime, remote_mtime))


def pull_folder(fs, root: str, t: Transfer, missing_ok: bool) -> None:
    """Make the mirror of a prefix match the store: download what changed, drop what is gone."""
    import pyarrow.fs as pafs

    try:
        infos = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=missing_ok))
                 if i.type == pafs.FileType.File]
    except Exception as exc:
        raise ConfigError(f"{t.key} = {t.uri!r}: cannot list the store ({first_line(exc)})") from None
    if not infos and not missing_ok:
        raise ConfigError(f"{t.key} = {t.uri!r}: no such object or prefix in the store")
    remote = {i.path[len(root):].lstrip("/"): i for i in infos}
    if t.local.is_dir():
        for path in [p for p in t.local.rglob("*") if p.is_file() or p.is_symlink()]:
            if path.relative_to(t.local).as_posix() not in remote:
                path.unlink()
    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(lambda item: pull_file(fs, item[1].path, item[1], t.local / item[0]), remote.items()))
    t.pulled = {rel: file_stat(t.local / rel) for rel in remote}
    if remote:
        log.info("%s: %d files from %s in the mirror %s", t.key, len(remote), t.uri, t.local)


def upload(fs, path: Path, remote: str) -> None:
    """One PUT; the mirror's copy then has the store's time, so the next pull keeps it."""
    with open(path, "rb") as src, fs.open_output_stream(remote) as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    mtime = fs.get_file_info(remote).mtime_ns or 0
    target = path.resolve()  # a link (build's images) keeps its target's times
    if target == path.absolute():
        os.utime(target, ns=(mtime, mtime))


def push_folder(t: Transfer) -> None:
    """Upload what the job wrote or changed under an output mirror; delete what it removed."""
    fs, root, _ = open_store(t)
    local = {p.relative_to(t.local).as_posix(): p for p in sorted(t.local.rglob("*"))
             if p.is_file() and not p.name.startswith(".")} if t.local.is_dir() else {}
    changed = [rel for rel, p in local.items() if t.pulled.get(rel) != file_stat(p)]
    # hidden files (a write in progress, Ray's storage markers) are neither uploaded nor deleted
    gone = [rel for rel in t.pulled if rel not in local and not rel.rsplit("/", 1)[-1].startswith(".")]

    try:
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(lambda rel: upload(fs, local[rel], f"{root}/{rel}"), changed))
        for rel in gone:
            fs.delete_file(f"{root}/{rel}")
    except Exception as exc:
        raise ConfigError(f"{t.key} = {t.uri!r}: uploading the outputs failed ({first_line(exc)}); "
                          f"they are kept in {t.local}; a rerun starts from what the store holds") from None
    t.pulled = {rel: file_stat(p) for rel, p in local.items()}  # the store now holds what the mirror does
    log.info("%s: %d files uploaded to %s, %d deleted", t.key, len(changed), t.uri, len(gone))
