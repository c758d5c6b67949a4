"""Shared fixtures. Everything a test writes goes under pytest's tmp_path."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

# OpenCV must load before decord: decord's bundled zlib otherwise breaks cv2's PNG codec
# ("libpng error: bad parameters to zlib"). engine.video does the same.
import cv2  # noqa: F401
import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's package (make test installs it)

# The reliability suite: tests marked `@pytest.mark.reliability(kind)` are its cases; the
# counts by kind are printed at the end of every run.
RELIABILITY_KINDS = ("bad input", "bad config", "fault", "resume", "refusal", "security")
_reliability: dict[tuple[str, str], tuple[str, str]] = {}  # (test id, kind) -> (kind, outcome)


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability(kind): a case of the reliability suite, counted at the end")


# `make test` runs the suite on two xdist workers (`-n 2 --dist loadfile`): each module is one
# unit of work, kept on one worker with its module fixtures, and units are handed out in the
# order below. The tiny demo runs once per run, started by test_demo.py on one worker; the other
# worker takes the modules that do not need it meanwhile, then the ones that do (waiting on the
# demo's lock if it is still running). A worker is handed its next module while its current one
# has two tests left, so the demo's modules go longest first (measured: ~90-150 s each) and the
# short ones last; test_ray_job_submit.py leads them, its first tests needing no demo.
DEMO_FIXTURES = {"tiny_demo", "tiny_dataset"}
HANDOUT_ORDER = ("test_demo.py", "test_mining_integration.py", "test_ray_job_submit.py", "test_object_store.py",
                 "test_train_job.py", "test_tune_faults.py", "test_label_job.py", "test_promote_tune.py",
                 "test_build_job.py", "test_review.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        kinds = [m.args[0] if len(m.args) == 1 else None for m in item.iter_markers("reliability")]
        for kind in kinds:
            if kind not in RELIABILITY_KINDS:
                raise pytest.UsageError(f"{item.nodeid}: reliability(kind) takes one of {RELIABILITY_KINDS}")
        item.user_properties += [("reliability", kind) for kind in sorted(set(kinds))]
    items[:] = _demo_first_then_modules_without_it(items)


def _demo_first_then_modules_without_it(items: list) -> list:
    """test_demo.py first (it starts the tiny demo), then the modules that do not need the demo,
    then the ones that do; in HANDOUT_ORDER, then pytest's; pytest's order within a module."""
    modules: dict = {}
    for item in items:
        modules.setdefault(item.path.name, []).append(item)

    def rank(name: str) -> tuple:
        needs = any(DEMO_FIXTURES & set(i.fixturenames) for i in modules[name])
        return (name != "test_demo.py", needs, HANDOUT_ORDER.index(name) if name in HANDOUT_ORDER else len(HANDOUT_ORDER))

    return [item for name in sorted(modules, key=rank) for item in modules[name]]


def pytest_runtest_logreport(report):
    """Counted where the reports arrive: the controller under xdist, the one process otherwise.
    A test with two markers (a killed trial, then a resumed search) is a case of each kind."""
    for kind in {value for name, value in report.user_properties if name == "reliability"}:
        if report.when == "call" or report.failed or report.skipped:
            if report.when == "call" or (report.nodeid, kind) not in _reliability:  # a failed set-up counts as failed
                _reliability[(report.nodeid, kind)] = (kind, report.outcome)


def pytest_terminal_summary(terminalreporter):
    if not _reliability:
        return
    write = terminalreporter.write_line
    outcomes = list(_reliability.values())
    passed = sum(outcome == "passed" for _, outcome in outcomes)
    terminalreporter.section("reliability suite")
    write(f"{len(outcomes)} cases tried, {passed} passed, {len(outcomes) - passed} not passed")
    for kind in RELIABILITY_KINDS:
        cases = [outcome for k, outcome in outcomes if k == kind]
        if cases:
            write(f"  {kind:<11} {len(cases):>3} tried, {cases.count('passed'):>3} passed")


def free_port() -> int:
    """A loopback port free now (a Ray head binds it a moment later)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list:
    """The processes a process started, its local Ray's among them (and no other Ray's: under
    xdist another worker's Ray runs beside it)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_first_titled(pid: int, title: str) -> int | None:
    """SIGKILL the first process `pid` started whose command line holds `title` (Ray titles its
    workers `ray::<class>...`); its pid, or None while there is none. A process that ends while
    it is looked at is passed over."""
    import psutil

    for proc in descendants(pid):
        try:
            if title in " ".join(proc.cmdline()):
                proc.kill()
                return proc.pid
        except psutil.NoSuchProcess:
            pass
    return None


def kill_all(processes: list) -> None:
    import psutil

    for proc in processes:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@contextmanager
def chromium_page(url: str):
    """A loaded page in headless Chromium and the list its JavaScript errors land in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_load_state("load")
        try:
            yield page, errors
        finally:
            browser.close()


@pytest.fixture(autouse=True, scope="session")
def _offline_env(tmp_path_factory):
    """Tests run with the engine's offline switches and a private Ultralytics config dir."""
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo-config"))
    from engine.offline import enable_offline

    enable_offline()
    yield


@pytest.fixture(scope="module")
def one_ray():
    """One local Ray for every job a test module runs, as `quarry demo` keeps one for its steps
    (each job starting its own cost a start-up and cold workers)."""
    from engine.raycluster import one_ray_for_all

    with one_ray_for_all():
        yield


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small synthetic world shared by tests that only read it."""
    from engine.synth.config import SynthConfig
    from engine.synth.world import generate_world

    cfg = SynthConfig.model_validate({
        "out_dir": str(tmp_path_factory.mktemp("world")),
        "seed": 7,
        "videos": {"n_workzone": 2, "n_lookalike": 4, "n_clean": 1, "duration_s": 2.0, "fps": 10},
        "heldout_videos": {"n_workzone": 1, "n_lookalike": 1, "n_clean": 0},
        "detection": {"n_train": 12, "n_val": 4, "n_heldout_workzone": 6, "n_heldout_lookalike": 8},
        "segmentation": {"n_authentic": 8, "n_forged": 6, "size_px": 64, "dark_fraction": 0.5, "n_heldout_authentic": 4,
                         "n_heldout_forged": 3},
        "captions": {"n_images": 12},
    })
    summary = generate_world(cfg)
    return cfg, summary


@pytest.fixture(scope="session")
def bad_videos(tiny_world, tmp_path_factory):
    """Broken inputs next to a good one: corrupt bytes, truncation, 0 bytes, text, odd names."""
    import numpy as np

    cfg, _ = tiny_world
    good = (Path(cfg.out_dir) / "videos" / "workzone_0000.mp4").read_bytes()
    folder = tmp_path_factory.mktemp("bad videos")
    corrupt = bytearray(good)
    n = len(corrupt)
    corrupt[n // 4 : n // 2] = np.random.default_rng(0).integers(0, 255, n // 2 - n // 4, dtype=np.uint8).tobytes()
    files = {
        "corrupt": ("corrupt.mp4", bytes(corrupt)),
        "truncated": ("truncated.mp4", good[: n // 2]),
        "empty": ("empty.mp4", b""),
        "text": ("notes.mp4", b"this is a text file, not a video\n"),
        "spaces": ("clip with spaces.mp4", good),
        "unicode": ("vid\u00e9o \u6f22\u5b57.mp4", good),
        "dots": ("..hidden..clip.mp4", good),
    }
    paths = {}
    for name, (filename, data) in files.items():
        paths[name] = folder / filename
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="session")
def listed_but_undecodable_video(tiny_world, tmp_path_factory):
    """An MP4 whose header (moov first) lists every frame but whose media data is cut at 60 %:
    it opens and probes with its full frame count, and its later frames decode to nothing."""
    import av

    cfg, _ = tiny_world
    folder = tmp_path_factory.mktemp("cut")
    faststart = folder / "faststart.mp4"
    with av.open(str(Path(cfg.out_dir) / "videos" / "workzone_0000.mp4")) as src, \
            av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = faststart.read_bytes()
    path = folder / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


TINY_DEMO_OVERRIDES = [
    "videos.n_workzone=2", "videos.n_lookalike=4", "videos.n_clean=1", "videos.duration_s=3",
    "heldout_videos.n_workzone=2", "heldout_videos.n_lookalike=2", "heldout_videos.n_clean=1",
    "detection.n_train=240", "detection.n_val=32", "detection.n_heldout_workzone=32", "detection.n_heldout_lookalike=32",
    "segmentation.n_authentic=8", "segmentation.n_forged=8", "segmentation.n_heldout_authentic=8",
    "segmentation.n_heldout_forged=8", "captions.n_images=96", "clip.epochs=2",
    # a base detector in ~40 s on 2 cores that fires on lookalikes (8 epochs at 0.004 learned nothing)
    "base_model.epochs=12", "base_model.lr0=0.01",
    "train.detect.epochs=2", "train.detect.samples_per_epoch=64", "train.detect.batch=8",
    "tune.num_samples=2", "tune.train.detect.epochs=1", "tune.train.detect.samples_per_epoch=64", "tune.train.detect.batch=8",
    "segmenter.epochs=2", "segmenter.imgsz=64", "segment_train.epochs=1", "segment_train.batch=4", "scan.min_area_px=4",
    "rounds=2", "task=all",
]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, worker_id):
    """`quarry demo` at a tiny size, run once: its world, trained base detector and mining
    outputs serve every test that needs a detector that really fires. Under xdist the first
    worker to ask runs it (the others wait on a lock) and leaves its result for them."""
    import pickle

    from filelock import FileLock

    from engine.config import load_config
    from jobs import demo

    # QUARRY_TINY_DEMO_DIR: a developer's lasting work dir; the demo reuses each step whose config is unchanged
    shared = tmp_path_factory.getbasetemp().parent if worker_id != "master" else tmp_path_factory.mktemp("shared")
    work = os.environ.get("QUARRY_TINY_DEMO_DIR") or shared / "tiny-demo"
    config = load_config(demo.DemoConfig, None, [f"work_dir={work}", *TINY_DEMO_OVERRIDES])
    done = shared / "tiny-demo.pickle"
    with FileLock(str(shared / "tiny-demo.lock")):
        if not done.is_file():
            done.write_bytes(pickle.dumps(demo.run(config)))
        return config, pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def tiny_dataset(tiny_demo):
    """The tiny demo's built detection set (base data, labelled frames, accepted hard negatives)."""
    config, result = tiny_demo
    return Path(result["steps"]["build"]["out_dir"]), Path(config.work_dir)
