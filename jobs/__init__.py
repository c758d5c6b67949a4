"""Quarry jobs: one thin entry point per job (`quarry <job>` == `python -m jobs.<job>`)."""
