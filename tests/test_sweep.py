"""Sweeps: search-space checks, two workers sharing one SQLite study, resume after a killed worker."""

import os
import subprocess
import sys
import time

import optuna
import pytest

from mlib import sweep
from mlib.params import ParameterError, SearchSpace
from mlib.paths import REPO_ROOT
from tests.conftest import needs_mirror
from tests.sweep_worker import INPUTS, SPACE

TrialState = optuna.trial.TrialState


def one_thread() -> dict[str, str]:
    """The environment of a worker process: one thread each, so that workers on a busy machine do not
    oversubscribe its cores (spinning thread pools slow every process many times over)."""
    return dict(os.environ, OMP_NUM_THREADS="1")


def start_worker(url: str, epochs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sweep_worker", url, str(epochs)],
        cwd=REPO_ROOT,
        env=one_thread(),
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
        study = sweep.make_study("toy", url, SPACE, INPUTS, "tpe", epochs=1)
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


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    sweep.make_study("toy", url, SPACE, INPUTS, "grid", epochs=3)  # create once, then two processes join
    workers = [start_worker(url, 3) for _ in range(2)]
    assert all(w.wait(timeout=300) == 0 for w in workers)
    done = completed(url)
    assert len(done) == len(set(done)) == SPACE.size()


def test_of_two_trials_that_drew_the_same_point_at_once_the_later_yields():
    study = optuna.create_study(direction="maximize")
    hyper = {"hidden": 8}
    earlier, later = study.ask(), study.ask()  # both start; the later draws first and passes its check
    later.suggest_categorical("hidden", [8])
    sweep._skip_if_duplicate(later, hyper)
    earlier.suggest_categorical("hidden", [8])
    sweep._skip_if_duplicate(earlier, hyper)  # the earlier one goes on: no earlier trial has its point
    with pytest.raises(optuna.TrialPruned, match="same configuration as trial 0"):
        sweep._skip_if_duplicate(later, hyper)  # the check after the later one's first epoch
    study.tell(earlier, state=TrialState.PRUNED)
    again = study.ask()  # a sampler proposing a point that was tried and pruned: it is not trained again
    again.suggest_categorical("hidden", [8])
    with pytest.raises(optuna.TrialPruned, match="same configuration as trial 0"):
        sweep._skip_if_duplicate(again, hyper)


@pytest.mark.slow
def test_killed_worker_resumes_without_redoing_finished_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    sweep.make_study("toy", url, SPACE, INPUTS, "grid", epochs=60, heartbeat=1)
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


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL cluster (Debian's package) in a temporary folder; yields its database URL."""
    import glob
    import pwd
    import shutil
    import socket
    import tempfile

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql when it can)")
    bin_dir = binaries[-1]
    folder = tempfile.mkdtemp(prefix="mlib-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        os.chmod(folder, 0o700)
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = os.path.join(folder, "data")

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    run(f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "-A", "trust")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    run(f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-l", os.path.join(folder, "log"), "-w", "start")
    try:
        run(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlib")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlib"
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@needs_mirror
def test_the_readme_recipe_on_postgresql_two_workers_one_killed_mid_trial(postgres):
    """README: `python -m mlib.sweep --storage postgresql://... --study ...` on each machine. Two workers share
    the study; one is killed while both run a trial; its trial is failed by heartbeat and retried once."""
    space = '{"conv_layers": [1, 2], "batch_size": [8], "hidden": [4, 8], "lr": [0.01]}'
    command = [sys.executable, "-m", "mlib.sweep", "--storage", postgres, "--study", "cgcnn-grid", "--sampler", "grid"]
    command += ["--pruner", "none", "--epochs", "40", "--limit", "60", "--space", space, "--heartbeat", "1"]
    workers = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=one_thread(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in "ab"
    ]
    deadline, killed = time.time() + 240, None
    while time.time() < deadline and killed is None:
        try:
            study = optuna.load_study(study_name="cgcnn-grid", storage=postgres)
        except KeyError:  # not created yet
            time.sleep(0.5)
            continue
        if sum(t.state == TrialState.RUNNING for t in study.get_trials()) == 2:
            workers[0].kill()
            killed = workers[0].wait()
        time.sleep(0.2)
    if killed is None:
        for worker in workers:
            worker.kill()
        errors = [w.stderr.read().decode()[-1500:] for w in workers]
        pytest.fail(f"both workers never ran a trial at once; their stderr: {errors}")
    assert workers[1].wait(timeout=600) == 0, workers[1].stderr.read().decode()[-2000:]  # up to 4 trials alone
    trials = optuna.load_study(study_name="cgcnn-grid", storage=postgres).get_trials()
    complete = [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(set(complete)) == 4  # every grid point finished exactly once
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and not [t for t in trials if t.state == TrialState.RUNNING]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE


def test_time_spent_counts_finished_and_diverged_trials_once_and_neither_interrupted_ones_nor_gaps():
    from datetime import datetime, timedelta

    from mlib.study.nb03_sweep import time_spent

    t0 = datetime(2026, 1, 1)
    study = optuna.create_study(direction="maximize")
    spans = [  # (start, end in minutes, state, epochs run): two workers overlap; a killed worker's trial fails;
        # a day passes; a trial diverges (fails after its last epoch)
        (0, 30, TrialState.COMPLETE, 200),
        (10, 20, TrialState.PRUNED, 10),
        (25, 45, TrialState.COMPLETE, 200),
        (40, 1440, TrialState.FAIL, 95),
        (1440, 1450, TrialState.COMPLETE, 200),
        (1460, 1465, TrialState.FAIL, 200),
    ]
    for start, end, state, epochs_run in spans:
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0,
                state=state,
                value=0.5 if state == TrialState.COMPLETE else None,
                datetime_start=t0 + timedelta(minutes=start),
                datetime_complete=t0 + timedelta(minutes=end),
                params={},
                distributions={},
                user_attrs={"epochs_run": epochs_run},
                system_attrs={},
                intermediate_values={},
                trial_id=0,
            )
        )
    assert time_spent(study, epochs=200) == (45 + 10 + 5) * 60


def test_trials_table_says_why_a_trial_did_not_complete():
    study = optuna.create_study(direction="maximize")
    trials = [  # (state, epochs run, last reported epoch, user attributes)
        (TrialState.COMPLETE, 200, 200, {}),
        (TrialState.PRUNED, 10, 10, {}),
        (TrialState.PRUNED, None, None, {"duplicate_of": 0}),
        (TrialState.FAIL, 200, 200, {}),  # ran every epoch, then its R was NaN: diverged
        (TrialState.FAIL, 95, 95, {}),  # its worker was stopped
    ]
    for state, epochs_run, step, attrs in trials:
        attrs = {**attrs, **({"epochs_run": epochs_run} if epochs_run else {})}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=0.9 if state == TrialState.COMPLETE else None,
                user_attrs=attrs,
                intermediate_values={step: 0.1} if step else {},
            )
        )
    notes = sweep.trials_table(study, epochs=200)["note"].tolist()
    assert notes[0] == ""
    assert notes[1] == "pruned after epoch 10"
    assert notes[2] == "same configuration as trial 0"
    assert notes[3].startswith("diverged")
    assert notes[4].startswith("stopped with its worker")


def test_a_study_refuses_a_worker_with_other_inputs(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    study = sweep.make_study("toy", url, SPACE, INPUTS, "grid", epochs=1)
    assert study.user_attrs["inputs"] == INPUTS
    with pytest.raises(sweep.SweepError, match=r"'toy' .* other inputs \(data: 'toy_data\(\)' -> 'other'\)"):
        sweep.make_study("toy", url, SPACE, {**INPUTS, "data": "other"}, "grid", epochs=1)
    assert sweep.make_study("toy", url, SPACE, INPUTS, "grid", epochs=1).user_attrs["inputs"] == INPUTS


def test_a_study_of_an_older_mlib_is_adopted_only_when_its_name_carries_the_inputs_digest(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    for name in ("old", f"old-{sweep.inputs_digest(INPUTS)}"):
        legacy = optuna.create_study(study_name=name, storage=url, direction="maximize")
        legacy.enqueue_trial({"hidden": 4})
        legacy.ask()
    with pytest.raises(sweep.SweepError, match="'old' .* holds 1 trials but does not record"):
        sweep.make_study("old", url, SPACE, INPUTS, "grid", epochs=1)
    adopted = sweep.make_study(f"old-{sweep.inputs_digest(INPUTS)}", url, SPACE, INPUTS, "grid", epochs=1)
    assert adopted.user_attrs["inputs"] == INPUTS


def test_the_diverged_pruner_stops_only_trials_no_better_than_the_mean():
    study = optuna.create_study(direction="maximize", pruner=sweep.DivergedPruner(window=3))
    curves = {
        "slow starter": [0.99, 0.98, 0.97, 0.96, 0.95],  # far behind, still learning: kept
        "stuck at the mean": [0.5, 1.2, 1.0, 1.4, 1.1],  # three epochs in a row no better than the mean: pruned
        "not finite": [0.4, float("nan")],
    }
    pruned = {}
    for name, curve in curves.items():
        trial = study.ask()
        for epoch, value in enumerate(curve, 1):
            trial.report(value, epoch)
            if trial.should_prune():
                pruned[name] = epoch
                break
    assert pruned == {"stuck at the mean": 4, "not finite": 2}
