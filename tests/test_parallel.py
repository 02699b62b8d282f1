"""The process map streams in order and never waits for ever on a dead worker."""

from __future__ import annotations

import os

import pytest

from msid.parallel import WorkerDied, imap_ordered


def _square(x: int) -> int:
    return x * x


def _die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # a worker killed mid-job (OOM killer, segfault)
    return x


def _fail_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("bad chunk 2")
    return x


def test_order_kept_and_input_read_lazily():
    seen = []

    def jobs():
        for i in range(40):
            seen.append(i)
            yield i

    out = imap_ordered(_square, jobs(), n_jobs=2)
    assert next(out) == 0
    assert len(seen) <= 2 * 2 + 2  # a bounded look-ahead, not the whole input
    assert [0, *out] == [i * i for i in range(40)]


def test_a_dead_worker_raises_instead_of_hanging():
    with pytest.raises(WorkerDied, match="ended abruptly"):
        list(imap_ordered(_die_on_three, range(10), n_jobs=2))


def test_a_worker_exception_reaches_the_caller():
    with pytest.raises(ValueError, match="bad chunk 2"):
        list(imap_ordered(_fail_on_two, range(10), n_jobs=2))


def _bad_model_on_two(x: int) -> int:
    from msid.io.errors import ModelFileError

    if x == 2:
        raise ModelFileError("student.safetensors", "card names another architecture")
    return x


def test_msids_own_errors_reach_the_caller_with_their_reason():
    """InputFileError / ModelFileError take two arguments: they still cross the process
    boundary whole, not as a 'worker ended abruptly'."""
    from msid.io.errors import ModelFileError

    with pytest.raises(ModelFileError, match=r"student\.safetensors: card names another") as e:
        list(imap_ordered(_bad_model_on_two, range(10), n_jobs=2))
    assert e.value.path == "student.safetensors"
