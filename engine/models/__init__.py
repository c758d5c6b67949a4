"""Offline model builders: Ultralytics detectors, open_clip encoders, smp segmenters.

Each builder sets the offline switches before importing its library, accepts only local
paths or architectures, and raises `ModelError` with the offending value otherwise.
"""


class ModelError(ValueError):
    """A model could not be built from what the user named; the message says why."""
