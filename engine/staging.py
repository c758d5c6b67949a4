"""Object-store URIs (`s3://`, `gs://`, ...) for jobs whose code reads and writes local files.

A job names the config keys that hold its inputs and its output folders (`remote_keys`). Before
the config is validated, each remote URI among them is replaced by its place in a local mirror
of the store (`<mirror root>/<scheme>/<bucket>/<key>`); before the job runs, the mirror is
brought up to date (only objects whose size or time changed are downloaded); after it ends,
failed or not, every file the job wrote or changed in an output folder is uploaded (one PUT per
file, so a reader never sees half a file) and files it removed are deleted from the store.

Because the mirror's place is a function of the URI alone, a path one job writes into a table
(`labels.parquet` naming its frames) is the same path the next job's mirror holds, so the jobs
chain through the store as they do through a local folder, and a rerun resumes from what the
store already holds. On a cluster the driver's node holds the mirror; a worker on another node
(a Ray Train worker, a scoring or labelling actor) brings the inputs it reads into the same
place on its own node first (`pull_on_this_node`); checkpoints and Tune's experiment go to the
store itself (the driver brings them into its mirror afterwards: `refresh_from_store`), and the
driver writes every other output. Mining reads its videos from the store itself, one per task.

Credentials come from the store's usual environment variables or files (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ~/.aws/...); a URI holding them is refused, so they
never reach a resolved config, a log or MLflow.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from engine.config import ConfigError
from engine.storage import atomic_path, atomic_write_json, is_remote

log = logging.getLogger("quarry.storage")

MIRROR_ENV = "QUARRY_STORE_MIRROR"
TABLE_SUFFIXES = (".parquet", ".csv", ".yaml", ".yml", ".json")  # their rows name files beside them
# an output key naming one of these files (a table the job writes beside or appends to): its folder is the output
FILE_SUFFIXES = (*TABLE_SUFFIXES, ".jsonl")
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


def ray_storage_path(folder: Path) -> str:
    """Where Ray Train or Tune writes under `folder`: its store URI when it is a mirror of the
    store (so workers on any node write there), else the local path."""
    folder = Path(folder).resolve()
    return store_uri(folder) or str(folder)


def redact(uri: str) -> str:
    parts = urlsplit(uri)
    return uri.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1]) if "@" in parts.netloc else uri


def _dotted_values(data: Any, path: list[str], prefix: str = "") -> list[tuple[str, list[str], Any]]:
    """(shown key, concrete path, value) for a dotted key in which `*` walks every list item."""
    if not path:
        return [(prefix, [], data)]
    head, rest = path[0], path[1:]
    if head == "*":  # every item of a list, every value of a mapping
        items = enumerate(data) if isinstance(data, list) else data.items() if isinstance(data, dict) else []
        found = []
        for i, item in items:
            found += [(k, [i, *p], v) for k, p, v in _dotted_values(item, rest, f"{prefix}[{i!r}]")]
        return found
    if not isinstance(data, dict) or head not in data:
        return []
    key = f"{prefix}.{head}" if prefix else head
    return [(k, [head, *p], v) for k, p, v in _dotted_values(data[head], rest, key)]


def _set(data: Any, path: list, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


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


class Staging:
    """The remote URIs of one job run; `localise` the config data, then `with staging:` run it.

    `remote_keys(data)` gives the dotted keys of the job's inputs and of its output folders (`*`
    walks a list's items or a mapping's values; an output key naming a file, e.g. a table the job
    appends to, makes the file's folder the output); a job without it reads and writes local paths."""

    def __init__(self, remote_keys: Callable[[dict], tuple[list[str], list[str]]] | None = None):
        self.remote_keys = remote_keys or (lambda data: ([], []))
        self.transfers: list[Transfer] = []

    def localise(self, data: dict) -> dict:
        """Replace each remote URI under the job's keys by its mirror path (no I/O)."""
        inputs, outputs = self.remote_keys(data)
        found = [(shown, path, value, output) for keys, output in ((inputs, False), (outputs, True)) for dotted in keys
                 for shown, path, value in _dotted_values(data, dotted.split("."))
                 if isinstance(value, str) and is_remote(value)]  # all before any is replaced: a key may be both
        for shown, path, value, output in found:
            uri = value.rstrip("/")
            beside = output and uri.lower().endswith(FILE_SUFFIXES)  # a file: its folder is the output
            self.transfers.append(Transfer(shown, uri.rsplit("/", 1)[0] if beside else uri, output, path, given=uri))
            _set(data, path, str(mirror_path(uri)))
        return data

    def as_given(self, data: dict) -> dict:
        """Config data (a dumped config) with each mirror path put back to the URI the user gave."""
        for t in self.transfers:
            _set(data, t.at, t.given)
        return data

    def stored(self) -> list[str]:
        """One line per output folder kept in the store (the summary above names its mirror)."""
        return [f"stored: {t.key} -> {t.uri} (mirror {t.local})" for t in self.transfers if t.output]

    def __enter__(self) -> "Staging":
        outputs = {t.uri for t in self.transfers if t.output}
        for t in self.transfers:
            if not t.output and t.uri.lower().endswith(TABLE_SUFFIXES) and t.uri.rsplit("/", 1)[0] in outputs:
                _must_exist(t)  # a table read and written beside: the output's pull brings its folder
            else:
                _pull(t)
        _open_outputs[:] = [t for t in self.transfers if t.output]
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Upload the outputs, also after a failure (a rerun resumes from them); a failed upload
        after a failed job is logged, so the job's own error is the one the user sees."""
        for t in self.transfers:
            if t.output:
                try:
                    atomic_write_json(t.local / "storage.json", {"key": t.key, "uri": t.uri, "mirror": str(t.local)})
                    _push_folder(t)
                except ConfigError as push_error:
                    if exc_type is None:
                        raise
                    log.error("%s", push_error)
        _open_outputs.clear()


_open_outputs: list[Transfer] = []  # the output folders of the job this process runs (between pull and push)


def _output_part(folder: Path) -> tuple[Transfer, Transfer] | None:
    """The open output that holds `folder`, and a transfer of just that part of it (with what of
    it the mirror holds from the store)."""
    for t in _open_outputs:
        try:
            rel = Path(folder).resolve().relative_to(t.local.resolve()).as_posix()
        except ValueError:
            continue
        prefix = "" if rel == "." else rel + "/"
        pulled = {k[len(prefix):]: v for k, v in t.pulled.items() if k.startswith(prefix)}
        return t, Transfer(t.key, t.uri if rel == "." else f"{t.uri}/{rel}", True, local=t.local / rel, pulled=pulled)
    return None


def _count_as_pulled(t: Transfer, part: Transfer) -> None:
    place = part.local.relative_to(t.local).as_posix()
    prefix = "" if place == "." else place + "/"
    t.pulled = {rel: v for rel, v in t.pulled.items() if not rel.startswith(prefix)}
    t.pulled.update({prefix + rel: v for rel, v in part.pulled.items()})


def refresh_from_store(folder: Path) -> None:
    """After Ray wrote under `folder` straight to the store (Tune's experiment, Train's
    checkpoints, from any node): bring that part of the output mirror up to date, counted as
    pulled, so the job's end neither uploads it again nor deletes it. A local folder: nothing."""
    found = _output_part(folder)
    if found:
        t, part = found
        _pull(part)
        _count_as_pulled(t, part)


def publish_now(path: Path) -> None:
    """Upload a file or folder the driver wrote in an output mirror now, not when the job ends:
    a model the registry downloaded into the output folder (workers on any node read it from the
    store), a reviewer's answer (a crash must not lose it: the next run's pull would replace
    the mirror's copy with the store's). Counted as pulled, so the job's end does not upload it
    again. A local path: nothing."""
    path = Path(path)
    found = _output_part(path)
    if not found or not path.exists():
        return
    t, part = found
    if path.is_dir():
        _push_folder(part)
        _count_as_pulled(t, part)
        return
    fs, remote, _ = _open(part)
    try:
        _upload(fs, path, remote)
    except Exception as exc:
        raise ConfigError(f"{t.key} = {t.uri!r}: uploading {path.name} failed ({_first_line(exc)})") from None
    t.pulled[part.local.relative_to(t.local).as_posix()] = _stat(path)


def empty_folder(folder: Path) -> None:
    """Remove `folder`'s contents: on the local disk, and in the store when it is part of an
    output mirror (before Ray writes there afresh)."""
    found = _output_part(folder)
    if found:
        t, part = found
        fs, root, _ = _open(part)
        try:
            fs.delete_dir_contents(root, missing_dir_ok=True)
        except Exception as exc:
            raise ConfigError(f"{t.key} = {t.uri!r}: cannot delete {part.uri} ({_first_line(exc)})") from None
        part.pulled = {}
        _count_as_pulled(t, part)
    shutil.rmtree(folder, ignore_errors=True)


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
        _pull_file(fs, remote, info, mirror_path(path))
        return str(mirror_path(path))

    if not any(is_remote(p) for p in paths):
        return list(paths)
    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        return list(pool.map(local, paths))


def pull_on_this_node(inputs: dict[str, Any], outputs: dict[str, Any] | None = None) -> None:
    """On a Ray worker, before it reads its inputs: bring each of `inputs` (config key -> path)
    that the driver mirrored from the store (a path under the mirror root, which a cluster's
    workers get from the driver) to the same path on this node. A node other than the driver's
    holds none of them; on the driver's node the mirror is current and only listed. `outputs`
    are folders the worker continues (a Tune trial's checkpoints), which may not exist yet.
    Paths outside the mirror are left alone. Workers on one node take turns (a lock file in the
    mirror), so each object comes once."""
    root = mirror_root()
    transfers = [Transfer(key, uri, output, local=Path(path))
                 for paths, output in ((inputs, False), (outputs or {}, True)) for key, path in paths.items()
                 if path is not None and (uri := store_uri(path, root))]
    if not transfers:
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".pull.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        for t in transfers:
            _pull(t)


def _pull(t: Transfer) -> None:
    """Bring one transfer's mirror up to date: an output folder (may be new), an input folder, a
    table with the folder its rows point into, or one object."""
    fs, root, info = _open(t)
    if t.output:
        bucket = root.split("/", 1)[0]
        if info.type.name == "NotFound" and fs.get_file_info(bucket).type.name == "NotFound":
            raise ConfigError(f"{t.key} = {t.uri!r}: the store has no bucket {bucket!r}")
        _pull_folder(fs, root, t, missing_ok=True)
    elif info.type.name == "Directory":
        _pull_folder(fs, root, t, missing_ok=False)
    elif info.type.name == "File" and t.uri.lower().endswith(TABLE_SUFFIXES):
        parent = root.rsplit("/", 1)[0]  # a table brings the folder its rows point into
        _pull_folder(fs, parent, Transfer(t.key, t.uri.rsplit("/", 1)[0], False, local=t.local.parent), missing_ok=False)
    elif info.type.name == "File":
        _pull_file(fs, root, info, t.local)
    else:
        raise ConfigError(f"{t.key} = {t.uri!r}: no such object or prefix in the store")


def _must_exist(t: Transfer) -> None:
    if _open(t)[2].type.name != "File":
        raise ConfigError(f"{t.key} = {t.uri!r}: no such object or prefix in the store")


def _open(t: Transfer):
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(t.uri)
        return fs, root, fs.get_file_info(root)
    except Exception as exc:  # unknown scheme, no credentials, unreachable endpoint
        raise ConfigError(f"{t.key} = {t.uri!r}: cannot reach the store ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _pull_file(fs, remote: str, info, local: Path) -> None:
    """Download one object unless the mirror already holds it (same size and time)."""
    remote_mtime = info.mtime_ns or 0
    if local.is_file() and _stat(local) == (info.size, remote_mtime):
        return
    with atomic_path(local) as tmp:
        with fs.open_input_stream(remote) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    os.utime(local, ns=(remote_mtime, remote_mtime))


def _pull_folder(fs, root: str, t: Transfer, missing_ok: bool) -> None:
    """Make the mirror of a prefix match the store: download what changed, drop what is gone."""
    import pyarrow.fs as pafs

    try:
        infos = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=missing_ok))
                 if i.type == pafs.FileType.File]
    except Exception as exc:
        raise ConfigError(f"{t.key} = {t.uri!r}: cannot list the store ({_first_line(exc)})") from None
    if not infos and not missing_ok:
        raise ConfigError(f"{t.key} = {t.uri!r}: no such object or prefix in the store")
    remote = {i.path[len(root):].lstrip("/"): i for i in infos}
    if t.local.is_dir():
        for path in [p for p in t.local.rglob("*") if p.is_file() or p.is_symlink()]:
            if path.relative_to(t.local).as_posix() not in remote:
                path.unlink()
    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(lambda item: _pull_file(fs, item[1].path, item[1], t.local / item[0]), remote.items()))
    t.pulled = {rel: _stat(t.local / rel) for rel in remote}
    if remote:
        log.info("%s: %d files from %s in the mirror %s", t.key, len(remote), t.uri, t.local)


def _upload(fs, path: Path, remote: str) -> None:
    """One PUT; the mirror's copy then has the store's time, so the next pull keeps it."""
    with open(path, "rb") as src, fs.open_output_stream(remote) as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    mtime = fs.get_file_info(remote).mtime_ns or 0
    target = path.resolve()  # a link (build's images) keeps its target's times
    if target == path.absolute():
        os.utime(target, ns=(mtime, mtime))


def _push_folder(t: Transfer) -> None:
    """Upload what the job wrote or changed under an output mirror; delete what it removed."""
    fs, root, _ = _open(t)
    local = {p.relative_to(t.local).as_posix(): p for p in sorted(t.local.rglob("*"))
             if p.is_file() and not p.name.startswith(".")} if t.local.is_dir() else {}
    changed = [rel for rel, p in local.items() if t.pulled.get(rel) != _stat(p)]
    # hidden files (a write in progress, Ray's storage markers) are neither uploaded nor deleted
    gone = [rel for rel in t.pulled if rel not in local and not rel.rsplit("/", 1)[-1].startswith(".")]

    try:
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(lambda rel: _upload(fs, local[rel], f"{root}/{rel}"), changed))
        for rel in gone:
            fs.delete_file(f"{root}/{rel}")
    except Exception as exc:
        raise ConfigError(f"{t.key} = {t.uri!r}: uploading the outputs failed ({_first_line(exc)}); "
                          f"they are kept in {t.local}; a rerun starts from what the store holds") from None
    t.pulled = {rel: _stat(p) for rel, p in local.items()}  # the store now holds what the mirror does
    log.info("%s: %d files uploaded to %s, %d deleted", t.key, len(changed), t.uri, len(gone))
