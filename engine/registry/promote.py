"""Promotion: the `challenger` and the `champion` evaluated on the same held-out data; the
`champion` alias moves to the challenger only when every rule of the gate holds. The decision
and each rule's numbers are tags on the challenger's version; a refusal leaves the champion
where it was. Aliases only, never the deprecated stages. Re-running is safe."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydantic import Field, field_validator

from engine.config import ConfigError, Section
from engine.errors import Refused
from engine.evaluate.config import ModelRef
from engine.evaluate.run import HEADLINE_METRICS, EvaluateConfig, headline, run_evaluation
from engine.registry.resolve import registered_version
from engine.tracking import REGISTRY_STORE_DIR, TrackingConfig, resolve_tracking_uri

log = logging.getLogger("quarry.promote")


class GateConfig(Section):
    """Every rule must hold. Metrics are `quarry evaluate`'s headline names."""

    recall_metric: str = Field("event_recall", description="event_recall (videos), frame_recall or object_recall (frames)")
    min_recall: float = Field(0.95, ge=0.0, le=1.0, description="seed 000: recall on true work zones >= 95 %")
    fp_metric: str = Field("fp_rate", description="fp_rate (frames without objects), false_alarms_per_video ...")
    fp_margin: float = Field(0.0, ge=0.0, lt=1.0, description="the challenger's FP must be below champion x (1 - margin)")
    map_metric: str = Field("map50", description="map50 or map50_95")
    map_tolerance: float = Field(0.01, ge=0.0, le=1.0, description="the challenger's mAP may be this much below the champion's")

    @field_validator("recall_metric", "fp_metric", "map_metric")
    @classmethod
    def _a_headline_metric(cls, name: str) -> str:
        """A typo would fail only after the evaluation (minutes): name the choices before it."""
        if name not in HEADLINE_METRICS:
            raise ValueError(f"not a metric `quarry evaluate` reports (one of {', '.join(HEADLINE_METRICS)})")
        return name


class PromoteConfig(Section):
    """`quarry promote`: move `champion` to the `challenger` when the gate holds."""

    model_name: str = "quarry-detector"
    challenger: str = Field("challenger", description="alias of the candidate")
    champion: str = Field("champion", description="alias of the model in service")
    gate: GateConfig = GateConfig()
    evaluation: EvaluateConfig = Field(EvaluateConfig(), description=(
        "the held-out data both are judged on (promote sets its models, and its out_dir to <out_dir>/evaluate)"))
    out_dir: Path = Path("runs/promote")
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-promote")


def judge(gate: GateConfig, challenger: dict, champion: dict | None) -> list[dict]:
    """Each rule with its numbers: {rule, passed, detail}. Pure."""
    def value(row: dict, key: str) -> float:
        if row.get(key) is None:
            raise ConfigError(f"gate: metric {key!r} was not evaluated (have {sorted(k for k, v in row.items() if v is not None)})")
        return float(row[key])

    rules = []
    recall = value(challenger, gate.recall_metric)
    rules.append({"rule": "recall", "passed": recall >= gate.min_recall,
                  "detail": f"{gate.recall_metric} {recall:.4f} >= {gate.min_recall}"})
    if champion is not None:
        new, old = value(challenger, gate.fp_metric), value(champion, gate.fp_metric)
        bound = old * (1 - gate.fp_margin)
        rules.append({"rule": "fp", "passed": new <= bound and (new < old or old == 0.0),
                      "detail": f"{gate.fp_metric} {new:.4f} vs champion {old:.4f} (must be <= {bound:.4f} and lower)"})
        new_map, old_map = value(challenger, gate.map_metric), value(champion, gate.map_metric)
        rules.append({"rule": "map", "passed": new_map >= old_map - gate.map_tolerance,
                      "detail": f"{gate.map_metric} {new_map:.4f} >= champion {old_map:.4f} - {gate.map_tolerance}"})
    return rules


def promote(cfg: PromoteConfig) -> dict:
    from mlflow.tracking import MlflowClient

    out = Path(cfg.out_dir)
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri, REGISTRY_STORE_DIR)
    client = MlflowClient(uri)
    challenger = registered_version(uri, f"models:/{cfg.model_name}@{cfg.challenger}")
    if challenger is None:
        raise ConfigError(f"model_name = {cfg.model_name!r}: no version has the alias @{cfg.challenger} in {uri}")
    champion = registered_version(uri, f"models:/{cfg.model_name}@{cfg.champion}")
    base = {"model": cfg.model_name, "challenger_version": int(challenger.version),
            "champion_version": int(champion.version) if champion else None, "tracking_uri": uri}
    if champion is not None and champion.version == challenger.version:
        log.info("version %s is already @%s: nothing to do", challenger.version, cfg.champion)
        return {**base, "decision": "already_champion", "rules": []}
    evaluation = cfg.evaluation.model_copy(deep=True)
    evaluation.out_dir = out / "evaluate"
    evaluation.tracking = cfg.tracking.model_copy(update={"tracking_uri": uri})
    evaluation.models = [ModelRef(name="challenger", source=f"models:/{cfg.model_name}/{challenger.version}")]
    if champion is not None:
        evaluation.models.append(ModelRef(name="champion", source=f"models:/{cfg.model_name}/{champion.version}"))
    result = run_evaluation(evaluation)
    rows = {name: headline(m) for name, m in result["models"].items()}
    rules = judge(cfg.gate, rows["challenger"], rows.get("champion"))
    promoted = all(r["passed"] for r in rules)
    tags = {"quarry.promotion.decision": "promoted" if promoted else "refused",
            "quarry.promotion.at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "quarry.promotion.against": f"version {champion.version}" if champion else "no champion",
            **{f"quarry.promotion.rule.{r['rule']}": ("pass: " if r["passed"] else "fail: ") + r["detail"] for r in rules}}
    for key, val in tags.items():
        client.set_model_version_tag(cfg.model_name, challenger.version, key, val)
    summary = {**base, "decision": tags["quarry.promotion.decision"], "rules": rules, "metrics": rows,
               "report": result["report"]}
    if promoted:
        client.set_registered_model_alias(cfg.model_name, cfg.champion, challenger.version)
        log.info("promoted %s version %s to @%s", cfg.model_name, challenger.version, cfg.champion)
        return summary
    failed = "; ".join(f"{r['rule']}: {r['detail']}" for r in rules if not r["passed"])
    raise Refused(f"{cfg.model_name} version {challenger.version} not promoted (champion stays "
                  f"{'version ' + str(champion.version) if champion else 'unset'}): {failed}", summary)
