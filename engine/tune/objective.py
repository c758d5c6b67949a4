"""The search objective: one scalar from a run's validation metrics (pure).

    objective = metric + penalty * max(0, constraint_min - constraint_metric) - tiebreak_weight * tiebreak   (min)
    objective = metric - penalty * max(0, constraint_min - constraint_metric) + tiebreak_weight * tiebreak   (max)

The default reads seed 000's success test: the FP rate on hard-negative validation frames,
subject to recall on work-zone frames >= 0.95, with a penalty per point the recall falls short;
a small share of validation mAP50 breaks ties (a validation split holds few hard negatives, so
several trials often reach an FP rate of 0 there).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config import Section


class ObjectiveConfig(Section):
    metric: str = Field("val_hn_fp_rate", description="the reported validation metric to optimise")
    mode: Literal["min", "max"] = "min"
    constraint_metric: str | None = Field("val_frame_recall", description="a metric that must reach constraint_min")
    constraint_min: float = Field(0.95, description="seed 000: recall on true work zones >= 95 %")
    penalty: float = Field(2.0, ge=0.0, description="objective cost per unit the constraint falls short")
    tiebreak_metric: str | None = Field("val_map50", description="a metric that improves the objective a little")
    tiebreak_weight: float = Field(0.1, ge=0.0, description="its weight (keep it small next to the metric's)")


def objective(metrics: dict, cfg: ObjectiveConfig) -> float:
    if cfg.metric not in metrics:
        raise KeyError(f"objective.metric {cfg.metric!r} is not a reported metric ({sorted(metrics)})")
    value = float(metrics[cfg.metric])
    shortfall = 0.0
    if cfg.constraint_metric:
        if cfg.constraint_metric not in metrics:
            raise KeyError(f"objective.constraint_metric {cfg.constraint_metric!r} is not a reported metric")
        shortfall = max(0.0, cfg.constraint_min - float(metrics[cfg.constraint_metric]))
    bonus = 0.0
    if cfg.tiebreak_metric:
        if cfg.tiebreak_metric not in metrics:
            raise KeyError(f"objective.tiebreak_metric {cfg.tiebreak_metric!r} is not a reported metric")
        bonus = cfg.tiebreak_weight * float(metrics[cfg.tiebreak_metric])
    cost = cfg.penalty * shortfall - bonus
    return value + cost if cfg.mode == "min" else value - cost
