"""Progress bars written into a log file read as lines, not carriage-return redraws."""

from __future__ import annotations

import io

from msid.progress import progress_bar


def test_a_bar_into_a_file_is_a_few_whole_lines():
    buf = io.StringIO()
    bar = progress_bar(total=5000, desc="identify library", unit=" queries", file=buf)
    for _ in range(5000):
        bar.update(1)
    bar.close()
    text = buf.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # the start and the end (updates at most every 30 s), each a whole line
    assert 1 <= len(lines) <= 3, lines
    assert lines[-1].startswith("identify library: 100%") and "5000/5000" in lines[-1]


def test_a_disabled_bar_writes_nothing_and_an_iterable_passes_through():
    buf = io.StringIO()
    assert list(progress_bar(range(4), disable=True, file=buf)) == [0, 1, 2, 3]
    assert buf.getvalue() == ""
