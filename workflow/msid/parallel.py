"""Order-preserving chunked map over worker processes (or in-process for one job)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from multiprocessing import Pool
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def imap_ordered(fn: Callable[[T], R], jobs: Iterable[T], n_jobs: int = 1) -> Iterator[R]:
    """``map(fn, jobs)`` in input order, on ``n_jobs`` processes when more than one.

    The input is consumed lazily, so a large file streams through with bounded memory; the
    worker pool is torn down however the consumer stops.
    """
    it = iter(jobs)
    first = list(islice(it, 2))
    if n_jobs <= 1 or len(first) < 2:  # one job (a small file): no pool to start
        yield from map(fn, chain(first, it))
        return
    jobs = chain(first, it)
    pool = Pool(n_jobs)
    try:
        yield from pool.imap(fn, jobs)
    finally:
        pool.terminate()
