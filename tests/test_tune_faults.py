"""`quarry tune` under faults, run as a user runs it (`python -m jobs.tune` in its own process):
a trial whose actor is killed mid-fit is started again and continues from its checkpoint; a
search stopped with Ctrl-C after its first trial registers nothing, exits 4, and the same
command finishes it without training the finished trial again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import kill_first_titled

from engine.train.trainer import latest_checkpoint

pytestmark = pytest.mark.slow


class TrialKiller(threading.Thread):
    """Kills the first trial's actor once it has a checkpoint, then interrupts the search (SIGINT,
    as Ctrl-C does) once one trial has finished."""

    def __init__(self, out: Path, proc: subprocess.Popen):
        super().__init__(daemon=True)
        self.out, self.proc, self.killed, self.interrupted, self.stop = out, proc, [], False, threading.Event()

    def run(self):
        while not self.stop.is_set() and self.proc.poll() is None:
            if not self.killed and list(self.out.glob("trials/*/ray/*/checkpoint_*")):
                killed = kill_first_titled(self.proc.pid, "ImplicitFunc")  # the search's own Ray's
                self.killed += [killed] if killed else []
            if self.killed and not self.interrupted and self._finished_trials() >= 1:
                self.proc.send_signal(signal.SIGINT)
                self.interrupted = True
            time.sleep(0.2)

    def _finished_trials(self) -> int:
        """Trials with a checkpoint of their last epoch (2)."""
        done = set()
        for history in self.out.glob("trials/*/ray/*/checkpoint_*/history.json"):
            try:
                if json.loads(history.read_text())[-1]["epoch"] == 2:
                    done.add(history.parents[3].name)
            except (ValueError, IndexError, KeyError):  # being written
                pass
        return len(done)


@pytest.mark.reliability("fault")
@pytest.mark.reliability("resume")
def test_a_killed_trial_restarts_and_an_interrupted_search_resumes(tiny_dataset, tmp_path):
    data, work = tiny_dataset
    out = tmp_path / "tune"
    command = [sys.executable, "-m", "jobs.tune", f"train.data={data}", f"train.detect.model={work / 'base' / 'base.pt'}",
               f"out_dir={out}", "num_samples=2", "scheduler=fifo", "train.detect.epochs=2",
               "train.detect.samples_per_epoch=32", "train.detect.batch=8", "train.max_failures=2",
               f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "ray.num_cpus=2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[1])
    killer = TrialKiller(out, proc)
    killer.start()
    try:
        code = proc.wait(timeout=480)
    finally:
        killer.stop.set()
        killer.join()
        if proc.poll() is None:
            proc.kill()
    first = (tmp_path / "first.log").read_text()
    assert killer.killed, "a trial's actor was killed mid-fit"
    assert killer.interrupted, f"the search was interrupted after one trial\n{first[-3000:]}"
    assert code == 4, first[-3000:]
    assert "trials unfinished; the same command resumes it" in first.splitlines()[-1], first[-2000:]
    assert "registered" not in first.split("quarry tune:")[-1]

    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=480)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "(resumed)" in second.stdout and "registered quarry-detector version 1 " in second.stdout, second.stdout
    rows = [line for line in second.stdout.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert len(rows) == 2 and all(row.split("|")[2].strip() == "2" for row in rows), rows  # each trial: 2 epochs
    for trial in out.glob("trials/*"):
        history = json.loads((latest_checkpoint(trial) / "history.json").read_text())
        assert [h["epoch"] for h in history] == [1, 2], (trial.name, "every epoch counted once")
