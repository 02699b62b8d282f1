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


def test_postfix_and_nested_bars_keep_to_timed_clean_lines():
    """A trainer sets its loss every few steps: that waits for the next timed line (it wrote
    a line per call); a nested bar's cursor moves never reach the log."""
    buf = io.StringIO()
    bar = progress_bar(total=1000, desc="train", file=buf)
    for i in range(1000):
        bar.update(1)
        if i % 10 == 0:
            bar.set_postfix(loss=i)
    bar.close()
    assert len(buf.getvalue().splitlines()) <= 3 and "loss=990" in buf.getvalue()
    buf = io.StringIO()
    outer = progress_bar(total=2, desc="outer", file=buf)
    inner = progress_bar(total=3, desc="inner", file=buf)
    for _ in range(3):
        inner.update(1)
    inner.close()
    outer.update(2)
    outer.close()
    assert "\x1b" not in buf.getvalue() and "\r" not in buf.getvalue()
    assert all(line.startswith(("outer", "inner")) for line in buf.getvalue().splitlines())
