"""Quarry engine: the reusable library behind the `quarry` jobs.

Nothing here does work at import time; jobs call `engine.offline.enable_offline()` first.
"""
