"""`quarry train` on a local Ray with 2 Ray Train workers (gloo): the weighted sampler on every
rank, the FP penalty's effect, a worker killed mid-training, models that Ultralytics and smp
load, resume from a stopped run, MLflow registration."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import kill_first_titled

from engine.config import ConfigError, load_config
from engine.train.config import TrainConfig
from jobs import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray")]


def _config(data, out, *overrides):
    return load_config(TrainConfig, None, [f"data={data}", f"out_dir={out}", "ray.num_cpus=2",
                                           "detect.samples_per_epoch=48", "detect.batch=8", "detect.epochs=2", *overrides])


def _sampler_loop(config):
    import ray.train
    import ray.train.torch
    from torch.utils.data import DataLoader

    from engine.train.sampler import WeightedDistributedSampler

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    for keep in (False, True):  # ours, then the control: Ray Train's default
        sampler = WeightedDistributedSampler(config["weights"], 4000, rank, world, seed=1)
        loader = DataLoader(list(range(len(config["weights"]))), batch_size=50, sampler=sampler)
        loader = ray.train.torch.prepare_data_loader(loader, add_dist_sampler=keep, move_to_device=False)
        drawn = {}
        for epoch in range(2):
            sampler.set_epoch(epoch)
            drawn[epoch] = [int(i) for batch in loader for i in batch]
        sampler_type = type(getattr(loader, "_dataloader", loader).sampler).__name__
        Path(config["out"], f"rank{rank}-{keep}.json").write_text(json.dumps({"drawn": drawn, "sampler": sampler_type}))
    ray.train.report({"done": 1})


def test_weighted_sampling_on_two_ray_train_workers(tmp_path):
    """Per rank and combined, draws follow the weights; ranks are disjoint parts of one draw;
    with add_dist_sampler=True (the default) Ray Train would have replaced the sampler."""
    import sys

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from engine.raycluster import RayConfig, ray_session
    from engine.train.sampler import WeightedDistributedSampler

    weights = [1.0, 2.0, 3.0, 4.0, 0.0]
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    with ray_session(RayConfig(num_cpus=2)):
        TorchTrainer(_sampler_loop, train_loop_config={"weights": weights, "out": str(tmp_path)},
                     scaling_config=ScalingConfig(num_workers=2),
                     run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="sampling")).fit()
    ranks = [json.loads((tmp_path / f"rank{r}-False.json").read_text()) for r in (0, 1)]
    assert {r["sampler"] for r in ranks} == {"WeightedDistributedSampler"}
    for epoch in ("0", "1"):
        whole = WeightedDistributedSampler(weights, 4000, 0, 2, seed=1)
        whole.set_epoch(int(epoch))
        expected = whole.epoch_draw().tolist()
        assert ranks[0]["drawn"][epoch] == expected[0::2] and ranks[1]["drawn"][epoch] == expected[1::2]
        p = np.array(weights) / sum(weights)
        for draws in (ranks[0]["drawn"][epoch], ranks[1]["drawn"][epoch], expected):
            freq = np.bincount(draws, minlength=5) / len(draws)
            # 2,000 draws per rank: binomial standard error <= 0.011, allow 4 sigma
            assert np.allclose(freq, p, atol=0.045), freq
    assert ranks[0]["drawn"]["0"] != ranks[0]["drawn"]["1"], "epochs differ"
    replaced = json.loads((tmp_path / "rank0-True.json").read_text())
    assert replaced["sampler"] == "DistributedSampler", "the control: Ray Train swaps samplers unless told not to"


def test_fp_penalty_lowers_scores_on_hard_negatives(tiny_dataset):
    """Same start, same seeded batches: with the penalty the model's top class probabilities on
    images with no object fall further than without it."""
    from torch.utils.data import DataLoader
    from ultralytics.utils.loss import v8DetectionLoss

    from engine.build.detection import read_data_yaml
    from engine.train.detect_data import DetectionDataset, collate, load_samples
    from engine.train.detect_loop import detection_batch_loss
    from engine.train.losses import detection_fp_penalty

    data, work = tiny_dataset
    names, _ = read_data_yaml(data / "data.yaml")
    samples = load_samples(data, "train")
    negatives = DetectionDataset(data, samples[samples.n_objects == 0].head(24), 256)
    probe = collate([negatives[i] for i in range(len(negatives))])

    def negative_score(model):
        model.train()
        with torch.no_grad():
            return float(detection_fp_penalty(model(probe["img"])["scores"], probe["negative"], 10))

    from engine.train.detect_model import load_detection_model

    results = {}
    for penalty in (0.0, 5.0):
        torch.manual_seed(0)
        model = load_detection_model(str(work / "base" / "base.pt"), names)
        criterion = v8DetectionLoss(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        before = negative_score(model)
        loader = DataLoader(DetectionDataset(data, samples, 256), batch_size=8, shuffle=True, collate_fn=collate,
                            generator=torch.Generator().manual_seed(0))
        for step, batch in zip(range(24), loader):  # ~40 images with no object (12 batches: a margin left to chance)
            model.train()
            loss, _, _ = detection_batch_loss(model, criterion, batch, penalty, 10)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results[penalty] = (before, negative_score(model))
    assert results[0.0][0] == pytest.approx(results[5.0][0]), "both runs start from the same model"
    assert results[5.0][1] < 0.8 * results[0.0][1], results  # measured: 0.034 vs 0.065


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    data, work = tiny_dataset
    out = tmp_path_factory.mktemp("train")
    cfg = _config(data, out, f"detect.model={work / 'base' / 'base.pt'}",
                  f"tracking.tracking_uri=sqlite:///{out / 'mlflow.db'}")
    return cfg, train.run(cfg)


def test_training_reports_validates_and_registers(trained):
    import mlflow

    cfg, summary = trained
    m = summary["models"]["detector"]
    assert m["epochs_run"] == 2 and [h["epoch"] for h in m["history"]] == [1, 2]
    for key in ("val_map50", "val_map50_95", "val_precision", "val_recall", "val_fp_rate", "fitness", "train_loss"):
        assert key in m["final"] and np.isfinite(m["final"][key]), key
    client = mlflow.tracking.MlflowClient(summary["tracking_uri"])
    run = client.get_run(m["mlflow_run_id"])
    assert [x.step for x in client.get_metric_history(run.info.run_id, "val_map50")] == [1, 2], "rank 0 logged each epoch"
    version = client.get_model_version("quarry-detector", str(m["registered"]["version"]))
    assert version.tags["quarry.dataset_hash"] == summary["dataset_hash"] != "unknown"
    assert version.tags["quarry.config_hash"] == summary["config_hash"]
    artifact_uri = client.get_run(m["mlflow_run_id"]).info.artifact_uri
    assert artifact_uri.startswith((Path(cfg.out_dir) / "mlartifacts").resolve().as_uri()), artifact_uri


def test_best_model_loads_predicts_and_validates_in_ultralytics(trained, tiny_dataset, tmp_path):
    from ultralytics import YOLO

    cfg, summary = trained
    data, work = tiny_dataset
    model = YOLO(summary["models"]["detector"]["best_model"])
    assert list(model.names.values()) == ["cone", "barrel", "sign", "barrier"]
    image = sorted((work / "world" / "heldout" / "workzone" / "images").glob("*.jpg"))[0]
    assert len(model.predict(str(image), imgsz=256, verbose=False)) == 1
    metrics = model.val(data=str(data / "data.yaml"), imgsz=256, verbose=False, plots=False, project=str(tmp_path),
                        name="val", device="cpu")
    assert 0.0 <= metrics.box.map50 <= 1.0


def test_registered_model_loads_from_the_registry_and_predicts(trained, tiny_dataset):
    import subprocess
    import sys

    cfg, summary = trained
    data, work = tiny_dataset
    version = summary["models"]["detector"]["registered"]["version"]
    image = sorted((work / "world" / "heldout" / "workzone" / "images").glob("*.jpg"))[0]
    code = (f"import mlflow, pandas as pd; mlflow.set_tracking_uri({summary['tracking_uri']!r}); "
            f"m = mlflow.pyfunc.load_model('models:/quarry-detector/{version}'); "
            f"out = m.predict(pd.DataFrame({{'image': [{str(image)!r}]}})); print(len(out), list(out.columns))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['image', 'class', 'class_id', 'conf', 'x1', 'y1', 'x2', 'y2']" in proc.stdout


class WorkerKiller(threading.Thread):
    """SIGKILL one Ray Train worker process once the run's first checkpoint exists."""

    def __init__(self, storage: Path):
        super().__init__(daemon=True)
        self.storage, self.killed, self.stop = storage, [], threading.Event()

    def run(self):
        while not self.stop.is_set() and not self.killed:
            if list(self.storage.glob("*/checkpoint_*")):
                killed = kill_first_titled(os.getpid(), "RayTrainWorker")  # this process's Ray's
                self.killed += [killed] if killed else []
            time.sleep(0.1)


@pytest.mark.reliability("fault")
def test_a_killed_worker_resumes_from_the_last_checkpoint(tiny_dataset, tmp_path):
    data, work = tiny_dataset
    cfg = _config(data, tmp_path / "out", f"detect.model={work / 'base' / 'base.pt'}", "detect.epochs=3",
                  "tracking.enabled=false", "max_failures=2")
    killer = WorkerKiller(tmp_path / "out" / "ray")
    killer.start()
    try:
        summary = train.run(cfg)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed, "a worker was killed mid-run"
    history = summary["models"]["detector"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3], "every epoch counted once"


@pytest.mark.reliability("resume")
def test_resume_from_a_stopped_run_continues_where_it_stopped(trained, tiny_dataset, tmp_path, monkeypatch):
    cfg, summary = trained
    more = cfg.model_copy(deep=True)
    # given as a user types them: relative to the working directory, which Ray Train's workers do not share
    monkeypatch.chdir(tmp_path)
    more.data, more.out_dir = Path(os.path.relpath(cfg.data)), Path(os.path.relpath(cfg.out_dir))
    more.detect.model = os.path.relpath(cfg.detect.model)
    more.detect.epochs = 3
    more.resume_from = "latest"
    more.tracking.enabled = False
    resumed = train.run(more)
    history = resumed["models"]["detector"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3], "epochs 1-2 from the stopped run, then 3"
    assert history[:2] == summary["models"]["detector"]["history"]
    with pytest.raises(ConfigError, match="resume_from"):
        bad = cfg.model_copy(deep=True)
        bad.resume_from = tmp_path / "nothing"
        train.run(bad)



@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("job,prefix", [("train", ""), ("tune", "train.")])
def test_workers_a_local_ray_cannot_hold_are_refused_not_waited_for(job, prefix, tiny_dataset, tmp_path, capsys):
    """Ray Train waits for a worker group that does not fit, retrying every 60 s with its own
    traceback; a local Ray cannot grow, so the job refuses the run, naming the keys."""
    from jobs import cli

    data, work = tiny_dataset
    code = cli.main([job, f"{prefix}data={data}", f"{prefix}detect.model={work / 'base' / 'base.pt'}",
                     f"out_dir={tmp_path / 'out'}", f"{prefix}scaling.num_workers=1000", "tracking.enabled=false", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"quarry {job}: {prefix}scaling.num_workers = 1000 x cpus_per_worker = " in err, err[-2000:]
    assert "CPUs at once, and this machine's local Ray has" in err and "Traceback" not in err


def test_segmentation_variants_train_and_load_with_smp(tiny_demo, tmp_path):
    from engine.config import load_config as load
    from engine.models.segmenter import SegmenterSpec, build_segmenter
    from jobs import build

    config, _ = tiny_demo
    world = Path(config.work_dir) / "world"
    build.run(load(build.BuildConfig, None, ["task=segment", f"segment.index={world / 'segmentation' / 'index.parquet'}",
                                             f"out_dir={tmp_path / 'seg'}", "val_fraction=0.3"]))
    cfg = load_config(TrainConfig, None, ["task=segment", f"data={tmp_path / 'seg'}", f"out_dir={tmp_path / 'out'}",
                                          "segment.epochs=1", "segment.batch=4", "segment.imgsz=64", "ray.num_cpus=2",
                                          "segment.models=[fpn_r18]", "tracking.enabled=false"])
    summary = train.run(cfg)
    assert list(summary["models"]) == ["fpn_r18"], "models= picks the variants"
    best = summary["models"]["fpn_r18"]["best_model"]
    model = build_segmenter(SegmenterSpec(arch="FPN", encoder="resnet18", checkpoint=best))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(ConfigError, match="a segmentation set; use task=segment"):
        train.run(load_config(TrainConfig, None, [f"data={tmp_path / 'seg'}", f"out_dir={tmp_path / 'x'}"]))
