"""The independent runs on a Dask scheduler (``MLIB_SCHEDULER``): real scheduler and worker processes on loopback,
workers without the driver's filesystem, one killed during a run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from mlib import parallel
from mlib.params import TrainConfig
from mlib.paths import REPO_ROOT
from mlib.training import FitJob, fit_jobs
from tests.test_store import toy_set

DASK = Path(sys.executable).parent / "dask"
RUNS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jobs(epochs: int = 80) -> list[FitJob]:
    """Small CGCNN runs into the run store ``store/`` of the current folder (relative: each process its own)."""
    hyper = {"hidden": 8, "n_conv": 2}
    return [
        FitJob("cgcnn", hyper, TrainConfig(epochs=epochs, batch_size=4, seed=k), Path(f"store/run{k}"))
        for k in range(RUNS)
    ]


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two workers (no nanny: a killed worker stays dead), each worker in its own folder."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # scheduler and workers import the jobs' functions (tests' too)
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=tmp_path,
        env=env,
        **quiet,
    )
    workers = []
    for k in range(2):
        home = tmp_path / f"worker{k}"
        home.mkdir()
        workers.append(
            subprocess.Popen(
                [DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{k}",
                 "--local-directory", str(home / "scratch")],
                cwd=home,
                env=env,
                **quiet,
            )
        )  # fmt: skip
    try:
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_runs_on_dask_workers_land_once_each_with_the_local_results(cluster, tmp_path, monkeypatch):
    address, workers = cluster
    data = toy_set()
    driver = tmp_path / "driver"
    driver.mkdir()
    monkeypatch.chdir(driver)
    monkeypatch.setenv(parallel.SCHEDULER_ENV, address)

    def training_on_w0() -> bool:  # a checkpoint of an unfinished run on w0's disk
        return any(not (f.parent / "run.json").exists() for f in (tmp_path / "worker0" / "store").glob("run*/last.pt"))

    def kill_first_worker_mid_run() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not training_on_w0():
            time.sleep(0.02)
        workers[0].kill()

    import threading

    killer = threading.Thread(target=kill_first_worker_mid_run)
    killer.start()
    remote = fit_jobs(data, "y", _jobs(), workers=2)
    killer.join()
    assert workers[0].poll() is not None, "worker w0 was killed during the batch"
    cut = {f.name for f in (tmp_path / "worker0" / "store").iterdir() if not (f / "run.json").exists()}
    assert cut, f"w0 died with a run unfinished: {sorted(p.name for p in (tmp_path / 'worker0' / 'store').iterdir())}"
    assert all((tmp_path / "worker1" / "store" / name / "run.json").exists() for name in cut)  # rescheduled on w1
    for k in range(RUNS):  # every run landed in the driver's store, whole: no worker shares its filesystem
        folder = driver / "store" / f"run{k}"
        assert (folder / "run.json").exists() and (folder / "model.pt").exists()
        assert not list(folder.glob(".*.tmp"))

    monkeypatch.delenv(parallel.SCHEDULER_ENV)
    local_root = tmp_path / "local"
    local_root.mkdir()
    monkeypatch.chdir(local_root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker trains
    try:
        local = fit_jobs(data, "y", _jobs(), workers=1)
    finally:
        torch.set_num_threads(threads)
    assert [r["metrics"] for r in remote] == [r["metrics"] for r in local]  # seeded: the same whichever worker ran it
    for k in range(RUNS):
        assert pd.read_csv(driver / "store" / f"run{k}" / "predictions.csv").equals(
            pd.read_csv(local_root / "store" / f"run{k}" / "predictions.csv")
        )


def _fails(shared: object, job: int) -> int:
    if job == 1:
        raise ValueError("this run's code raises")
    return job


@pytest.mark.slow
def test_a_run_whose_code_raises_is_reported_with_its_job_not_retried(cluster, monkeypatch):
    address, _ = cluster
    monkeypatch.setenv(parallel.SCHEDULER_ENV, address)
    with pytest.raises(
        parallel.RemoteRunError, match="int failed on a Dask worker: ValueError: this run's code raises"
    ):
        parallel.run_jobs(_fails, [0, 1, 2], None, workers=2)
    assert os.environ[parallel.SCHEDULER_ENV] == address
