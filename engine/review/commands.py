"""The review commands over a candidates manifest: stats, sample, export, accept/reject.
Each takes the manifest joined with the current reviews (`with_reviews`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from engine.config import ConfigError
from engine.mining.summary import summarize_candidates
from engine.review.config import ReviewConfig, SelectConfig
from engine.review.reviews import append_reviews, with_reviews
from engine.storage import write_table


def load_candidates(cfg: ReviewConfig) -> pd.DataFrame:
    """The manifest with its reviews, and each snapshot's absolute path in `image`."""
    path = Path(cfg.candidates)
    if not path.is_file():
        raise ConfigError(f"candidates = {str(path)!r}: no such manifest (run `quarry mine` first)")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = sorted({"video_key", "frame", "snapshot_path"} - set(table.columns))
    if missing:
        raise ConfigError(f"candidates = {str(path)!r}: not a candidates manifest (missing {missing})")
    table = with_reviews(table, cfg.reviews_path)
    table["image"] = [str(path.parent / p) for p in table["snapshot_path"]]
    return table


def select(table: pd.DataFrame, s: SelectConfig, categories: list[str]) -> pd.DataFrame:
    """The candidates every condition of `s` keeps. A category that is neither one of
    `categories` (the configured ones) nor in the table, or an id that is not in the table, is a
    typo that would select nothing, so it is an error."""
    keep = pd.Series(True, index=table.index)
    if s.band_low is not None or s.band_high is not None:
        if s.score_column not in table.columns:
            raise ConfigError(f"select.score_column = {s.score_column!r}: no such column "
                              f"(numeric columns: {sorted(table.select_dtypes('number').columns)})")
        score = table[s.score_column]
        keep &= score.between(s.band_low if s.band_low is not None else -float("inf"),
                              s.band_high if s.band_high is not None else float("inf"))
    if s.categories is not None:
        unknown = sorted(set(s.categories) - set(categories) - set(table["category"].dropna()) - {"none"})
        if unknown:
            raise ConfigError(f"select.categories: {unknown} not a category (the categories: {sorted(categories)}, "
                              f"or 'none' for not categorised yet)")
        keep &= table["category"].fillna("none").isin(s.categories)
    if s.decisions is not None:
        keep &= table["decision"].fillna("none").isin(s.decisions)
    if s.video_labels is not None:
        keep &= table["video_label"].isin(s.video_labels)
    if s.ids is not None:
        unknown = sorted(set(s.ids) - set(table["candidate_id"]))
        if unknown:
            example = f", e.g. {table['candidate_id'].iloc[0]!r}" if len(table) else ""
            raise ConfigError(f"select.ids: {unknown[:5]}{' ...' if len(unknown) > 5 else ''} not in the manifest "
                              f"(an id is <video_key>_f<frame>{example})")
        keep &= table["candidate_id"].isin(s.ids)
    return table[keep]


def stats(table: pd.DataFrame) -> dict:
    """Seed 000's distributions plus review progress."""
    counts = lambda column: {str(k): int(v) for k, v in table[column].astype(object).fillna("none").value_counts().items()}  # noqa: E731
    return {"candidates": len(table), "videos": int(table["video_key"].nunique()),
            "by_video_label": counts("video_label"), "by_mode": counts("mode") if "mode" in table else {},
            "by_category": counts("category"), "by_decision": counts("decision"),
            "distributions": summarize_candidates(table, 1) if len(table) else {}}


def sample(table: pd.DataFrame, column: str, n: int) -> dict:
    """The `n` highest and `n` lowest candidates by `column` (seed 000's sample script)."""
    if column not in table.columns:
        raise ConfigError(f"select.score_column = {column!r}: no such column")
    ranked = table.sort_values([column, "candidate_id"], ascending=[False, True])
    cols = ["candidate_id", column, "semantic_state", "video_label", "category", "image"]
    cols = [c for c in cols if c in table.columns]
    return {"column": column, "high": ranked.head(n)[cols].to_dict("records"),
            "low": ranked.tail(n)[cols].iloc[::-1].to_dict("records")}


def export(table: pd.DataFrame, out_dir: Path, mode: str) -> dict:
    """Link or copy the selected snapshots into `out_dir/images/`, with `out_dir/manifest.parquet`
    (and .csv) listing them under their new paths."""
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths, missing = [], []
    for cid, source in zip(table["candidate_id"], table["image"]):
        target = images / f"{cid}.jpg"
        if not Path(source).is_file():
            missing.append(source)
            paths.append(None)
            continue
        target.unlink(missing_ok=True)
        if mode == "link":
            os.symlink(Path(source).resolve(), target)
        else:
            shutil.copy2(source, target)
        paths.append(f"images/{target.name}")
    exported = table.assign(exported_path=paths).dropna(subset=["exported_path"])
    write_table(exported, out_dir / "manifest.parquet", csv=True)
    return {"exported": len(exported), "missing_images": missing, "out_dir": str(out_dir), "mode": mode}


def decide(table: pd.DataFrame, decision: str, reviews_path: Path) -> dict:
    """Record `accepted` or `rejected` for every selected candidate."""
    n = append_reviews(reviews_path, [{"candidate_id": cid, "field": "decision", "value": decision, "source": "cli"}
                                      for cid in table["candidate_id"]])
    return {decision: n, "reviews": str(reviews_path)}
