"""Sweeps: search-space checks, two workers sharing one SQLite study, resume after a killed worker."""

import subprocess
import sys
import time

import optuna
import pytest

from mlib import sweep
from mlib.params import ParameterError, SearchSpace
from mlib.paths import REPO_ROOT
from tests.sweep_worker import SPACE

TrialState = optuna.trial.TrialState


def start_worker(url: str, epochs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sweep_worker", url, str(epochs)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def completed(url: str) -> list[tuple]:
    study = optuna.load_study(study_name="toy", storage=url)
    return [tuple(sorted(t.params.items())) for t in study.get_trials(states=(TrialState.COMPLETE,))]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"hidden": []}, "non-empty"),
        ({"lr": [0.0]}, "positive"),
        ({"conv_layers": [2.5]}, r"expected list\[int\]"),
        ({"dropout": [0.1]}, "unknown hyperparameter"),
        ({"lr": [float("nan")]}, "finite"),
    ],
)
def test_bad_search_space_is_named(values, message):
    with pytest.raises(ParameterError, match=message):
        SearchSpace.from_dict(values)


def test_paper_grid_size():
    assert SearchSpace().size() == 3 * 6 * 6 * 3  # 2^1..2^5 plus 64 for batch and hidden


def test_a_rerun_completes_the_study_to_n_trials_instead_of_adding_more(tmp_path):
    from tests.conftest import toy_data

    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    graphs, y = toy_data()
    for _ in range(2):
        study = sweep.make_study("toy", url, SPACE, "tpe", epochs=1)
        sweep.run_worker(study, graphs, y, SPACE, 1, seed=0, n_trials=2)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2


def test_command_line_checks_its_arguments_before_loading_data(capsys):
    with pytest.raises(SystemExit) as info:
        sweep.main(["--storage", "nosuchdb://x", "--study", "s"])
    assert info.value.code == 2 and "cannot open the study storage" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        sweep.main(["--storage", "sqlite:///x.db", "--study", "s", "--space", '{"hidden": [0]}'])
    assert info.value.code == 2 and "search space 'hidden'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--storage", "sqlite:///x.db", "--study", "s", "--dataset", "icsd"])
    assert "invalid choice: 'icsd'" in capsys.readouterr().err


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
