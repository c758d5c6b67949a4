"""The temporal multi-cue gate and the zone state, as pure functions of a video's timeline.

Input rows are the sampled frames of one video, sorted by frame number. A cue kind (a cue
class of the detector) *persists* at row i when it was present in at least `min_frames`
of the last `window_frames` rows (i included). The gate passes when at least
`min_cue_kinds` kinds persist (seed 000's "multi-cue AND gate"; its most common case is
2 sustained cues). Windows count sampled rows, so they scale with the stride.

A fused score that is not a number (a model that overflowed, say) counts as 0 in the
windowed mean, so one bad frame cannot turn every later gate confidence into NaN;
selection gives such a frame the reason `invalid_score`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEMANTIC_STATES = ("OUT", "APPROACHING", "INSIDE", "EXITING")


@dataclass(frozen=True)
class GateParams:
    min_cue_kinds: int = 2  # K: kinds that must persist at once
    min_frames: int = 3  # N: rows a kind must be present in, within the window
    window_frames: int = 5  # W: rows in the window
    n_kinds: int = 4  # cue classes are bits 0..n_kinds-1 of cue_mask
    persistence_weight: float = 0.6  # gate confidence = w * persistence + (1 - w) * windowed fused score


@dataclass(frozen=True)
class GateResult:
    sustained_cues: np.ndarray  # (n,) number of persisting kinds
    gate_pass: np.ndarray  # (n,) bool
    gate_confidence: np.ndarray  # (n,) in [0, 1]
    semantic_state: np.ndarray  # (n,) str


def _rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last `window` rows including the current one (shorter at the start)."""
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), x]), axis=0)
    idx = np.arange(1, len(x) + 1)
    return c[idx] - c[np.maximum(idx - window, 0)]


def run_gate(cue_mask: np.ndarray, fused_score: np.ndarray, params: GateParams) -> GateResult:
    """Gate every row of one video's timeline (rows sorted by frame)."""
    cue_mask = np.asarray(cue_mask, np.int64).reshape(-1)
    fused = np.asarray(fused_score, np.float64).reshape(-1)
    fused = np.where(np.isfinite(fused), fused, 0.0)
    n = len(cue_mask)
    present = ((cue_mask[:, None] >> np.arange(params.n_kinds)[None, :]) & 1).astype(np.float64)
    counts = _rolling_sum(present, params.window_frames) if n else present
    sustained = (counts >= params.min_frames).sum(axis=1).astype(np.int64)
    gate_pass = sustained >= params.min_cue_kinds
    top_k = np.sort(counts, axis=1)[:, ::-1][:, : params.min_cue_kinds] / params.window_frames
    persistence = top_k.mean(axis=1) if n else np.zeros(0)
    window_rows = np.minimum(np.arange(1, n + 1), params.window_frames)
    fused_mean = _rolling_sum(fused, params.window_frames) / window_rows if n else np.zeros(0)
    w = params.persistence_weight
    confidence = np.clip(w * persistence + (1 - w) * fused_mean, 0.0, 1.0)
    return GateResult(sustained, gate_pass, confidence, semantic_states(sustained, gate_pass, params.window_frames))


def semantic_states(sustained: np.ndarray, gate_pass: np.ndarray, window_frames: int) -> np.ndarray:
    """OUT -> APPROACHING (some cue persists) -> INSIDE (gate passes) -> EXITING (gate lost)
    -> OUT (no cue persists). APPROACHING falls back to OUT after a window without evidence;
    EXITING goes back to INSIDE if the gate passes again."""
    states = np.empty(len(sustained), dtype=object)
    state, quiet = "OUT", 0
    for i, (s, g) in enumerate(zip(sustained, gate_pass)):
        quiet = 0 if s > 0 else quiet + 1
        if g:
            state = "INSIDE"
        elif state == "INSIDE":
            state = "EXITING"
        elif state == "EXITING" and s == 0:
            state = "OUT"
        elif state == "OUT" and s > 0:
            state = "APPROACHING"
        elif state == "APPROACHING" and quiet >= window_frames:
            state = "OUT"
        states[i] = state
    return states.astype(str)
