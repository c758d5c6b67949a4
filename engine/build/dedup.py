"""Near-duplicate removal by embedding similarity (pure numpy)."""

from __future__ import annotations

import numpy as np


def near_duplicates(embeddings: np.ndarray, threshold: float, groups=None) -> np.ndarray:
    """Greedy, in row order (put the rows to prefer first): a row whose cosine similarity to an
    already kept row of its group is >= `threshold` is a duplicate. `groups` (one value per row,
    default: one group) keeps rows that must not stand in for each other apart. Returns, per row,
    the index of the kept row it duplicates, or -1 for rows that are kept."""
    emb = np.asarray(embeddings, np.float64)
    if len(emb) == 0:
        return np.zeros(0, np.int64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    groups = np.zeros(len(emb), np.int64) if groups is None else np.asarray(groups)
    duplicate_of = np.full(len(emb), -1, np.int64)
    kept: dict = {}  # group -> (kept row indices, their embeddings)
    for i, (e, g) in enumerate(zip(emb, groups)):
        rows, kept_emb = kept.get(g, ([], np.empty((0, emb.shape[1]))))
        if rows:
            sims = kept_emb @ e
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                duplicate_of[i] = rows[j]
                continue
        kept[g] = (rows + [i], np.vstack([kept_emb, e]))
    return duplicate_of


def split_of(group: str, val_fraction: float, seed: int = 0) -> str:
    """`train` or `val` for a group (a video), from a hash of its name: stable, and every
    frame of a video lands in the same split."""
    import hashlib

    h = int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"
