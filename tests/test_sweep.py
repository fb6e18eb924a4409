"""Sweeps: search-space checks, two workers sharing one SQLite study, resume after a killed worker."""
import subprocess
import sys
import time

import optuna
import pytest

from mlib import sweep
from mlib.paths import REPO_ROOT
from tests.sweep_worker import SPACE

TrialState = optuna.trial.TrialState


def start_worker(url: str, epochs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.sweep_worker", url, str(epochs)], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def completed(url: str) -> list[tuple]:
    study = optuna.load_study(study_name="toy", storage=url)
    return [tuple(sorted(t.params.items())) for t in study.get_trials(states=(TrialState.COMPLETE,))]


@pytest.mark.parametrize("values, message", [
    ({"hidden": []}, "non-empty"), ({"lr": [0.0]}, "positive"), ({"conv_layers": [2.5]}, "whole numbers"),
    ({"dropout": [0.1]}, "unknown hyperparameter"),
])
def test_bad_search_space_is_named(values, message):
    with pytest.raises(sweep.SweepError, match=message):
        sweep.SearchSpace.from_dict(values)


def test_paper_grid_size():
    assert sweep.SearchSpace().size() == 3 * 6 * 6 * 3  # 2^1..2^5 plus 64 for batch and hidden


def test_two_workers_share_one_study_without_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    sweep.make_study("toy", url, SPACE, "grid", epochs=3)  # create once, then two processes join
    workers = [start_worker(url, 3) for _ in range(2)]
    assert all(w.wait(timeout=300) == 0 for w in workers)
    done = completed(url)
    assert len(done) == len(set(done)) == SPACE.size()


def test_killed_worker_resumes_without_redoing_finished_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    sweep.make_study("toy", url, SPACE, "grid", epochs=60, heartbeat=1)
    worker = start_worker(url, 60)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until one trial is finished and another is running
        study = optuna.load_study(study_name="toy", storage=url)
        states = [t.state for t in study.get_trials()]
        if TrialState.COMPLETE in states and TrialState.RUNNING in states:
            break
        time.sleep(0.2)
    worker.kill()
    worker.wait()
    before = completed(url)
    assert before, "a trial finished before the kill"
    time.sleep(2.5)  # past the heartbeat grace period: the dead worker's trial is stale
    resumed = start_worker(url, 60)
    assert resumed.wait(timeout=300) == 0
    after = completed(url)
    assert set(before) <= set(after) and len(after) == len(set(after)) == SPACE.size()
    states = [t.state for t in optuna.load_study(study_name="toy", storage=url).get_trials()]
    assert TrialState.FAIL in states and TrialState.RUNNING not in states
