"""The cluster files in configs/cluster/: the Ray cluster launcher config against the schema
inside the ray package, each job config against its job's typed config, and the KubeRay RayJob
manifest for the fields KubeRay requires."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import yaml

from engine.config import load_config

CLUSTER = Path(__file__).resolve().parents[1] / "configs" / "cluster"


@pytest.mark.reliability("security")
def test_cluster_yaml_passes_rays_schema_and_its_preparation():
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "cluster.yaml").read_text())
    schema = json.loads((Path(os.path.dirname(ray.autoscaler.__file__)) / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))  # what `ray up` does before it launches anything
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}, "the head runs drivers only"
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert all(t["min_workers"] == 0 for t in workers.values()), "every worker type scales from 0"
    assert any(t["resources"].get("GPU") for t in workers.values()) and any(not t["resources"].get("GPU") for t in workers.values())
    head = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "--dashboard-host=127.0.0.1" in head, "token auth on, no public dashboard"
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"] if c.startswith("RAY_"))
    with pytest.raises(jsonschema.ValidationError, match="head_node_typo"):
        jsonschema.validate({**config, "head_node_typo": "head"}, schema)


@pytest.mark.parametrize("job", ["mine", "label", "train", "tune", "scan"])
def test_cluster_job_configs_load_and_ask_for_gpus(job):
    module = importlib.import_module(f"jobs.{job}")
    config = load_config(module.CONFIG, CLUSTER / f"{job}.yaml", [])
    gpus = {
        "mine": lambda c: c.scoring.num_gpus_per_actor,
        "label": lambda c: c.pool.num_gpus_per_actor,
        "train": lambda c: c.scaling.use_gpu and c.scaling.gpus_per_worker,
        "tune": lambda c: c.train.scaling.use_gpu and c.train.scaling.gpus_per_worker,
        "scan": lambda c: c.pool.num_gpus_per_actor,
    }[job](config)
    assert gpus > 0
    header = (CLUSTER / f"{job}.yaml").read_text().splitlines()[:5]
    assert any(f"python -m jobs.{job} --config configs/cluster/{job}.yaml" in line for line in header)


def test_rayjob_manifest_has_the_fields_kuberay_requires():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m jobs.")
    config_path = spec["entrypoint"].split("--config ", 1)[1].split()[0]
    assert (CLUSTER.parents[1] / config_path).is_file(), config_path
    cluster = spec["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    for name, group in groups:
        assert isinstance(group["rayStartParams"], dict), name
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers), name
        env = {e["name"]: e for e in containers[0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], name
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
        assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
