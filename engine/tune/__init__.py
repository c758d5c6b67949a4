"""Hyperparameter search on Ray Tune (`quarry tune`)."""
