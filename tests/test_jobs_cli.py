"""The `quarry` command and the shipped configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.config import load_config
from jobs import cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_every_job_module_is_a_subcommand():
    names = cli.job_names()
    modules = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if p.stem not in ("__init__", "cli"))
    assert names == modules
    for name in names:
        module = __import__(f"jobs.{name}", fromlist=["run"])
        assert callable(module.run) and module.SUMMARY and module.CONFIG


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    """Each configs/<job>[-profile].yaml validates against its job's config model."""
    job = path.stem.split("-")[0]  # configs/<job>[-profile].yaml
    module = __import__(f"jobs.{job}", fromlist=["CONFIG"])
    config = load_config(module.CONFIG, path)
    given = yaml.safe_load(path.read_text())
    assert given, "config file is empty"
    assert path.read_text().startswith(f"# quarry {job} --config configs/{path.name}")
    # every value the file gives is the value the job runs with
    resolved = config.model_dump(mode="json")

    def check(node, into, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                check(value, into[key], f"{where}.{key}")
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            assert len(into) == len(node), f"{path.name}: {where}"
            for i, (item, got) in enumerate(zip(node, into)):
                check(item, got, f"{where}[{i}]")
        else:
            assert into == node, f"{path.name}: {where}"

    check(given, resolved, "")  # each value the file gives, as given
    # and the resolved config round-trips through its own dump
    assert module.CONFIG.model_validate(resolved) == config


def test_help_lists_every_job(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.job_names():
        assert f"  {name} " in out


@pytest.mark.reliability("bad config")
def test_unknown_job_and_bad_override_exit_2(capsys):
    assert cli.main(["nosuchjob"]) == 2
    assert "unknown job 'nosuchjob'" in capsys.readouterr().err
    assert cli.main(["synth", "videos.fps=fast"]) == 2
    err = capsys.readouterr().err
    assert "videos.fps = 'fast'" in err and "Traceback" not in err


def test_print_config_applies_overrides(capsys):
    assert cli.main(["synth", "--config", str(REPO / "configs" / "synth.yaml"), "seed=9", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 9
    # options and overrides in any order
    assert cli.main(["synth", "-q", "seed=4", "--print-config", "videos.fps=12"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert (resolved["seed"], resolved["videos"]["fps"]) == (4, 12)


def test_console_script_and_module_entry_points():
    """`quarry X` and `python -m jobs.X` are the same job; both give --help per job."""
    exe = Path(sys.executable).parent / "quarry"
    commands = [[sys.executable, "-m", "jobs.synth", "--help"]]
    if exe.exists():
        commands.append([str(exe), "synth", "--help"])
    for command in commands:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "--config" in proc.stdout and "synthetic world" in proc.stdout


def test_synth_job_writes_resolved_config(tmp_path, capsys):
    code = cli.main(["synth", f"out_dir={tmp_path}", "videos.n_workzone=1", "videos.n_lookalike=0", "videos.n_clean=0",
                     "videos.duration_s=0.5", "detection.n_train=1", "detection.n_val=1", "detection.n_heldout_workzone=0",
                     "detection.n_heldout_lookalike=0", "segmentation.n_authentic=0", "segmentation.n_forged=0",
                     "segmentation.n_heldout_authentic=0", "segmentation.n_heldout_forged=0", "captions.n_images=0",
                     "heldout_videos.n_workzone=0", "heldout_videos.n_lookalike=0", "heldout_videos.n_clean=0", "-q"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == {"tp": 1, "fp": 0, "clean": 0}
    resolved = yaml.safe_load((tmp_path / "config.resolved.yaml").read_text())
    assert resolved["videos"]["n_workzone"] == 1 and resolved["out_dir"] == str(tmp_path)


@pytest.mark.reliability("bad config")
def test_python_dash_m_names_the_job_in_errors():
    proc = subprocess.run([sys.executable, "-m", "jobs.mine", "decode.width_px=100"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("quarry mine: invalid config") and "__main__" not in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("job,key", [("train", "data"), ("tune", "train.data")])
def test_a_missing_built_set_is_named_by_the_jobs_own_key(job, key, tmp_path, capsys):
    assert cli.main([job, f"{key}={tmp_path / 'no-set'}", f"out_dir={tmp_path / 'out'}", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"quarry {job}: {key} = '{tmp_path / 'no-set'}': no built set (samples.parquet) there" in err, err


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("job,key", [("synth", "out_dir"), ("pretrain", "world_dir"), ("demo", "work_dir")])
def test_a_store_uri_where_a_job_takes_a_local_path_is_named(job, key, capsys):
    """`Path` folded `s3://bucket/world` into a local `s3:/bucket/world`, reported later as not found."""
    assert cli.main([job, f"{key}=s3://bucket/world", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert f"{key} = 's3://bucket/world': this key takes a local path, not an object-store URI" in err, err


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("job,prefix", [("train", "scaling."), ("tune", "train.scaling.")])
def test_ddp_workers_sharing_a_gpu_are_refused(job, prefix, capsys):
    """Seen on an H100: two DDP workers at 0.5 GPU each fail at NCCL's first barrier ("Duplicate GPU
    detected"), so the config refuses them; one worker at 0.5 GPU (a Tune trial's) stays valid."""
    gpu = [f"{prefix}use_gpu=true", f"{prefix}gpus_per_worker=0.5"]
    assert cli.main([job, *gpu, f"{prefix}num_workers=2", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "scaling.gpus_per_worker=0.5 with scaling.num_workers=2: NCCL cannot" in err and "Traceback" not in err
    assert cli.main([job, *gpu, f"{prefix}num_workers=1", "--print-config"]) == 0
    assert cli.main([job, f"{prefix}gpus_per_worker=0.5", f"{prefix}num_workers=2", "--print-config"]) == 0  # CPU: unused
    capsys.readouterr()


@pytest.mark.parametrize("error", ["ConfigError", "ModelError"])
def test_a_workers_own_error_reaches_the_user_as_one_line(error):
    """Ray wraps a worker's exception in its own (a worker group's traceback, an actor's death);
    the job shows the worker's one line, as `quarry` prints a ConfigError or ModelError."""
    from engine.config import ConfigError
    from engine.models import ModelError
    from engine.raycluster import own_errors_surface

    line = "data = '/mirror/s3/b/dataset': no such data.yaml"
    wrapped = RuntimeError(f"Training failed due to worker errors:\n[Rank 0]\nTraceback ...\nengine.x.{error}: {line}\n")
    with pytest.raises(ConfigError if error == "ConfigError" else ModelError) as raised:
        with own_errors_surface():
            raise wrapped
    assert str(raised.value) == line and type(raised.value).__name__ == error
    with pytest.raises(RuntimeError, match="not ours"), own_errors_surface():
        raise RuntimeError("not ours")


def test_a_tune_trials_own_error_is_found_in_rays_text():
    """A failed trial's error as Tune keeps it (a Train worker group's, with the trial actor's
    coloured name after it): the search reports the worker's one line."""
    from engine.config import ConfigError
    from engine.raycluster import own_error

    line = "detect.base_data = '/mirror/s3/b/dataset/data.yaml': no such data.yaml"
    text = ("Training failed due to worker errors:\n[Rank 0 Error Snippet]:\n    raise ConfigError(f\"...\")\n"
            f"engine.config.ConfigError: {line}\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=8478, repr=tune_trial)")
    found = own_error(text)
    assert isinstance(found, ConfigError) and str(found) == line
    assert own_error("ray.exceptions.RayActorError: the actor died unexpectedly") is None
