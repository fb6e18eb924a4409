"""Independent training runs in parallel worker processes (one torch thread each).

Each run is seeded on its own, so the results do not depend on how many workers ran them or in which
order. The shared data (graph sets) travel to each worker once, not with every job, as one plain pickle
(multiprocessing's own pickler would pass every tensor as a file descriptor and run out of them).
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

import torch
from dgl import utils as dgl_utils

from mlib.progress import track

T = TypeVar("T")
_SHARED: Any = None


def _init(payload: bytes) -> None:
    global _SHARED
    _SHARED = pickle.loads(payload)
    torch.set_num_threads(1)  # workers share the cores; more threads per worker only oversubscribe them
    dgl_utils.set_num_threads(1)  # DGL's own OpenMP pool (message passing) too


def _call(fn: Callable[..., T], job: tuple) -> T:
    return fn(_SHARED, *job)


def run_jobs(fn: Callable[..., T], jobs: Sequence[tuple], shared: Any, workers: int = 1, desc: str = "runs") -> list[T]:
    """``fn(shared, *job)`` for every job, results in job order; ``workers > 1`` uses that many processes.

    ``fn`` must be a module-level function (it is pickled to the workers).
    """
    if workers <= 1 or len(jobs) <= 1:
        return [fn(shared, *job) for job in track(jobs, len(jobs), desc, unit="run")]
    results: list[Any] = [None] * len(jobs)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init, initargs=(pickle.dumps(shared),)
    ) as pool:
        futures = {pool.submit(_call, fn, job): k for k, job in enumerate(jobs)}
        for future in track(as_completed(futures), len(jobs), desc, unit="run"):
            results[futures[future]] = future.result()
    return results
