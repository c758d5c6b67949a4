"""Sampling weights from rules over the sample table (pure pandas/numpy).

    weight = kind_weight[kind] x category_weight[category] x prod over metadata rules of
             metadata_weight[column][value] x area_weight (segmentation: by forged-area band)

A value a rule does not name weighs 1. Seed 003's forged-area weights: < 1 % of the image 3.0,
1-5 % 2.0, > 5 % 1.0; its hard negatives 5.0 (seed 002 used 2.0). Seed 004 weighted by region
and weather.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def sample_weights(samples: pd.DataFrame, kind_weights: dict[str, float], category_weights: dict[str, float],
                   metadata_weights: dict[str, dict[str, float]],
                   area_bands: list[tuple[float, float]] | None = None) -> np.ndarray:
    """The sampling weight of every row. `area_bands`: [(upper bound of forgery_area_frac,
    weight), ...] ascending; rows with a forged area get the weight of the first band they fit."""
    weight = samples["kind"].map(lambda k: kind_weights.get(k, 1.0)).to_numpy(np.float64).copy()
    if "category" in samples:
        weight *= samples["category"].map(lambda c: category_weights.get(c, 1.0) if isinstance(c, str) else 1.0).to_numpy()
    for column, table in metadata_weights.items():
        if column in samples:
            weight *= samples[column].map(lambda v: table.get(str(v), 1.0) if pd.notna(v) else 1.0).to_numpy(np.float64)
    if area_bands and "forgery_area_frac" in samples:
        area = samples["forgery_area_frac"].to_numpy(np.float64)
        forged = np.isfinite(area) & (area > 0)
        band_weight = np.ones(len(samples))
        for i in np.flatnonzero(forged):
            band_weight[i] = next((w for upper, w in area_bands if area[i] < upper), area_bands[-1][1])
        weight *= band_weight
    return weight


def unmatched_rules(samples: pd.DataFrame, category_weights: dict[str, float],
                    metadata_weights: dict[str, dict[str, float]]) -> list[str]:
    """The category and metadata weight rules that no sample matches, as their config keys: a
    misspelt category, column or value weighs nothing, and nothing else would show it."""
    categories = set(samples["category"].dropna().astype(str)) if "category" in samples else set()
    unmatched = [f"weights.category.{c}" for c in category_weights if c not in categories]
    for column, table in metadata_weights.items():
        if column not in samples:
            unmatched.append(f"weights.metadata.{column}")
            continue
        values = set(samples[column].dropna().astype(str))
        unmatched += [f"weights.metadata.{column}.{v}" for v in table if v not in values]
    return unmatched


def effective_shares(samples: pd.DataFrame, weights: np.ndarray, column: str = "kind") -> dict[str, dict]:
    """Per value of `column`: its share of the rows and its share of the draws once weighted."""
    total = float(np.sum(weights)) or 1.0
    out = {}
    for value, rows in samples.groupby(column, dropna=False).indices.items():
        out[str(value)] = {"samples": len(rows), "share": round(len(rows) / len(samples), 4),
                           "weighted_share": round(float(np.sum(weights[rows])) / total, 4)}
    return out
