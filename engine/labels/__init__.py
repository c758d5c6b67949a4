"""Pseudo-labels with false-alarm rules (`quarry label`)."""
