"""Config of the review tools (`quarry review <command>`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from engine.config import Section
from engine.mining.inputs import VideoLabel
from engine.models.clip import ClipSpec

COMMANDS = ("stats", "sample", "export", "categorise", "accept", "reject", "sheet")
# seed 000's categories, with the prompts CLIP zero-shot compares a candidate against
DEFAULT_CATEGORIES = {
    "orange_trucks": "an orange truck driving on the road",
    "random_cones": "a few traffic cones with no road works",
    "roadside_signs": "an orange billboard beside the road",
    "weather_artifacts": "sun glare in a dashcam image",
    "other_roadwork_lookalikes": "a person wearing an orange vest",
}


class SelectConfig(Section):
    """Which candidates a command works on (all conditions must hold; empty ones always do)."""

    score_column: str = Field("fused_score", description="the score the band applies to")
    band_low: float | None = Field(None, description="lowest score kept")
    band_high: float | None = Field(None, description="highest score kept")
    categories: list[str] | None = Field(None, description="only these categories ('none': not categorised yet)")
    decisions: list[Literal["accepted", "rejected", "none"]] | None = Field(None, description="only these decisions")
    video_labels: list[VideoLabel] | None = None
    ids: list[str] | None = Field(None, description="only these candidate ids (<video_key>_f<frame>)")

    @model_validator(mode="after")
    def _band(self):
        if self.band_low is not None and self.band_high is not None and self.band_low > self.band_high:
            raise ValueError(f"select.band_low ({self.band_low}) > select.band_high ({self.band_high})")
        return self


class RuleConfig(Section):
    category: str
    where: str = Field(..., description="a pandas query over the candidates' columns, e.g. \"lookalike_kind == 'glare'\"")


class CategoriseConfig(Section):
    method: Literal["interactive", "clip", "rules"] = Field("interactive", description=(
        "interactive: one candidate at a time in the terminal; clip: zero-shot against the category prompts; "
        "rules: the first matching `rules` entry"))
    clip: ClipSpec = ClipSpec()
    rules: list[RuleConfig] = []
    overwrite: bool = Field(False, description="bulk methods: also re-categorise candidates that have a category")
    min_probability: float = Field(0.0, ge=0.0, le=1.0, description="clip: leave a candidate uncategorised below this")


class ReviewConfig(Section):
    """`quarry review <command>`: seed 000's review tools over a candidates manifest."""

    command: Literal["stats", "sample", "export", "categorise", "accept", "reject", "sheet"] = "stats"
    candidates: Path = Field(Path("runs/mine/candidates.parquet"), description="a mining candidates manifest")
    reviews: Path | None = Field(None, description="the append-only answers (default: reviews.jsonl beside the manifest)")
    categories: dict[str, str] = Field(DEFAULT_CATEGORIES, description="category -> CLIP prompt; keys are the categories")
    select: SelectConfig = SelectConfig()
    sample_n: int = Field(10, ge=1, description="sample: candidates from each end of the score range")
    export_dir: Path = Field(Path("runs/export"), description="export: where the images and their manifest go")
    export_mode: Literal["link", "copy"] = Field("link", description="export: symbolic links or copies")
    categorise: CategoriseConfig = CategoriseConfig()
    sheet_dir: Path | None = Field(None, description="sheet: output folder (default: sheet/ beside the manifest)")
    sheet_page_size: int = Field(120, ge=1, le=5000, description="sheet: thumbnails per page")
    thumb_px: int = Field(192, ge=32, le=1024, description="sheet: thumbnail width")

    @model_validator(mode="after")
    def _check(self):
        if not self.categories:
            raise ValueError("categories must name at least one category")
        for rule in self.categorise.rules:
            if rule.category not in self.categories:
                raise ValueError(f"categorise.rules: category {rule.category!r} is not one of {sorted(self.categories)}")
        return self

    @property
    def reviews_path(self) -> Path:
        return self.reviews or Path(self.candidates).parent / "reviews.jsonl"
