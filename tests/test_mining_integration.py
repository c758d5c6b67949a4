"""The mining job on a local Ray (2 CPUs): real H.264 inputs, bad inputs, exactly-once outputs,
a killed scoring actor, an interrupted run resumed, reruns keyed on model content, the latest
attempt deciding, MLflow tracking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import descendants, kill_all, kill_first_titled

from engine.config import ConfigError, load_config
from engine.mining.config import MineConfig
from jobs import mine

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray")]


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory):
    """A seeded random-weight tiny YOLO saved as a .pt, as a user's checkpoint would be."""
    from engine.models.detector import build_detector

    path = tmp_path_factory.mktemp("models") / "random-tiny.pt"
    build_detector("quarry-yolo-tiny.yaml", ["cone", "barrel", "sign", "barrier"]).save(str(path))
    return path


@pytest.fixture(scope="module")
def manifest(tiny_world, bad_videos, tmp_path_factory):
    """The world's videos with their labels and metadata, plus every kind of bad input."""
    cfg, _ = tiny_world
    world = pd.read_parquet(Path(cfg.out_dir) / "videos.parquet")
    world["video_uri"] = [str(Path(cfg.out_dir) / u) for u in world.video_uri]
    extra = pd.DataFrame({"video_uri": [str(p) for p in bad_videos.values()] + ["/no/such/dir/missing.mp4"],
                          "video_label": "unknown"})
    path = tmp_path_factory.mktemp("manifest") / "inputs.csv"
    pd.concat([world, extra], ignore_index=True).to_csv(path, index=False)
    return path


def mine_config(manifest, detector, out_dir) -> MineConfig:
    return load_config(MineConfig, REPO / "configs" / "mine.yaml", [
        f"input.source={manifest}",
        f"output.out_dir={out_dir}",
        f"scoring.detector.source={detector}", "scoring.clip.checkpoint=null",
        "scoring.detector.conf_threshold=0.001",  # random weights: confidences are ~0.003
        "scoring.cue_conf=0.001",
        "scoring.max_actors=1",
        "decode.stride=2",
        "decode.chunk_frames=4",  # 20-frame videos -> 3 chunks each
        "gate.min_cue_kinds=1", "gate.min_frames=1", "gate.window_frames=2",
        "selection.band_low=0.0", "selection.band_high=1.0",
        "selection.quota_per_video=3", "selection.min_gap_frames=4",
        "ray.num_cpus=2",
    ])


@pytest.fixture(scope="module")
def first_run(manifest, random_detector, tmp_path_factory):
    out = tmp_path_factory.mktemp("mine-a")
    cfg = mine_config(manifest, random_detector, out)
    cfg.output.annotated_mp4 = True
    cfg.output.timeline_csv = True
    return cfg, mine.run(cfg)


@pytest.mark.reliability("bad input")
def test_every_input_is_processed_or_errored(first_run, bad_videos):
    cfg, summary = first_run
    io = summary["inputs"]
    assert io == {"total": 15, "processed": 10, "skipped_done": 0, "errored": 5}
    errors = pd.read_parquet(cfg.output.out_dir / "errors.parquet").set_index("video_path")["reason"]
    assert errors[str(bad_videos["empty"])] == "empty file (0 bytes)"
    assert errors["/no/such/dir/missing.mp4"] == "file not found"
    assert errors[str(bad_videos["text"])].startswith("cannot open as video")
    assert errors[str(bad_videos["truncated"])].startswith("cannot open as video")
    assert errors[str(bad_videos["corrupt"])].startswith("decode failed")
    assert not any(".cc:" in reason or "Check failed" in reason for reason in errors.tolist()), \
        "the user's words, not the decoder's C++ source"


@pytest.mark.reliability("security")
def test_outputs_are_complete_and_named_safely(first_run, bad_videos):
    cfg, summary = first_run
    out = Path(cfg.output.out_dir)
    candidates = pd.read_parquet(out / "candidates.parquet")
    assert len(candidates) == summary["candidates"]["candidates"] > 0
    assert not candidates.duplicated(["video_key", "frame"]).any()
    assert len(pd.read_csv(out / "candidates.csv")) == len(candidates)
    for row in candidates.itertuples():
        assert (out / row.snapshot_path).is_file()
        assert row.snapshot_path == f"candidates/{row.video_key}/{row.video_key}_f{row.frame}.jpg"
    keys = {p.stem for p in (out / "done").glob("*.json")}
    assert all(k.isascii() and ".." not in k and not k.startswith(".") and " " not in k for k in keys)
    assert any(k.startswith("clip_with_spaces-") for k in keys) and any(k.startswith("_hidden_clip-") for k in keys)
    world_rows = candidates[candidates.video_key.str.startswith("workzone")]
    assert world_rows.weather.notna().all(), "manifest metadata is carried to every row"
    assert set(candidates.video_label) <= {"tp", "fp", "clean", "unknown"}
    for column in ("video_path", "snapshot_path", "frame", "timestamp_s", "yolo_score", "fused_score", "semantic_state",
                   "gate_pass", "sustained_cues", "gate_confidence", "config_hash", "detector"):
        assert column in candidates.columns
    import hashlib

    digest = hashlib.sha256(Path(cfg.scoring.detector.source).read_bytes()).hexdigest()[:12]
    assert set(candidates.detector_sha256) == {digest} and set(candidates.quarry_version) == {"0.1.0"}
    timeline = pd.read_parquet(out / "timelines" / "workzone_0000.parquet")
    assert timeline.frame.tolist() == list(range(0, 20, 2))
    assert len(pd.read_csv(out / "timelines" / "workzone_0000.csv")) == len(timeline)
    from engine.video.decode import probe_video

    overlay = probe_video(str(out / "annotated" / "workzone_0000.mp4"))
    assert overlay.n_frames == len(timeline) and overlay.fps == pytest.approx(5.0)  # 10 fps at stride 2
    assert (candidates.groupby("video_key").size() <= 3).all(), "per-video quota"
    assert summary["reasons"]["selected"] == len(candidates)
    assert (out / "summary.md").read_text().startswith("# Mining run")


def test_run_is_tracked_in_mlflow(first_run):
    import mlflow

    cfg, summary = first_run
    client = mlflow.tracking.MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["candidates"] == summary["candidates"]["candidates"]
    assert run.data.params["selection.mode"] == "edge-cases"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "candidates.csv", "config.resolved.yaml"} <= artifacts


@pytest.mark.reliability("resume")
def test_rerun_skips_done_videos_and_gives_the_same_manifest(first_run):
    cfg, summary = first_run
    before = pd.read_parquet(cfg.output.out_dir / "candidates.parquet")
    again = mine.run(cfg)
    assert again["inputs"] == {"total": 15, "processed": 0, "skipped_done": 10, "errored": 5}
    assert again["frames_scored"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(cfg.output.out_dir / "candidates.parquet"), before)


def _comparable(candidates: pd.DataFrame) -> pd.DataFrame:
    return candidates.drop(columns=["snapshot_path"]).reset_index(drop=True)


class ScorerKiller(threading.Thread):
    """From the test's side: once `after_done` videos are committed, SIGKILL one live scoring
    actor process of this process's Ray (Ray titles it `ray::MapWorker(MapBatches(FrameScorer))...`),
    as a crashed GPU node would."""

    def __init__(self, done_dir: Path, after_done: int = 1):
        super().__init__(daemon=True)
        self.done_dir, self.after_done = done_dir, after_done
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set() and not self.killed:
            if len(list(self.done_dir.glob("*.json"))) >= self.after_done:
                killed = kill_first_titled(os.getpid(), "FrameScorer")  # this process's Ray's
                self.killed += [killed] if killed else []
            time.sleep(0.05)


@pytest.mark.reliability("fault")
def test_killed_scoring_actor_gives_the_same_candidates(first_run, manifest, random_detector, tmp_path):
    cfg, _ = first_run
    killed_cfg = mine_config(manifest, random_detector, tmp_path / "out")
    # two actors holding both CPUs: planning must still run (it once deadlocked here)
    killed_cfg.scoring.max_actors = killed_cfg.scoring.min_actors = 2
    killer = ScorerKiller(tmp_path / "out" / "done")
    killer.start()
    try:
        summary = mine.run(killed_cfg)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed, "a scoring actor was killed mid-run"
    assert summary["inputs"]["processed"] == 10 and summary["inputs"]["errored"] == 5
    expected = pd.read_parquet(cfg.output.out_dir / "candidates.parquet")
    got = pd.read_parquet(tmp_path / "out" / "candidates.parquet")
    pd.testing.assert_frame_equal(_comparable(got), _comparable(expected))


@pytest.mark.reliability("resume")
def test_interrupted_run_resumes_to_the_same_manifest(first_run, manifest, random_detector, tmp_path):
    cfg, _ = first_run
    out = tmp_path / "out"
    resumed_cfg = mine_config(manifest, random_detector, out)
    overrides = [f"{k}={v}" for k, v in [("input.source", manifest), ("output.out_dir", out)]]
    config_file = tmp_path / "mine.yaml"
    config_file.write_text(json.dumps(resumed_cfg.model_dump(mode="json")))
    import ray

    ray.shutdown()  # the module's shared Ray: the `ray stop` below would kill it under us
    proc = subprocess.Popen([sys.executable, "-m", "jobs.mine", "--config", str(config_file), *overrides, "-q"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(list((out / "done").glob("*.json"))) < 3:
        time.sleep(0.2)
    its_ray = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, mid-run
    proc.wait()
    done_before = len(list((out / "done").glob("*.json")))
    assert 0 < done_before < 10, "the run was interrupted part-way"
    kill_all(its_ray)  # the killed driver's local Ray may outlive it (`ray stop` would stop every Ray here)
    summary = mine.run(resumed_cfg)
    assert summary["inputs"] == {"total": 15, "processed": 10 - done_before, "skipped_done": done_before, "errored": 5}
    expected = pd.read_parquet(cfg.output.out_dir / "candidates.parquet")
    pd.testing.assert_frame_equal(_comparable(pd.read_parquet(out / "candidates.parquet")), _comparable(expected))


@pytest.mark.reliability("bad config")
def test_unloadable_detector_is_a_clear_error(manifest, tmp_path):
    from engine.models import ModelError

    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ModelError, match="cannot load detector weights .*garbage.pt"):
        mine.run(mine_config(manifest, garbage, tmp_path / "out"))
    with pytest.raises(ModelError, match="detector weights not found"):
        mine.run(mine_config(manifest, tmp_path / "missing.pt", tmp_path / "out"))


@pytest.mark.reliability("bad config")
def test_a_missing_clip_checkpoint_is_one_line_naming_its_key_before_any_work(manifest, random_detector, tmp_path, capfd):
    """It used to reach the scoring actors: Ray printed their traceback before Quarry's line."""
    from jobs.cli import run_job

    missing, out = tmp_path / "missing.pt", tmp_path / "out"
    code = run_job(mine, ["--config", str(REPO / "configs" / "mine.yaml"), f"input.source={manifest}",
                          f"output.out_dir={out}", f"scoring.detector.source={random_detector}",
                          f"scoring.clip.checkpoint={missing}"])
    err = capfd.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == f"quarry mine: scoring.clip.checkpoint = '{missing}': CLIP checkpoint not found"
    assert "Traceback" not in err and not out.exists()



@pytest.mark.reliability("bad config")
def test_a_scoring_actor_a_local_ray_cannot_hold_is_refused_not_waited_for(manifest, random_detector, tmp_path, capfd):
    """A GPU per actor on a CPU machine (as configs/cluster/ ask): Ray Data waited forever,
    printing "No available node types can fulfill resource request" every 35 s."""
    from jobs.cli import run_job

    code = run_job(mine, ["--config", str(REPO / "configs" / "mine.yaml"), f"input.source={manifest}",
                          f"output.out_dir={tmp_path / 'out'}", f"scoring.detector.source={random_detector}",
                          "scoring.clip.checkpoint=null", "scoring.num_cpus_per_actor=64", "ray.num_cpus=2"])
    err = capfd.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(
        "quarry mine: scoring.num_cpus_per_actor = 64 with scoring.num_gpus_per_actor = 0 (one actor) needs 64 CPUs at "
        "once, and this machine's local Ray has 2"), err[-2000:]


def test_decode_in_tasks_layout_gives_the_same_candidates(first_run, manifest, random_detector, tmp_path):
    cfg, _ = first_run
    tasks_cfg = mine_config(manifest, random_detector, tmp_path / "out")
    tasks_cfg.decode.layout = "tasks"
    summary = mine.run(tasks_cfg)
    assert summary["inputs"]["processed"] == 10 and summary["inputs"]["errored"] == 5
    expected = pd.read_parquet(cfg.output.out_dir / "candidates.parquet")
    got = pd.read_parquet(tmp_path / "out" / "candidates.parquet")
    same = ["video_key", "frame", "semantic_state", "gate_pass", "sustained_cues", "cue_count"]
    pd.testing.assert_frame_equal(got[same], expected[same])
    for column in ("yolo_score", "fused_score", "gate_confidence"):  # frames batch differently: float noise only
        assert np.allclose(got[column], expected[column], atol=1e-4)


@pytest.mark.reliability("resume")
def test_retrained_checkpoint_and_a_new_error_are_never_hidden_by_old_results(manifest, tmp_path):
    """Retrain base.pt in place: the rerun redoes every video. Then a config under which the
    videos fail: their errors replace the old candidates. Then back: they succeed again."""
    from engine.models.detector import build_detector

    weights = tmp_path / "base.pt"
    build_detector("quarry-yolo-tiny.yaml", ["cone", "barrel", "sign", "barrier"]).save(str(weights))
    out = tmp_path / "out"
    cfg = mine_config(manifest, weights, out)
    cfg.input.limit = 3  # the three first world videos (2 s each)
    first = mine.run(cfg)
    assert first["inputs"] == {"total": 3, "processed": 3, "skipped_done": 0, "errored": 0}
    before = pd.read_parquet(out / "candidates.parquet")
    assert len(before) > 0

    import torch
    from ultralytics import YOLO

    model = YOLO(str(weights))
    with torch.no_grad():  # "retrain" in place: same path, new weights
        for param in model.model.parameters():
            param.mul_(0.5)
    model.save(str(weights))
    second = mine.run(cfg)
    assert second["inputs"]["processed"] == 3 and second["inputs"]["skipped_done"] == 0
    after = pd.read_parquet(out / "candidates.parquet")
    assert set(after.detector_sha256) != set(before.detector_sha256)

    failing = cfg.model_copy(deep=True)
    failing.decode.start_s = 5.0  # past the end of these 2 s videos
    third = mine.run(failing)
    assert third["inputs"] == {"total": 3, "processed": 0, "skipped_done": 0, "errored": 3}
    assert len(pd.read_parquet(out / "candidates.parquet")) == 0
    errors = pd.read_parquet(out / "errors.parquet")
    assert len(errors) == 3 and errors.reason.str.startswith("no frames in [5.0").all()
    assert not list((out / "done").glob("*.json")) and not any((out / "candidates").iterdir())
    fourth = mine.run(cfg)
    assert fourth["inputs"]["processed"] == 3 and len(pd.read_parquet(out / "errors.parquet")) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "candidates.parquet"), after)


@pytest.mark.reliability("bad config")
def test_cue_classes_that_cannot_gate_are_config_errors_before_any_work(manifest, random_detector, tmp_path):
    cfg = mine_config(manifest, random_detector, tmp_path / "out")
    cfg.gate.min_cue_kinds = 5
    with pytest.raises(ConfigError, match=r"gate.min_cue_kinds = 5: more than the 4 cue classes"):
        mine.run(cfg)
    cfg.gate.min_cue_kinds = 1
    cfg.scoring.cue_classes = ["cone", "truck"]
    with pytest.raises(ConfigError, match=r"\['truck'\] are not classes of the detector"):
        mine.run(cfg)
    assert not (tmp_path / "out").exists(), "nothing was written"


def test_a_new_input_sharing_a_stem_keeps_the_old_keys(tiny_world, tmp_path):
    from engine.mining.run import mining_inputs

    cfg, _ = tiny_world
    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    day1.mkdir()
    day2.mkdir()
    video = (Path(cfg.out_dir) / "videos" / "clean_0000.mp4").read_bytes()
    (day1 / "cam.mp4").write_bytes(video)
    config = load_config(MineConfig, None, [f"input.source={tmp_path}", f"output.out_dir={tmp_path / 'out'}"])
    assert [v.key for v in mining_inputs(config)] == ["cam"]
    (day2 / "cam.mp4").write_bytes(video)
    keys = {v.uri: v.key for v in mining_inputs(config)}
    assert keys[str(day1 / "cam.mp4")] == "cam" and keys[str(day2 / "cam.mp4")].startswith("cam-")
    fresh = load_config(MineConfig, None, [f"input.source={tmp_path}", f"output.out_dir={tmp_path / 'other'}"])
    assert all(k.startswith("cam-") for k in (v.key for v in mining_inputs(fresh))), "a new out_dir: both hashed"
