"""Worker processes: independent training runs (one torch thread each) and featurisation.

Each run is seeded on its own, so the results do not depend on how many workers ran them or in which
order. The shared data (graph sets) travel to each worker once, not with every job, as one plain pickle
(multiprocessing's own pickler would pass every tensor as a file descriptor and run out of them).

Interrupting leaves nothing behind: on Ctrl-C or SIGTERM the pool's workers are terminated, and every
worker asks the kernel to end it when its parent ends (Linux ``PR_SET_PDEATHSIG``), so a killed notebook
kernel takes its workers with it.

With ``MLIB_SCHEDULER`` set to a Dask scheduler's address (``tcp://host:8786``) the runs go to that scheduler's
workers instead, on any machines: the shared data travel to every worker once, each run's files come back
with its result and the driver writes them into the run store (a worker needs no shared filesystem; one that
cannot read the store retrains a finished run instead of reading it back). A worker that dies mid-run has its
run rescheduled on another; a run whose code raises is reported with its job, not retried.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import InvalidStateError, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from dgl import utils as dgl_utils

from mlib import store
from mlib.progress import track

T = TypeVar("T")
J = TypeVar("J")
_SHARED: Any = None
RUN_LINES = 40  # most progress lines a batch of runs prints outside a terminal
SCHEDULER_ENV = "MLIB_SCHEDULER"  # a Dask scheduler's address: run the jobs on its workers


def end_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent ends (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    end_with_parent()
    if initializer is not None:
        initializer(*initargs)


def _quiet_broken_pool(previous: Callable) -> Callable:
    """An excepthook that drops CPython 3.11's InvalidStateError from a broken pool's cancelled futures."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not InvalidStateError:
            previous(args)

    return hook


@contextmanager
def worker_pool(
    workers: int, initializer: Callable | None = None, initargs: tuple = ()
) -> Iterator[ProcessPoolExecutor]:
    """A process pool (forkserver) whose workers are terminated when the block is left by an exception.

    Workers ignore SIGINT from birth (:mod:`mlib.worker_init`, preloaded by the forkserver) and end with
    their parent.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlib.worker_init"])
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(initializer, initargs),
    )
    try:
        yield pool
    except BaseException:
        processes = list((pool._processes or {}).values())  # the executor has no public handle on its workers
        previous = threading.excepthook
        threading.excepthook = _quiet_broken_pool(previous)
        try:
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(timeout=10)
            pool.shutdown(wait=True)  # the pool is broken now: pending work fails, its manager thread ends
        finally:
            threading.excepthook = previous
        raise
    pool.shutdown(wait=True)


def _init(payload: bytes) -> None:
    global _SHARED
    _SHARED = pickle.loads(payload)
    torch.set_num_threads(1)  # workers share the cores; more threads per worker only oversubscribe them
    dgl_utils.set_num_threads(1)  # DGL's own OpenMP pool (message passing) too


def _call(fn: Callable[[Any, J], T], job: J) -> T:
    return fn(_SHARED, job)


def run_jobs(
    fn: Callable[[Any, J], T], jobs: Sequence[J], shared: Any, workers: int = 1, desc: str = "runs"
) -> list[T]:
    """``fn(shared, job)`` for every job, results in job order; ``workers > 1`` uses that many processes.

    ``fn`` must be a module-level function and each job a named object (a frozen dataclass of the engine or study
    that runs it): both are pickled to the workers.
    """
    steps = min(len(jobs), RUN_LINES)  # a training run takes minutes to hours: a line for each, up to RUN_LINES
    if os.environ.get(SCHEDULER_ENV):
        return _on_scheduler(os.environ[SCHEDULER_ENV], fn, jobs, shared, desc, steps)
    if workers <= 1 or len(jobs) <= 1:
        return [fn(shared, job) for job in track(jobs, len(jobs), desc, unit="run", steps=steps)]
    results: list[Any] = [None] * len(jobs)
    with worker_pool(min(workers, len(jobs)), _init, (pickle.dumps(shared),)) as pool:
        futures = {pool.submit(_call, fn, job): k for k, job in enumerate(jobs)}
        for future in track(as_completed(futures), len(jobs), desc, unit="run", steps=steps):
            results[futures[future]] = future.result()
    return results


def _remote(fn: Callable[[Any, J], T], shared: Any, job: J) -> tuple[T, list[tuple[str, bytes]]]:
    """On a Dask worker: ``fn(shared, job)`` on one thread, and every file it wrote (path, bytes), in order."""
    torch.set_num_threads(1)
    dgl_utils.set_num_threads(1)
    with store.journal() as written:
        result = fn(shared, job)
    return result, [(str(path), path.read_bytes()) for path in written if path.exists()]


def _land(files: list[tuple[str, bytes]]) -> None:
    """Write a remote run's files where it wrote them (a file already there with the same bytes is left alone:
    the worker shares this filesystem)."""
    for name, data in files:
        path = Path(name)
        if not (path.exists() and path.read_bytes() == data):
            store.atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))


def describe(job: Any) -> str:
    """A job as an error names it: its short fields (a dataclass's graphs and other large values left out)."""
    if not dataclasses.is_dataclass(job):
        return type(job).__name__
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    shown = ", ".join(f"{k}={v!r}" for k, v in fields.items() if len(repr(v)) <= 120)
    return f"{type(job).__name__}({shown})"


class RemoteRunError(RuntimeError):
    """A run failed on a Dask worker (its code raised, or the workers running it kept dying)."""


def _on_scheduler(
    address: str, fn: Callable[[Any, J], T], jobs: Sequence[J], shared: Any, desc: str, steps: int
) -> list[T]:
    """The jobs on a Dask scheduler's workers, results in job order, their files written here as they land."""
    from distributed import Client, as_completed

    results: list[Any] = [None] * len(jobs)
    with Client(address, timeout="60s") as client:
        # a task that unpacks the shared data, not a scatter: a result lost with its worker is computed again
        # elsewhere (scattered data has no recipe, and its dependents are cancelled, dask/distributed#3149)
        data = client.submit(pickle.loads, pickle.dumps(shared), pure=False)
        client.replicate([data])  # every worker holds it once, before the runs
        futures = {client.submit(_remote, fn, data, job, pure=False, retries=0): k for k, job in enumerate(jobs)}
        for future in track(as_completed(futures), len(jobs), desc, unit="run", steps=steps):
            k = futures[future]
            try:
                result, files = future.result()
            except Exception as exc:
                raise RemoteRunError(
                    f"{describe(jobs[k])} failed on a Dask worker: {type(exc).__name__}: {exc}"
                ) from exc
            _land(files)
            results[k] = result
    return results
