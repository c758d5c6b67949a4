"""Evaluation of detectors and segmenters on held-out data."""
