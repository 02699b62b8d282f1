"""Order-preserving chunked map over worker processes (or in-process for one job), and the
CPU threads a workflow job keeps to."""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain, islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


#: the CPU threads a workflow job was given (its rule's ``threads``, which a Slurm allocation or
#: ``--set-threads`` sets); :func:`job_threads` exports it, training reads it
JOB_THREADS = "MSID_JOB_THREADS"
_POOL_SIZES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def job_threads(n: int) -> None:
    """Keep a workflow job to the ``n`` CPUs its rule asked for (rule scripts call this before
    they import the science): the OpenMP/BLAS pools of torch, faiss and numpy size themselves
    from these variables when they start, and torch's, if already started, is set now. On a
    node the job shares, a library left to itself would start one thread per core."""
    n = max(1, int(n))
    for var in (*_POOL_SIZES, JOB_THREADS):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, out of memory, crashed)."""


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def ignore_interrupt() -> None:
    """Worker initializer: Ctrl-C (SIGINT, sent to the whole process group) is the parent's
    to handle; a worker that took it would only print a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def imap_ordered(fn: Callable[[T], R], jobs: Iterable[T], n_jobs: int = 1) -> Iterator[R]:
    """``map(fn, jobs)`` in input order, on ``n_jobs`` processes when more than one.

    The input is consumed lazily (at most ``2 * n_jobs`` jobs ahead of the consumer), so a
    large file streams through with bounded memory. A worker that dies raises
    :class:`WorkerDied` here instead of leaving the caller waiting for ever (as a
    ``multiprocessing.Pool`` would); the pool is torn down however the consumer stops.
    """
    it = iter(jobs)
    first = list(islice(it, 2))
    if n_jobs <= 1 or len(first) < 2:  # one job (a small file): no pool to start
        yield from map(fn, chain(first, it))
        return
    pool = ProcessPoolExecutor(n_jobs, initializer=ignore_interrupt)
    pending: deque[Future] = deque()
    try:
        for job in chain(first, it):
            pending.append(pool.submit(fn, job))
            if len(pending) > 2 * n_jobs:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:  # wait for the workers to exit: forked after the caller opened its output, they
        # hold its file handles (and HDF5's lock on it) until they do
        pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future):
    try:
        return future.result()
    except BrokenProcessPool as e:
        raise WorkerDied(f"a worker process ended abruptly (killed, out of memory or crashed): "
                         f"{e}; no output was written") from e
