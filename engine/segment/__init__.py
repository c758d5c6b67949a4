"""Segmentation: prediction helpers, the training loop and the hard-negative scan."""
