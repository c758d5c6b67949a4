"""Config of the search (`quarry tune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from engine.build.config import WeightRules
from engine.config import Section
from engine.raycluster import RayConfig
from engine.tracking import TrackingConfig
from engine.train.config import DetectTrainConfig, ScalingSection, TrainConfig
from engine.tune.objective import ObjectiveConfig
from engine.tune.trial import with_values


class Param(Section):
    """One dimension of the search space: a dotted key of the training config and its distribution."""

    key: str = Field(..., min_length=1, description="e.g. detect.fp_penalty, reweight.category.orange_trucks")
    kind: Literal["uniform", "loguniform", "randint", "choice"] = "uniform"
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = Field(None, description="choice: the values")

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "choice":
            if not self.values:
                raise ValueError("a choice needs values")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"{self.kind} needs low < high (got {self.low}, {self.high})")
        elif self.kind == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


DEFAULT_SPACE = [
    Param(key="detect.fp_penalty", kind="loguniform", low=0.3, high=5.0),
    Param(key="detect.lr", kind="loguniform", low=3e-4, high=3e-3),
    Param(key="reweight.kind.hard_negative", kind="uniform", low=1.0, high=6.0),
]


class TuneConfig(Section):
    """`quarry tune`: search fine-tuning knobs on Ray Tune; each trial runs Ray Train inside."""

    train: TrainConfig = Field(TrainConfig(detect=DetectTrainConfig(epochs=6), reweight=WeightRules(),
                                           objective=ObjectiveConfig(), scaling=ScalingSection(cpus_per_worker=0.95)),
                               description="every trial's training config, before the sampled values are set")
    space: list[Param] = Field(DEFAULT_SPACE, min_length=1, description=(
        "the searched keys of `train` and their distributions (a list: its keys contain dots)"))
    num_samples: int = Field(4, ge=1, description="trials")
    max_concurrent_trials: int = Field(1, ge=1)
    search: Literal["random", "optuna"] = Field("random", description="random sampling, or Optuna's TPE")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="ASHA stops poor trials early; fifo runs all to the end")
    grace_period_epochs: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    trial_cpus: float = Field(0.01, gt=0.0, le=64.0, description=(
        "CPUs the trial function holds while its Ray Train workers (train.scaling) run"))
    start_from_train: bool = Field(True, description=(
        "the first trial runs train's own values of the searched keys (Tune's points_to_evaluate), so the search's "
        "best is never worse, by the objective, than the unsearched config"))
    seed: int = Field(0, ge=0)
    out_dir: Path = Path("runs/tune")
    resume: bool = Field(True, description="continue an interrupted search found in out_dir")
    model_name: str = Field("quarry-detector", description="the best trial's model is registered here ...")
    alias: str = Field("challenger", description="... with this alias")
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-tune")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _check(self):
        if self.train.task != "detect":
            raise ValueError("tune searches detection fine-tuning (train.task=detect)")
        if self.train.objective is None:
            raise ValueError("train.objective is required: it is what the search optimises")
        base = self.train.model_dump(mode="json")
        keys = [p.key for p in self.space]
        if len(set(keys)) != len(keys):
            raise ValueError(f"space: a key is listed twice ({keys})")
        for key in keys:
            if not _settable(base, key.split(".")):
                raise ValueError(f"space: {key!r} is not a key of train")
        for end in (0, -1):  # a value the config refuses (`reweight.kind.hard_negatve`) fails every trial
            probe = {p.key: p.values[end] if p.kind == "choice" else (p.low, p.high)[end] for p in self.space}
            try:
                TrainConfig.model_validate(with_values(base, probe))
            except ValidationError as exc:
                first = exc.errors()[0]
                value = "" if isinstance(first["input"], dict) else f" = {first['input']!r}"
                raise ValueError(f"space: a trial's train.{'.'.join(map(str, first['loc']))}{value} would be refused: "
                                 f"{first['msg'].removeprefix('Value error, ')}") from None
        return self


FREE_MAPPINGS = {("reweight", "kind"), ("reweight", "category"), ("reweight", "metadata")}  # any key may be added


def _settable(node, parts: list[str], path: tuple = ()) -> bool:
    """Whether the dotted key `parts` names a value of `node` (a dumped config)."""
    if path[:2] in FREE_MAPPINGS and len(path) >= 2:
        return True
    if not isinstance(node, dict) or parts[0] not in node:
        return False
    return True if len(parts) == 1 else _settable(node[parts[0]], parts[1:], path + (parts[0],))


def train_values(cfg: TuneConfig) -> dict:
    """The searched keys' values in `cfg.train`; a weight its rules do not name is 1 (weights.py)."""
    values, train = {}, cfg.train.model_dump(mode="json")
    for param in cfg.space:
        node = train
        for part in param.key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[param.key] = 1.0 if node is None else node
    return values
