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
never reach a resolved config, a log or MLflow. The mirror itself and the transfers that keep it
current are engine/store_mirror.py's.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from engine.config import ConfigError
from engine.storage import atomic_write_json, is_remote
from engine.store_mirror import (
    TABLE_SUFFIXES,
    Transfer,
    file_stat,
    first_line,
    mirror_path,
    mirror_root,
    must_exist,
    open_store,
    pull,
    push_folder,
    store_uri,
    upload,
)

log = logging.getLogger("quarry.storage")

# an output key naming one of these files (a table the job writes beside or appends to): its folder is the output
FILE_SUFFIXES = (*TABLE_SUFFIXES, ".jsonl")


def ray_storage_path(folder: Path) -> str:
    """Where Ray Train or Tune writes under `folder`: its store URI when it is a mirror of the
    store (so workers on any node write there), else the local path."""
    folder = Path(folder).resolve()
    return store_uri(folder) or str(folder)


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
                must_exist(t)  # a table read and written beside: the output's pull brings its folder
            else:
                pull(t)
        _open_outputs[:] = [t for t in self.transfers if t.output]
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Upload the outputs, also after a failure (a rerun resumes from them); a failed upload
        after a failed job is logged, so the job's own error is the one the user sees."""
        for t in self.transfers:
            if t.output:
                try:
                    atomic_write_json(t.local / "storage.json", {"key": t.key, "uri": t.uri, "mirror": str(t.local)})
                    push_folder(t)
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
        pull(part)
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
        push_folder(part)
        _count_as_pulled(t, part)
        return
    fs, remote, _ = open_store(part)
    try:
        upload(fs, path, remote)
    except Exception as exc:
        raise ConfigError(f"{t.key} = {t.uri!r}: uploading {path.name} failed ({first_line(exc)})") from None
    t.pulled[part.local.relative_to(t.local).as_posix()] = file_stat(path)


def empty_folder(folder: Path) -> None:
    """Remove `folder`'s contents: on the local disk, and in the store when it is part of an
    output mirror (before Ray writes there afresh)."""
    found = _output_part(folder)
    if found:
        t, part = found
        fs, root, _ = open_store(part)
        try:
            fs.delete_dir_contents(root, missing_dir_ok=True)
        except Exception as exc:
            raise ConfigError(f"{t.key} = {t.uri!r}: cannot delete {part.uri} ({first_line(exc)})") from None
        part.pulled = {}
        _count_as_pulled(t, part)
    shutil.rmtree(folder, ignore_errors=True)


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
            pull(t)


