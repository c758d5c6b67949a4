"""Benchmarks (not tests): each prints ratios measured in one run and writes JSON."""
