"""Config of the dataset builder (`quarry build`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from engine.config import Section
from engine.models.clip import ClipSpec

# The kinds a built set's samples have (engine/build/detection.py, segmentation.py; label's sample_kind)
SAMPLE_KINDS = ("positive", "background", "hard_negative", "pseudo_labelled", "edge_case", "forged")


class WeightRules(Section):
    """Sampling weights: kind x category x metadata (x forged area, segmentation); see weights.py."""

    kind: dict[str, float] = Field(
        {"positive": 1.0, "background": 1.0, "hard_negative": 2.0, "pseudo_labelled": 1.0, "edge_case": 1.0,
         "forged": 1.0},
        description="per sample kind (seed 002: hard negatives 2.0; seed 003: 5.0)")
    category: dict[str, float] = Field({}, description="per review category, e.g. {orange_trucks: 2.0}")
    metadata: dict[str, dict[str, float]] = Field({}, description="per metadata value, e.g. {weather: {rain: 2.0}}")
    forged_area: list[tuple[float, float]] = Field(
        [(0.01, 3.0), (0.05, 2.0), (float("inf"), 1.0)],
        description="segmentation: [(forged area share below, weight), ...] ascending (seed 003)")

    @field_validator("kind")
    @classmethod
    def _known_kinds(cls, weights: dict[str, float]) -> dict[str, float]:
        """A misspelt kind (`hard_negatve: 5`) would leave the hard negatives at their default weight."""
        unknown = sorted(set(weights) - set(SAMPLE_KINDS))
        if unknown:
            raise ValueError(f"{unknown} not a sample kind (the kinds: {', '.join(SAMPLE_KINDS)})")
        return weights


class DetectionInputs(Section):
    base_data: Path | None = Field(Path("runs/world/detection/data.yaml"), description=(
        "the base model's YOLO data.yaml (its train/val split is kept), or an earlier `quarry build` set's "
        "(its samples keep their kind and category: a second round grows the first one's set); null: none"))
    labels: Path | None = Field(Path("runs/label/labels.parquet"), description="`quarry label`'s labels.parquet; null: none")
    candidates: Path | None = Field(Path("runs/mine/candidates.parquet"), description=(
        "a mining candidates manifest; its reviewed candidates become background images; null: none"))
    decisions: list[Literal["accepted", "rejected", "none"]] = Field(["accepted"], description=(
        "which review decisions make a candidate a hard negative ('none': not decided yet)"))
    edge_cases: Path | None = Field(None, description=(
        "an edge-case mining manifest (mode edge-cases: frames the model is unsure of); each candidate a labeller "
        "has labelled becomes an `edge_case` sample with those labels; null: none"))
    edge_labels: Path | None = Field(None, description=(
        "the labeller's answers for edge_cases: one YOLO label file per candidate, named after its snapshot "
        "(<candidate_id>.txt, e.g. workzone_0000_f28.txt; an empty file: nothing there); null: labels/ beside "
        "the edge_cases manifest"))


class SegmentationInputs(Section):
    index: Path = Field(Path("runs/world/segmentation/index.parquet"), description=(
        "table of images: image, mask (forged), kind (forged/authentic), forgery_area_frac"))
    hard_negatives: Path | None = Field(None, description=(
        "`quarry scan`'s hard-negative table (column image or path); null: every authentic image of the index"))


class BuildConfig(Section):
    """`quarry build`: merge hard negatives into a training set with a sampling-weights table."""

    task: Literal["detect", "segment"] = "detect"
    detect: DetectionInputs = DetectionInputs()
    segment: SegmentationInputs = SegmentationInputs()
    out_dir: Path = Field(Path("runs/dataset"), description="images/, labels/ or masks/, data.yaml, samples.parquet")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of videos (new samples) held for validation")
    seed: int = Field(0, ge=0, description="seed of the split")
    link: bool = Field(True, description="symbolic links to the images instead of copies")
    dedup: bool = Field(True, description=(
        "drop near-duplicate new frames by CLIP-embedding similarity (frames with objects and frames without apart)"))
    dedup_threshold: float = Field(0.995, gt=0.0, le=1.0, description=(
        "cosine similarity at which a frame is a duplicate (demo CLIP: frames 1/3 s apart median 0.997, "
        "different videos 99.9th percentile 0.986)"))
    clip: ClipSpec = ClipSpec()
    weights: WeightRules = WeightRules()
    exports: list[Literal["coco", "labelstudio"]] = Field(["coco", "labelstudio"], description="detection exports")

    @model_validator(mode="after")
    def _check(self):
        d = self.detect
        if self.task == "detect" and all(v is None for v in (d.base_data, d.labels, d.candidates, d.edge_cases)):
            raise ValueError("detect: give at least one of detect.base_data, detect.labels, detect.candidates, "
                             "detect.edge_cases")
        return self
