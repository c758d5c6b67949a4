"""Typed configs: YAML + dotted overrides, and clear errors naming key, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.config import ConfigError, apply_overrides, config_hash, load_config, parse_override, write_resolved_config
from engine.synth.config import SynthConfig


def test_parse_override_types():
    assert parse_override("a.b=4") == (["a", "b"], 4)
    assert parse_override("a=0.5") == (["a"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=runs/x y") == (["a"], "runs/x y")
    assert parse_override("a=") == (["a"], "")


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1", ".a=1"])
def test_parse_override_rejects_malformed(bad):
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override(bad)


def test_apply_overrides_nests_and_does_not_mutate():
    base = {"a": {"b": 1}}
    merged = apply_overrides(base, ["a.c=2", "d.e.f=x"])
    assert merged == {"a": {"b": 1, "c": 2}, "d": {"e": {"f": "x"}}}
    assert base == {"a": {"b": 1}}


@pytest.mark.reliability("bad config")
def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="seed is a value"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_yaml_plus_overrides(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("seed: 3\nvideos:\n  n_workzone: 2\n")
    cfg = load_config(SynthConfig, path, ["videos.fps=30", "out_dir=/tmp/x"])
    assert (cfg.seed, cfg.videos.n_workzone, cfg.videos.fps, cfg.out_dir) == (3, 2, 30, Path("/tmp/x"))
    assert cfg.videos.n_lookalike == SynthConfig().videos.n_lookalike


@pytest.mark.reliability("bad config")
def test_unknown_key_names_the_key(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(SynthConfig, None, ["videos.n_work_zone=3"])
    assert "unknown key videos.n_work_zone" in str(err.value)


@pytest.mark.reliability("bad config")
def test_wrong_type_names_key_value_and_expectation():
    with pytest.raises(ConfigError) as err:
        load_config(SynthConfig, None, ["videos.fps=fast"])
    text = str(err.value)
    assert "videos.fps = 'fast'" in text and "integer" in text


@pytest.mark.reliability("bad config")
def test_out_of_range_value_is_an_error():
    with pytest.raises(ConfigError) as err:
        load_config(SynthConfig, None, ["videos.width_px=255", "detection.background_fraction=1.5"])
    text = str(err.value)
    assert "videos.width_px = 255" in text and "multiple of 2" in text
    assert "detection.background_fraction = 1.5" in text and "less than or equal to 1" in text


@pytest.mark.reliability("bad config")
def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SynthConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SynthConfig, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(SynthConfig, listy)


def test_resolved_config_round_trips(tmp_path: Path):
    cfg = load_config(SynthConfig, None, ["seed=11"])
    path = write_resolved_config(cfg, tmp_path)
    again = load_config(SynthConfig, path)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(SynthConfig, None, ["seed=12"])) != config_hash(cfg)
    assert yaml.safe_load(path.read_text())["seed"] == 11


# --- every job: a layer changes only the keys it names -------------------------------------

def _job_modules():
    from jobs import cli

    return [__import__(f"jobs.{name}", fromlist=["CONFIG"]) for name in cli.job_names()]


def _leaves(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _as_override(key: str, value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return f"{key}={text.removesuffix(chr(10) + '...' + chr(10)).strip()}"


JOB_CONFIG_FILES = [(m, None) for m in _job_modules()] + [
    (m, path) for m in _job_modules() for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    if path.stem.split("-")[0] == m.__name__.rsplit(".", 1)[-1]
]


@pytest.mark.parametrize("module,path", JOB_CONFIG_FILES,
                         ids=[f"{m.__name__.rsplit('.', 1)[-1]}:{p.name if p else 'defaults'}" for m, p in JOB_CONFIG_FILES])
def test_an_override_of_one_leaf_keeps_every_other_value(module, path):
    """Setting any key to the value it already has changes nothing: a nested override must
    not rebuild its section from class defaults (it once swapped the user's detector)."""
    base = load_config(module.CONFIG, path)
    dumped = base.model_dump(mode="json")
    for key, value in _leaves(dumped):
        again = load_config(module.CONFIG, path, [_as_override(key, value)])
        assert again.model_dump(mode="json") == dumped, f"override {key} changed other keys"


def test_a_changed_leaf_differs_in_that_key_only():
    from engine.mining.config import MineConfig
    from jobs.demo import DemoConfig

    base = dict(_leaves(load_config(MineConfig).model_dump(mode="json")))
    changed = dict(_leaves(load_config(MineConfig, None, ["scoring.detector.imgsz=320"]).model_dump(mode="json")))
    assert {k for k in base if base[k] != changed[k]} == {"scoring.detector.imgsz"}
    assert changed["scoring.detector.source"] == "runs/base/base.pt"
    demo = dict(_leaves(load_config(DemoConfig).model_dump(mode="json")))
    demo_changed = dict(_leaves(load_config(DemoConfig, None, ["mine.decode.stride=4"]).model_dump(mode="json")))
    assert {k for k in demo if demo[k] != demo_changed[k]} == {"mine.decode.stride"}
    assert demo_changed["mine.selection.mode"] == "false-alarms" and demo_changed["mine.gate.min_cue_kinds"] == 1


def test_a_file_section_merges_into_the_defaults(tmp_path: Path):
    from engine.mining.config import MineConfig

    path = tmp_path / "m.yaml"
    path.write_text("scoring:\n  detector:\n    imgsz: 320\n  cue_classes: [cone, sign]\n")
    cfg = load_config(MineConfig, path)
    assert cfg.scoring.detector.imgsz == 320 and cfg.scoring.detector.source == "runs/base/base.pt"
    assert cfg.scoring.cue_classes == ["cone", "sign"] and cfg.scoring.w_clip == MineConfig().scoring.w_clip
    # a list is replaced whole, not merged element by element
    path.write_text("scoring:\n  workzone_prompts: [a cone]\n")
    assert load_config(MineConfig, path).scoring.workzone_prompts == ["a cone"]


@pytest.mark.reliability("bad config")
def test_a_rule_across_keys_names_them_without_dumping_the_config():
    from engine.mining.config import MineConfig

    with pytest.raises(ConfigError) as err:
        load_config(MineConfig, None, ["scoring.cue_classes=[cone]", "gate.min_cue_kinds=2"])
    text = str(err.value)
    assert "gate.min_cue_kinds (2) is more than the 1 scoring.cue_classes ['cone']" in text
    assert "workzone_prompts" not in text and len(text) < 300
    with pytest.raises(ConfigError, match=r"decode.width_px and decode.height_px must be set together"):
        load_config(MineConfig, None, ["decode.width_px=128"])


def test_a_profile_lies_between_the_defaults_and_the_users_keys(tmp_path: Path):
    from engine.demo.config import QUICK_PROFILE, DemoConfig

    full, quick = load_config(DemoConfig), load_config(DemoConfig, None, ["profile=quick"])
    assert full.profile == "full" and full.clip.epochs == 15 and full.tune.num_samples == 3
    assert not quick.clip.enabled and quick.videos.n_workzone == 4 and quick.tune.num_samples == 2
    assert load_config(DemoConfig, None, QUICK_PROFILE + ["profile=quick"]) == quick
    assert load_config(DemoConfig, None, ["profile=quick", "clip.epochs=3"]).clip.epochs == 3, "the user's key wins"
    assert load_config(DemoConfig, None, ["clip.epochs=3", "profile=quick"]).clip.epochs == 3, "in any order"
    path = tmp_path / "demo.yaml"
    path.write_text("profile: quick\nbase_model:\n  epochs: 5\n")
    from_file = load_config(DemoConfig, path)
    assert from_file.base_model.epochs == 5 and from_file.base_model.lr0 == quick.base_model.lr0
    assert from_file.segmentation.n_authentic == 0 and from_file.task == "detect"
    with pytest.raises(ConfigError, match="profile"):
        load_config(DemoConfig, None, ["profile=fast"])


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("overrides, message", [
    (["task=segment", "profile=quick"], r"task=segment needs segmentation images, and segmentation.n_authentic=0, .*"
                                        r"\(profile=quick makes none: use the full profile\)"),
    (["task=all", "segmentation.n_heldout_forged=0"], r"task=all needs segmentation images, and "
                                                       r"segmentation.n_heldout_forged=0$"),
    (["task=segment", "rounds=2"], r"rounds=2: rounds repeat the detection loop; use task=detect or task=all"),
    (["segmenter.enabled=false"], r"segmenter.enabled=false: the demo's `task` \(detect, segment or all\) decides"),
    (["task=segmentation"], r"task = 'segmentation'"),
])
def test_a_demo_task_without_what_it_needs_is_refused(overrides, message):
    from engine.demo.config import DemoConfig

    with pytest.raises(ConfigError, match=message):
        load_config(DemoConfig, None, overrides)


@pytest.mark.reliability("bad config")
def test_pretrain_with_every_model_switched_off_is_refused():
    from jobs.pretrain import PretrainConfig

    assert not load_config(PretrainConfig, None, ["training.enabled=false", "clip.enabled=false"]).training.enabled
    with pytest.raises(ConfigError, match="training.enabled, clip.enabled and segmenter.enabled are all false"):
        load_config(PretrainConfig, None, ["training.enabled=false", "clip.enabled=false", "segmenter.enabled=false"])


@pytest.mark.reliability("bad config")
def test_the_demo_seed_seeds_every_training_and_a_different_section_seed_is_refused():
    from engine.demo.config import SEEDED_SECTIONS, DemoConfig

    def seeds(cfg) -> dict:
        leaves = dict(_leaves(cfg.model_dump(mode="json")))
        return {key: leaves[f"{key}.seed"] for key in SEEDED_SECTIONS}

    assert set(seeds(load_config(DemoConfig)).values()) == {0}
    assert set(seeds(load_config(DemoConfig, None, ["seed=2"])).values()) == {2}
    # every section with a seed is one the demo sets (a new one must join SEEDED_SECTIONS)
    trainings = {k.rsplit(".", 1)[0] for k, _ in _leaves(DemoConfig().model_dump(mode="json")) if k.endswith(".seed")}
    assert trainings - set(SEEDED_SECTIONS) <= {"build", "train.segment", "tune.train.segment"}
    assert load_config(DemoConfig, None, ["seed=2", "segmenter.seed=2"]).segmenter.seed == 2
    with pytest.raises(ConfigError, match=r"segmenter\.seed=3: the demo's `seed` seeds every training; set seed=3"):
        load_config(DemoConfig, None, ["seed=2", "segmenter.seed=3"])


@pytest.mark.reliability("security")
def test_a_yaml_tag_that_would_run_code_is_refused_not_run(tmp_path: Path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil.yaml: not valid YAML"):
        load_config(SynthConfig, evil)
    assert not marker.exists(), "configs are read with yaml.safe_load"


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize("job", __import__("jobs.cli", fromlist=["job_names"]).job_names())
def test_every_job_names_an_unknown_or_misplaced_key(job):
    import importlib

    module = importlib.import_module(f"jobs.{job}")
    with pytest.raises(ConfigError, match=r"unknown key no_such_key"):
        load_config(module.CONFIG, None, ["no_such_key=1"])
    first = next(iter(module.CONFIG.model_fields))
    with pytest.raises(ConfigError, match=rf"{first}"):
        load_config(module.CONFIG, None, [f"{first}.no_such_leaf=1"])


@pytest.mark.reliability("bad config")
@pytest.mark.parametrize(("job", "override"), [("mine", "input.source="), ("mine", "output.out_dir= "),
                                               ("build", "out_dir="), ("train", "data="), ("demo", "work_dir=")])
def test_an_empty_value_is_an_error_not_the_current_folder(job, override):
    """`key=` from an unset shell variable: `Path("")` is the current folder, where mining read
    every video under it and a build or a demo wrote its outputs."""
    import importlib

    module = importlib.import_module(f"jobs.{job}")
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"{key} = '\s*': an empty value \(write null"):
        load_config(module.CONFIG, None, [override])
    with pytest.raises(ConfigError, match=rf"{key} = '': an empty value"):
        load_config(module.CONFIG, None, [f"{key}=''"])
