"""Every job against a real S3 server (moto's server mode on loopback): the tiny demo's world and
base models uploaded to a bucket, then mine -> label -> build -> train -> scan -> evaluate with
`s3://` inputs and outputs, each compared with the same job on local disk; review and promote
against the store. Credentials come
from the environment and appear in no output, resolved config, mirror file or MLflow store.
Train, tune, mine, label and scan also run on a two-node cluster whose second node has a disk of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import descendants, free_port, kill_all

from jobs import build, evaluate, label, mine, promote, review, scan, train
from jobs.cli import run_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray")]
REPO = Path(__file__).resolve().parents[1]

BUCKET = "quarry-test"
SECRET = "quarry-secret-never-logged-7f3a"
# columns that name where a file lives (a local path against a store URI or its mirror)
PLACE_COLUMNS = {"video_path", "detector", "snapshot_path", "image_path", "label_path", "source_image", "source_label",
                 "path", "uri", "source", "checkpoint", "mask_path", "image"}


@pytest.fixture(scope="module")
def store(tiny_demo, tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with the tiny demo's world and base models in a bucket."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "quarry-test-key", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "QUARRY_STORE_MIRROR": str(tmp_path_factory.mktemp("mirror"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    work = Path(tiny_demo[0].work_dir)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    files = [p for p in (work / "world").rglob("*") if p.is_file()] + [work / "base" / n for n in ("base.pt", "clip.pt")]
    files.append(work / "base-seg" / "base_seg.pt")
    for path in files:
        s3.upload_file(str(path), BUCKET, path.relative_to(work).as_posix())
    yield {"work": work, "local": tmp_path_factory.mktemp("local"), "mlflow": tmp_path_factory.mktemp("mlflow"),
           "mirror": Path(env["QUARRY_STORE_MIRROR"]), "s3": s3}
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    server.stop()


def _run(module, args: list[str], capfd) -> str:
    code = run_job(module, args)
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]
    assert SECRET not in out + err
    return out + err


def _both(module, store, capfd, local: dict[str, str], remote: dict[str, str], common: list[str]) -> tuple[Path, Path, str]:
    """Run a job on local paths and on s3:// URIs with the same settings; return both output mirrors."""
    def args(paths):
        return [f"{k}={v}" for k, v in paths.items()] + common
    _run(module, args(local), capfd)
    out = _run(module, args(remote), capfd)
    out_key = next(k for k in remote if k.endswith("out_dir"))
    return Path(local[out_key]), store["mirror"] / "s3" / BUCKET / remote[out_key].split(f"{BUCKET}/", 1)[1], out


def _same_table(a: Path, b: Path, sort: list[str]) -> pd.DataFrame:
    left, right = pd.read_parquet(a), pd.read_parquet(b)
    assert list(left.columns) == list(right.columns)
    if "path" in left.columns:  # the file's name, where the rest of its place differs
        left["file_name"], right["file_name"] = (t.path.map(lambda p: Path(p).name) for t in (left, right))
    cols = [c for c in left.columns if c not in PLACE_COLUMNS and c != "run_hash"]
    left, right = (t.sort_values(sort).reset_index(drop=True)[cols] for t in (left, right))
    pd.testing.assert_frame_equal(left, right)
    return left


def _listed(store, prefix: str) -> set[str]:
    pages = store["s3"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])}


def test_every_job_reads_and_writes_s3_with_the_same_results_as_local_disk(store, capfd):
    work, local, s3 = store["work"], store["local"], f"s3://{BUCKET}"
    track = f"tracking.tracking_uri=sqlite:///{store['mlflow']}/mlflow.db"

    # mine: videos read from the store by the tasks, the detector, CLIP and the outputs mirrored
    mine_local, mine_s3, printed = _both(
        mine, store, capfd,
        {"input.source": work / "world/videos.parquet", "scoring.detector.source": work / "base/base.pt",
         "scoring.clip.checkpoint": work / "base/clip.pt", "output.out_dir": local / "mine"},
        {"input.source": f"{s3}/world/videos.parquet", "scoring.detector.source": f"{s3}/base/base.pt",
         "scoring.clip.checkpoint": f"{s3}/base/clip.pt", "output.out_dir": f"{s3}/mine"},
        ["selection.mode=false-alarms", "gate.min_cue_kinds=1", "decode.stride=2", track])
    candidates = _same_table(mine_local / "candidates.parquet", mine_s3 / "candidates.parquet", ["video_key", "frame"])
    assert len(candidates) > 0
    assert f"{s3}/mine" in printed
    assert {"candidates.parquet", "summary.json", "config.resolved.yaml"} <= _listed(store, "mine/")
    assert pd.read_parquet(mine_s3 / "candidates.parquet").video_path.str.startswith(f"{s3}/world/videos/").all()

    # label the candidates: their snapshots are read from the store
    label_local, label_s3, _ = _both(
        label, store, capfd,
        {"input.source": mine_local / "candidates.parquet", "detector.source": work / "base/base.pt",
         "output.out_dir": local / "label", "ground_truth": work / "world"},
        {"input.source": f"{s3}/mine/candidates.parquet", "detector.source": f"{s3}/base/base.pt",
         "output.out_dir": f"{s3}/label", "ground_truth": f"{s3}/world"},
        ["input.kind=candidates", "pool.max_actors=1", track])
    labels = _same_table(label_local / "labels.parquet", label_s3 / "labels.parquet", ["video_key", "frame"])
    assert len(labels) == len(candidates)
    s3_labels = pd.read_parquet(label_s3 / "labels.parquet")
    assert all(Path(p).read_text() == (label_local / "labels" / Path(p).relative_to(label_s3 / "labels")).read_text()
               for p in s3_labels.label_path)

    # build: every table brings the folder its rows point into
    build_local, build_s3, _ = _both(
        build, store, capfd,
        {"detect.base_data": work / "world/detection/data.yaml", "detect.labels": label_local / "labels.parquet",
         "detect.candidates": "null", "clip.checkpoint": work / "base/clip.pt", "out_dir": local / "dataset"},
        {"detect.base_data": f"{s3}/world/detection/data.yaml", "detect.labels": f"{s3}/label/labels.parquet",
         "detect.candidates": "null", "clip.checkpoint": f"{s3}/base/clip.pt", "out_dir": f"{s3}/dataset"},
        [])
    samples = _same_table(build_local / "samples.parquet", build_s3 / "samples.parquet", ["split", "name"])
    assert set(samples.kind) >= {"positive", "hard_negative"}
    assert "data.yaml" in _listed(store, "dataset/")

    # train on the dataset in the store, from the base model in the store
    train_local, train_s3, _ = _both(
        train, store, capfd,
        {"data": build_local, "detect.model": work / "base/base.pt", "out_dir": local / "train"},
        {"data": f"{s3}/dataset", "detect.model": f"{s3}/base/base.pt", "out_dir": f"{s3}/train"},
        ["detect.epochs=1", "detect.samples_per_epoch=32", "detect.batch=8", "registry.register_model=false", track])
    history = [json.loads((d / "history.json").read_text()) for d in (train_local, train_s3)]
    for key in ("train_loss", "val_map50", "val_fp_rate", "val_recall"):
        assert history[0][-1][key] == pytest.approx(history[1][-1][key], abs=1e-6), key
    assert "best.pt" in _listed(store, "train/")

    # scan the authentic segmentation images in the store
    scan_local, scan_s3, _ = _both(
        scan, store, capfd,
        {"input.source": work / "world/segmentation/index.parquet", "models": f"[{{checkpoint: {work}/base-seg/base_seg.pt}}]",
         "out_dir": local / "scan"},
        {"input.source": f"{s3}/world/segmentation/index.parquet", "models": f"[{{checkpoint: {s3}/base-seg/base_seg.pt}}]",
         "out_dir": f"{s3}/scan"},
        ["imgsz=64", "min_area_px=4", track])
    scanned = _same_table(scan_local / "scan.parquet", scan_s3 / "scan.parquet", ["file_name"])
    assert len(scanned) == json.loads((scan_s3 / "summary.json").read_text())["scanned"] > 0

    # evaluate the model trained in the store on the held-out world in the store
    eval_local, eval_s3, _ = _both(
        evaluate, store, capfd,
        {"world": work / "world", "out_dir": local / "evaluate",
         "models": f"[{{name: tuned, source: {train_local}/best.pt}}]"},
        {"world": f"{s3}/world", "out_dir": f"{s3}/evaluate",
         "models": f"[{{name: tuned, source: {s3}/train/best.pt}}]"},
        [track])
    reports = [json.loads((d / "report.json").read_text())["models"] for d in (eval_local, eval_s3)]
    frames = [r["tuned"]["frames"] for r in reports]
    assert frames[0]["frames"] == frames[1]["frames"]  # tp, fp, fn, tn, precision, recall, fp_rate
    assert frames[0]["objects"]["map50"] == pytest.approx(frames[1]["objects"]["map50"], abs=1e-9)
    events = [{k: r["tuned"]["events"][k] for k in ("event_recall", "false_alarms")} for r in reports]
    assert events[0] == events[1]
    assert "report.html" in _listed(store, "evaluate/")

    # the secret is nowhere on disk either: mirror, local outputs, MLflow
    for root in (store["mirror"], local, store["mlflow"]):
        for path in (p for p in root.rglob("*") if p.is_file()):
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.reliability("resume")
def test_a_rerun_against_the_store_resumes_from_what_it_holds(store, capfd):
    """A second mining run into the same prefix, with a fresh mirror, finds every video done."""
    work = store["work"]
    args = [f"input.source=s3://{BUCKET}/world/videos.parquet", f"scoring.detector.source=s3://{BUCKET}/base/base.pt",
            f"output.out_dir=s3://{BUCKET}/mine-resume", "scoring.use_clip=false", "selection.mode=false-alarms",
            "decode.stride=3", "tracking.enabled=false", "input.limit=2"]
    _run(mine, args, capfd)
    mirror = store["mirror"] / "s3" / BUCKET / "mine-resume"
    for path in sorted(mirror.rglob("*"), reverse=True):  # a new machine: nothing local
        path.unlink() if path.is_file() else path.rmdir()
    _run(mine, args, capfd)
    summary = json.loads((mirror / "summary.json").read_text())
    assert summary["inputs"]["skipped_done"] == 2 and summary["inputs"]["processed"] == 0, summary["inputs"]
    assert work.is_dir()


def test_review_and_promote_read_and_write_the_store(store, capfd):
    """The review answers, an export and the sheet go back to the store (a new machine reads the
    answers there); promotion judges a registered model on the held-out world in the store."""
    from engine.config import load_config
    from engine.registry.models import register_as
    from engine.review.config import ReviewConfig
    from engine.staging import Staging

    work, s3, mine_uri = store["work"], store["s3"], f"s3://{BUCKET}/reviewed"
    for path in (p for p in (work / "mine").rglob("*") if p.is_file()):
        if path.name != "reviews.jsonl" and "sheet" not in path.parts:  # the tiny demo's own answers stay local
            s3.upload_file(str(path), BUCKET, f"reviewed/{path.relative_to(work / 'mine').as_posix()}")
    table = pd.read_parquet(work / "mine" / "candidates.parquet")
    chosen, other = (f"{table.video_key[i]}_f{table.frame[i]}" for i in (0, 1))
    manifest = f"candidates={mine_uri}/candidates.parquet"
    assert "stored:" not in _run(review, ["stats", manifest], capfd)  # reads only: uploads nothing
    assert run_job(review, ["accept", f"candidates=s3://{BUCKET}/not-mined/candidates.parquet", "select.ids=[x]"]) == 2
    assert f"candidates = 's3://{BUCKET}/not-mined/candidates.parquet': no such object" in capfd.readouterr().err
    assert "reviews.jsonl" not in _listed(store, "reviewed/")
    assert f"stored: candidates -> {mine_uri} " in _run(review, ["accept", manifest, f"select.ids=[{chosen}]"], capfd)
    assert "reviews.jsonl" in _listed(store, "reviewed/")
    staging = Staging(review.remote_keys)  # the job's own steps, to look at the store before it ends
    config = load_config(ReviewConfig, None, ["command=reject", manifest, f"select.ids=[{other}]"], staging.localise)
    with staging:
        review.run(config)
        answers = store["s3"].get_object(Bucket=BUCKET, Key="reviewed/reviews.jsonl")["Body"].read().decode()
        assert [json.loads(line)["value"] for line in answers.splitlines()] == ["accepted", "rejected"], \
            "each answer reaches the store as it is written (a crash before the end loses none)"
    shutil.rmtree(store["mirror"] / "s3" / BUCKET / "reviewed")  # a new machine: the answers come from the store
    _run(review, ["export", manifest, "select.decisions=[accepted]", "export_mode=copy",
                  f"export_dir=s3://{BUCKET}/exported"], capfd)
    assert f"images/{chosen}.jpg" in _listed(store, "exported/")
    _run(review, ["sheet", manifest], capfd)
    assert {"sheet/index.html", f"sheet/thumbs/{chosen}.jpg"} <= _listed(store, "reviewed/")

    tracking = f"sqlite:///{store['mlflow']}/promote.db"
    register_as(tracking, "quarry-promote", "detector", work / "base" / "base.pt", "quarry-detector", "challenger", {})
    # the registry's download lands in the output folder; the scoring actors read it from the store
    printed = _run(promote, [f"evaluation.world=s3://{BUCKET}/world", f"out_dir=s3://{BUCKET}/promote",
                             f"tracking.tracking_uri={tracking}"], capfd)
    assert "quarry-detector: promoted (challenger version 1" in printed, printed[-2000:]
    stored = _listed(store, "promote/")
    assert "evaluate/report.html" in stored and any(k.startswith("evaluate/models/quarry-detector-v1/") for k in stored)


@pytest.mark.reliability("bad input")
def test_a_missing_object_and_an_unreachable_store_are_named(store, capfd):
    code = run_job(train, [f"data=s3://{BUCKET}/no-such-dataset", f"out_dir={store['local']}/t", "tracking.enabled=false"])
    err = capfd.readouterr().err
    assert code == 2 and f"data = 's3://{BUCKET}/no-such-dataset': no such object or prefix" in err, err
    code = run_job(build, [f"detect.base_data=s3://{BUCKET}/world/detection/data.yaml", "out_dir=s3://no-such-bucket-q/x"])
    err = capfd.readouterr().err
    assert code == 2 and "out_dir = 's3://no-such-bucket-q/x': the store has no bucket 'no-such-bucket-q'" in err, err


@pytest.mark.reliability("security")
def test_credentials_in_a_uri_are_refused_before_they_are_written(store, capfd):
    code = run_job(build, [f"out_dir=s3://key:{SECRET}@{BUCKET}/x"])
    err = capfd.readouterr().err
    assert code == 2 and "credentials do not belong in a URI" in err and SECRET not in err, err
    assert not (store["mirror"] / "s3" / BUCKET / "x").exists()


@pytest.fixture(scope="module")
def two_nodes(store, tmp_path_factory):
    """A two-node Ray cluster on this machine, each node with a disk of its own where the mirror
    lives: a head with no CPUs (so every worker and actor runs on the other node), and a second
    node started in a private mount namespace with a tmpfs mounted over the mirror folder, so
    its workers see an empty mirror where the driver sees its own. Yields the driver's env."""
    temp_dir = tempfile.mkdtemp(prefix="/tmp/qn")  # Ray's socket paths must stay short
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "HOME": str(tmp_path_factory.mktemp("home")), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    ray = str(Path(sys.executable).parent / "ray")
    common = ["--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    try:
        subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
        # each node's agent on a port of its own, not Ray's default 52365, which the job-submission head needs
        head = subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=0", "--dashboard-host=127.0.0.1",
                               f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}", *common],
                              env=env, capture_output=True, text=True, timeout=120)
        assert head.returncode == 0, head.stderr[-3000:]
        mirror = store["mirror"]
        node = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               f'mount -t tmpfs quarry-node2 "{mirror}" && exec "$@"', "sh",
                               ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=2",
                               f"--dashboard-agent-listen-port={free_port()}", *common],
                              env=env, capture_output=True, text=True, timeout=120)
        assert node.returncode == 0, f"the second node did not start (unshare and mount need root): {node.stderr[-3000:]}"
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:  # this cluster's processes: `ray stop` would stop every Ray on the machine
        own = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
        kill_all([q for p in own for q in (p, *descendants(p.pid))])
        shutil.rmtree(temp_dir, ignore_errors=True)


def _on_the_cluster(env: dict, job: str, *args: str) -> str:
    """`python -m jobs.<job>` as a driver on the head's node; its output (it must succeed)."""
    proc = subprocess.run([sys.executable, "-m", f"jobs.{job}", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert SECRET not in proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def cluster_dataset(store) -> str:
    """The tiny demo's built detection set in the store."""
    work = store["work"]
    for path in (p for p in (work / "dataset").rglob("*") if p.is_file()):  # its images are links: sent as files
        store["s3"].upload_file(str(path), BUCKET, f"cluster/dataset/{path.relative_to(work / 'dataset').as_posix()}")
    return f"s3://{BUCKET}/cluster/dataset"


def test_train_workers_on_another_node_read_the_store_and_checkpoint_to_it(store, two_nodes, cluster_dataset):
    """`quarry train` with s3:// inputs on a cluster whose workers run on a node without the
    driver's mirror: each worker brings the dataset and the model from the store to its own
    node, its checkpoints go to the store, and the run learns what the same run on the same
    cluster learns from the dataset on a disk both nodes share."""
    work = store["work"]
    common = ["detect.epochs=1", "detect.samples_per_epoch=32", "detect.batch=8", "scaling.num_workers=2",
              "registry.register_model=false", "tracking.enabled=false"]

    def train_on_the_cluster(*args: str) -> str:
        return _on_the_cluster(two_nodes, "train", *args, *common)

    printed = train_on_the_cluster(f"data={cluster_dataset}", f"detect.model=s3://{BUCKET}/base/base.pt",
                                   f"out_dir=s3://{BUCKET}/cluster/train")
    assert f"data: {sum(1 for p in (work / 'dataset').rglob('*') if p.is_file())} files from s3://{BUCKET}/cluster/dataset" \
        in printed  # a worker's pull, on the node that had none of it
    listed = _listed(store, "cluster/train/")
    assert {"best.pt", "history.json", "summary.json"} <= listed
    assert any(k.startswith("ray/train-detector-") and "/checkpoint_" in k and k.endswith("state.pt") for k in listed)
    assert not list((store["mirror"] / "s3" / BUCKET / "cluster" / "train").glob("ray/*/checkpoint_*"))

    local = store["local"] / "cluster-train"
    train_on_the_cluster(f"data={work / 'dataset'}", f"detect.model={work / 'base' / 'base.pt'}", f"out_dir={local}")
    history = [json.loads(p.read_text()) for p in (store["mirror"] / "s3" / BUCKET / "cluster/train/history.json",
                                                   local / "history.json")]
    for key in ("train_loss", "val_map50", "val_fp_rate", "val_recall"):
        assert history[0][-1][key] == pytest.approx(history[1][-1][key], abs=1e-6), key


@pytest.mark.reliability("resume")
def test_tune_trials_on_another_node_read_the_store_and_a_new_machine_resumes_the_search(store, two_nodes, cluster_dataset,
                                                                                         tmp_path):
    """`quarry tune` with s3:// inputs and output on the two-node cluster: its trials, on the node
    without the driver's mirror, bring the dataset and the model to it and write their Ray Train
    checkpoints to the store, as Tune writes its experiment; the best model is registered. The
    same command from a driver whose mirror is empty (another machine) restores the finished
    search from the store and registers nothing new."""
    mirror = store["mirror"] / "s3" / BUCKET / "cluster" / "tune"
    command = [f"train.data={cluster_dataset}", f"train.detect.model=s3://{BUCKET}/base/base.pt",
               f"out_dir=s3://{BUCKET}/cluster/tune", "num_samples=2", "scheduler=fifo", "train.detect.epochs=1",
               "train.detect.samples_per_epoch=32", "train.detect.batch=8", "train.scaling.num_workers=1",
               f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]
    printed = _on_the_cluster(two_nodes, "tune", *command)
    assert "registered quarry-detector version 1 as @challenger" in printed, printed[-3000:]
    assert f"uploaded to s3://{BUCKET}/cluster/tune, 0 deleted" in printed  # Ray's own files stay in the store
    rows = [line for line in printed.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert len(rows) == 2 and all(row.split("|")[2].strip() == "1" for row in rows), rows  # each trial: 1 epoch
    listed = _listed(store, "cluster/tune/")
    assert {"best.pt", "summary.json", "search.json"} <= listed
    assert any(k.startswith("ray/search/") and k.endswith("tuner.pkl") for k in listed)
    for trial in {row.split("|")[1].strip() for row in rows}:
        assert any(k.startswith(f"trials/{trial}/ray/{trial}/checkpoint_") and k.endswith("/state.pt") for k in listed), trial

    shutil.rmtree(mirror)
    printed = _on_the_cluster(two_nodes, "tune", *command)
    assert "(resumed)" in printed and "registered quarry-detector version 1 as @challenger" in printed, printed[-3000:]
    assert "Attempting to start training worker group" not in printed  # nothing trained again


def test_actors_on_another_node_load_their_models_from_the_store(store, two_nodes):
    """Mining's, labelling's and scanning's actors, on the node without the driver's mirror,
    bring the detector and CLIP (and the scan's images and segmenter) from the store, label's frames and
    label files are written by the driver into its mirror and reach the store, and each job finds
    what it finds from local paths on the same cluster."""
    work, local, s3 = store["work"], store["local"], f"s3://{BUCKET}"
    mining = ["selection.mode=false-alarms", "gate.min_cue_kinds=1", "decode.stride=2", "tracking.enabled=false"]
    _on_the_cluster(two_nodes, "mine", f"input.source={s3}/world/videos.parquet", f"scoring.detector.source={s3}/base/base.pt",
                    f"scoring.clip.checkpoint={s3}/base/clip.pt", f"output.out_dir={s3}/cluster/mine", *mining)
    _on_the_cluster(two_nodes, "mine", f"input.source={work}/world/videos.parquet", f"scoring.detector.source={work}/base/base.pt",
                    f"scoring.clip.checkpoint={work}/base/clip.pt", f"output.out_dir={local}/cluster-mine", *mining)
    mirrored = store["mirror"] / "s3" / BUCKET / "cluster"
    candidates = _same_table(local / "cluster-mine" / "candidates.parquet", mirrored / "mine" / "candidates.parquet",
                             ["video_key", "frame"])
    assert len(candidates) > 0

    labelling = ["input.kind=candidates", "ground_truth=null", "tracking.enabled=false"]
    _on_the_cluster(two_nodes, "label", f"input.source={s3}/cluster/mine/candidates.parquet",
                    f"detector.source={s3}/base/base.pt", f"output.out_dir={s3}/cluster/label", *labelling)
    _on_the_cluster(two_nodes, "label", f"input.source={local}/cluster-mine/candidates.parquet",
                    f"detector.source={work}/base/base.pt", f"output.out_dir={local}/cluster-label", *labelling)
    labels = _same_table(local / "cluster-label" / "labels.parquet", mirrored / "label" / "labels.parquet",
                         ["video_key", "frame"])
    assert len(labels) == len(candidates)
    stored = _listed(store, "cluster/label/")
    for row in pd.read_parquet(mirrored / "label" / "labels.parquet").itertuples():
        label_file = Path(row.label_path).relative_to(mirrored / "label")
        assert label_file.as_posix() in stored
        assert Path(row.label_path).read_text() == (local / "cluster-label" / label_file).read_text()

    scanning = ["imgsz=64", "min_area_px=4", "tracking.enabled=false"]
    _on_the_cluster(two_nodes, "scan", f"input.source={s3}/world/segmentation/index.parquet",
                    f"models=[{{checkpoint: {s3}/base-seg/base_seg.pt}}]", f"out_dir={s3}/cluster/scan", *scanning)
    _on_the_cluster(two_nodes, "scan", f"input.source={work}/world/segmentation/index.parquet",
                    f"models=[{{checkpoint: {work}/base-seg/base_seg.pt}}]", f"out_dir={local}/cluster-scan", *scanning)
    scanned = _same_table(local / "cluster-scan" / "scan.parquet", mirrored / "scan" / "scan.parquet", ["file_name"])
    assert len(scanned) == json.loads((mirrored / "scan" / "summary.json").read_text())["scanned"] > 0
