"""`ray job submit --working-dir .` to a head started with `ray start --head` on loopback, with
Ray's token authentication on, as docs/mining.md and docs/cluster.md give the commands: the
mining, training and tuning jobs, submitted as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import descendants, free_port, kill_all

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.slow


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A local head as docs/mining.md starts it: token auth on (the token generated once into
    ~/.ray/auth_token, here a private HOME), the venv first on its PATH so that a job's `python`
    is the venv's. Yields the client's environment, the dashboard URL and Ray's temp dir."""
    temp_dir = tempfile.mkdtemp(prefix="/tmp/qr")  # Ray's socket paths must stay short
    port, dash = free_port(), free_port()
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    try:
        token = subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, text=True, timeout=60)
        assert token.returncode == 0 and (home / ".ray" / "auth_token").is_file(), token.stderr
        # the job agent's own port: Ray's default (52365) is taken by any other Ray on the machine
        # first (the two-node tests', a job's local one), and then the agent never serves a submission
        start = subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2",
                                f"--dashboard-agent-listen-port={free_port()}",
                                f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert start.returncode == 0, start.stderr[-3000:]
        yield env, f"http://127.0.0.1:{dash}", Path(temp_dir)
    finally:  # this head's processes and theirs: `ray stop` would stop every Ray on the machine
        own = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
        kill_all([q for p in own for q in (p, *descendants(p.pid))])
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit(head, *entrypoint: str) -> str:
    """`ray job submit --working-dir . -- <entrypoint>`; the job's output (it must succeed)."""
    env, address, temp_dir = head
    deadline = time.monotonic() + 300
    while True:  # a head just started, or one on a busy machine, may not have its job agent answering yet
        proc = subprocess.run([RAY, "job", "submit", f"--address={address}", f"--working-dir={REPO}", "--", *entrypoint],
                              env=env, capture_output=True, text=True, timeout=420)
        output = proc.stdout + proc.stderr
        if "No available agent to submit job, please try again later" not in output or time.monotonic() > deadline:
            break
        time.sleep(2)
    agent_logs = "".join(p.read_text(errors="replace")[-3000:] for p in temp_dir.glob("session_latest/logs/dashboard_agent*.log"))
    assert proc.returncode == 0 and "succeeded" in output.lower(), output[-4000:] + "\nthe job agent's log:\n" + agent_logs
    return output


@pytest.mark.reliability("security")
def test_a_client_without_the_clusters_token_is_turned_away(head):
    env, address, _ = head
    refused = subprocess.run([RAY, "job", "list", f"--address={address}"], env={**env, "RAY_AUTH_TOKEN": "not-the-token"},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    allowed = subprocess.run([RAY, "job", "list", f"--address={address}"], env=env, capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr[-2000:]


def test_a_local_ray_next_to_the_head_asks_its_own_dashboard(head):
    """A job's own local Ray on a machine where another Ray runs: Ray's state API, which Ray
    Train's placement-group cleaner asks from inside the cluster, finds the job's own cluster.
    It once looked for Ray processes, found two ("Found multiple active Ray instances"), and a
    Tune search never got past its first trial."""
    import ray

    from engine.raycluster import RayConfig, ray_session

    @ray.remote(num_cpus=0)
    class Probe:
        def own_state(self) -> str:
            from ray.util.state import get_actor

            return get_actor(ray.get_runtime_context().get_actor_id()).state

    with ray_session(RayConfig(num_cpus=1), dashboard=True):  # as train and tune start theirs
        assert ray.get(Probe.remote().own_state.remote(), timeout=60) == "ALIVE"
    assert "RAY_API_SERVER_ADDRESS" not in os.environ, "the driver may join another cluster next"


def test_mine_as_a_submitted_ray_job(head, tiny_world, tmp_path):
    from engine.models.detector import build_detector

    cfg, _ = tiny_world
    detector = tmp_path / "det.pt"
    build_detector("quarry-yolo-tiny.yaml", ["cone", "barrel", "sign", "barrier"]).save(str(detector))
    out = tmp_path / "mine-out"
    submit(head, "python", "-m", "jobs.mine", "--config", "configs/mine.yaml",
           f"input.source={Path(cfg.out_dir) / 'videos.parquet'}", f"output.out_dir={out}",
           f"scoring.detector.source={detector}", "scoring.clip.checkpoint=null", "scoring.detector.conf_threshold=0.001",
           "scoring.cue_conf=0.001", "gate.min_cue_kinds=1", "gate.min_frames=1", "scoring.max_actors=1", "-q")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == {"total": 7, "processed": 7, "errored": 0, "skipped_done": 0}
    # MLflow artifacts land beside the job's SQLite store, not in Ray's temporary copy of the working dir
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("quarry-mine").experiment_id])
    assert run.info.artifact_uri.startswith((out / "mlartifacts").resolve().as_uri()), run.info.artifact_uri
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"summary.json", "candidates.csv"}
    assert list((out / "mlartifacts").rglob("summary.json"))
    packages = [p for p in head[2].glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*") if p.is_dir()]
    assert packages, "the working dir was uploaded"
    # .gitignore keeps .venv, runs/ and data out of the upload
    assert all(_folder_bytes(p) < 5_000_000 for p in packages)
    assert not any((p / "mlruns").exists() for p in packages), "nothing was written into the working dir copy"


def test_train_and_tune_as_submitted_ray_jobs(head, tiny_dataset, tmp_path):
    data, work = tiny_dataset
    base = work / "base" / "base.pt"
    small = ["detect.epochs=1", "detect.samples_per_epoch=16", "detect.batch=8"]
    submit(head, "python", "-m", "jobs.train", "--config", "configs/train.yaml", f"data={data}",
           f"out_dir={tmp_path / 'train'}", f"detect.model={base}", *small, "-q")
    trained = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert Path(trained["models"]["detector"]["best_model"]).is_file()
    assert trained["models"]["detector"]["registered"]["version"] == 1, "registered in the job's own SQLite store"
    submit(head, "python", "-m", "jobs.tune", "--config", "configs/tune.yaml", f"train.data={data}",
           f"out_dir={tmp_path / 'tune'}", f"train.detect.model={base}", "num_samples=1",
           *[f"train.{k}" for k in small], "-q")
    search = json.loads((tmp_path / "tune" / "summary.json").read_text())
    assert len(search["trials"]) == 1 and search["best"]["best_objective"] is not None
    assert Path(search["best_model"]).is_file() and search["registered"]["version"] >= 1
