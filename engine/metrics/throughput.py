"""Throughput over a steady window (pure): the same definition for the pipeline, the plain loop
and the frame-by-frame loop, so their steady rates compare."""

from __future__ import annotations

import numpy as np

STEADY_WINDOW = (0.1, 0.9)  # the share of all items done when the window opens and when it closes


def steady_rate(times_s, counts, window: tuple[float, float] = STEADY_WINDOW) -> float | None:
    """Items per second between the moments `window[0]` and `window[1]` of all items were done.

    `times_s[i]` is when `counts[i]` items were done (a scored batch arriving). Leaving out the
    first 10 % leaves out start-up (processes, imports, models) and the first actors' ramp;
    leaving out the last 10 % leaves out the tail where actors run dry. None when the window
    holds no time (everything in one arrival)."""
    times = np.asarray(times_s, np.float64)
    done = np.cumsum(np.asarray(counts, np.float64)[np.argsort(times, kind="stable")])
    times = np.sort(times, kind="stable")
    if len(times) == 0 or done[-1] <= 0:
        return None
    opens = int(np.searchsorted(done, window[0] * done[-1], side="left"))
    closes = int(np.searchsorted(done, window[1] * done[-1], side="left"))
    seconds = times[closes] - times[opens]
    return float((done[closes] - done[opens]) / seconds) if seconds > 0 else None
