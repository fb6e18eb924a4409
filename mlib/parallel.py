"""Worker processes: independent training runs (one torch thread each) and featurisation.

Each run is seeded on its own, so the results do not depend on how many workers ran them or in which
order. The shared data (graph sets) travel to each worker once, not with every job, as one plain pickle
(multiprocessing's own pickler would pass every tensor as a file descriptor and run out of them).

Interrupting leaves nothing behind: on Ctrl-C or SIGTERM the pool's workers are terminated, and every
worker asks the kernel to end it when its parent ends (Linux ``PR_SET_PDEATHSIG``), so a killed notebook
kernel takes its workers with it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import InvalidStateError, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from dgl import utils as dgl_utils

from mlib.progress import track

T = TypeVar("T")
J = TypeVar("J")
_SHARED: Any = None
RUN_LINES = 40  # most progress lines a batch of runs prints outside a terminal


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
    if workers <= 1 or len(jobs) <= 1:
        return [fn(shared, job) for job in track(jobs, len(jobs), desc, unit="run", steps=steps)]
    results: list[Any] = [None] * len(jobs)
    with worker_pool(min(workers, len(jobs)), _init, (pickle.dumps(shared),)) as pool:
        futures = {pool.submit(_call, fn, job): k for k, job in enumerate(jobs)}
        for future in track(as_completed(futures), len(jobs), desc, unit="run", steps=steps):
            results[futures[future]] = future.result()
    return results
