"""The steady-window rate against rates worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.metrics.throughput import steady_rate


def test_a_constant_rate_after_a_start_up_is_found_whatever_the_start_up():
    for startup_s in (0.0, 5.0, 60.0):
        times = startup_s + np.arange(1, 101) * 0.5  # 10 frames every 0.5 s: 20 frames/s
        assert steady_rate(times, [10] * 100) == pytest.approx(20.0)


def test_the_window_leaves_out_a_slow_ramp_and_a_slow_tail():
    # 10 % of the frames crawl in over 50 s (one actor up), 80 % at 100 frames/s, the last 10 % slowly
    times = [50.0] + list(50.0 + np.arange(1, 9) * 1.0) + [158.0]
    counts = [100] + [100] * 8 + [100]
    # the window opens at 100 frames (t=50) and closes at 900 (t=58): 800 frames in 8 s
    assert steady_rate(times, counts) == pytest.approx(100.0)


def test_unsorted_arrivals_and_one_arrival():
    assert steady_rate([3.0, 1.0, 2.0], [10, 10, 10]) == pytest.approx(10.0)
    assert steady_rate([4.0], [100]) is None
    assert steady_rate([], []) is None
