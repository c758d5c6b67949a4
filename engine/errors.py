"""Outcomes a job reports as a one-line message and a non-zero exit, without a traceback."""


class Refused(RuntimeError):
    """The job ran and decided no: e.g. a promotion gate that did not hold (exit code 3)."""

    exit_code = 3

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}  # the decision and its reasons, e.g. each gate rule with its numbers


class Interrupted(RuntimeError):
    """The job stopped before it finished (Ctrl-C, a lost driver); its state is kept and the same
    command resumes it (exit code 4)."""

    exit_code = 4
