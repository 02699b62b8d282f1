"""Progress bars that suit where they are written.

On a terminal: a tqdm bar, redrawn in place. Into a file (a rule's log, a Slurm job's output,
a pipe): the same bar as plain lines, at most one every ``mininterval`` seconds (30 by
default), so a log reads as a timeline instead of one line of carriage-return redraws that
``tail -f`` and an editor show as a single garbled line.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from tqdm import tqdm

#: terminal control sequences (cursor moves of nested bars, colours): no place in a log
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Lines:
    """A text stream that turns tqdm's in-place redraws into whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = _CONTROL.sub("", text).replace("\r", "").rstrip("\n")
        if line.strip():
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _LogBar(tqdm):
    """A bar into a log: a new postfix waits for the next timed line instead of writing one
    at once (a trainer sets its loss every few steps)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)`` on a terminal; plain lines (one per ``mininterval``, default
    30 s) into a file or a pipe. Writes to ``file`` (default: the current ``sys.stderr``)."""
    stream = kwargs.pop("file", None) or sys.stderr
    if not _is_terminal(stream):
        kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.1)), 30.0)
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("ncols", 100)
        return _LogBar(*args, file=_Lines(stream), **kwargs)
    return tqdm(*args, file=stream, **kwargs)
