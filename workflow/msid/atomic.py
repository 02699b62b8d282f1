"""Atomic file output: write to a temporary file beside the target, rename on success.

The finished file gets the permissions a plain ``open(path, "w")`` would give (0666 less the
umask), not the owner-only mode of a temporary file: results on a shared file system stay
readable by the group.

No temporary file outlives its writer:

* any exception (a failed write or a failed final rename) removes it;
* :func:`install_signal_cleanup` turns SIGTERM/SIGHUP into a normal exit, so the same clean-up
  runs (and an ``atexit`` hook removes whatever is still registered);
* a process killed outright (SIGKILL, power loss) leaves its file behind, and the next writer of
  the same output removes it (:func:`remove_stale`): temporary names carry host and process id,
  so a leftover whose process is gone is known to be stale.

Where the output is not a plain file, writing goes where the user pointed it: a symbolic link
is written through (its target is replaced atomically, the link stays), a FIFO or device
(``/dev/stdout``) gets the finished file's bytes streamed into it, and ``-`` means standard
output. The temporary of a FIFO, device or ``-`` lives in the system's temporary folder.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

#: temporaries of another host (whose processes cannot be checked) are stale after this long
STALE_AFTER_S = 24 * 3600
_LIVE: set[Path] = set()
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_TAG = re.compile(r"^(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the output name that means standard output
STDOUT = "-"
#: where a table written to ``-`` goes while a command sends every other line it prints to
#: stderr (:func:`messages_to_stderr`); None: ``sys.stdout``
_TABLE_STREAM = None


@contextmanager
def messages_to_stderr() -> Iterator[None]:
    """While a command's output is ``-``: what anything prints (a library's log line, a
    progress note) goes to stderr, and only the table written to ``-`` reaches stdout."""
    global _TABLE_STREAM
    _TABLE_STREAM = sys.stdout
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _TABLE_STREAM = None


def is_stream(path: str | os.PathLike) -> bool:
    """Whether writing ``path`` streams into something that is not a plain file: ``-``
    (standard output), or an existing FIFO, character device or socket (links followed)."""
    if str(path) == STDOUT:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def destination(path: str | os.PathLike) -> Path:
    """The file that writing ``path`` replaces: a symbolic link's final target (so the link
    itself stays), else ``path``."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _prefix(path: Path) -> str:
    return f".{path.name}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by writers that are gone; returns what was removed.

    A temporary of this host is stale when its process no longer runs; one of another host (or
    with an untagged name, from an older msid) when it is older than :data:`STALE_AFTER_S`.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    prefix = _prefix(path)
    for tmp in entries:
        name = tmp.name
        if not (name.startswith(prefix) and name.endswith(".tmp")) or tmp in _LIVE:
            continue
        m = _TAG.match(name[len(prefix):])
        try:
            if m and m["host"] == _HOST:
                stale = int(m["pid"]) != os.getpid() and not _alive(int(m["pid"]))
            else:
                stale = time.time() - tmp.stat().st_mtime > STALE_AFTER_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def new_temp(path: str | os.PathLike) -> Path:
    """A fresh temporary file beside ``path`` (stale ones removed first), registered for clean-up.

    Release it with :func:`discard` (remove) or :func:`commit` (rename onto ``path``).
    """
    if is_stream(path):  # nothing beside it to write in (a device's folder, say)
        folder, path = Path(tempfile.gettempdir()), Path(path)
    else:
        path = destination(path)
        folder = path.parent
        folder.mkdir(parents=True, exist_ok=True)
    remove_stale(folder / path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_prefix(path)}{_HOST}-{os.getpid()}-",
                                   suffix=".tmp", dir=folder)
    except OSError as e:  # the error names the output, not a temporary the user never chose
        raise OSError(e.errno, f"cannot write here: {e.strerror}", str(path)) from e
    os.close(fd)
    _LIVE.add(Path(tmp))
    return Path(tmp)


def discard(tmp: Path) -> None:
    _LIVE.discard(tmp)
    tmp.unlink(missing_ok=True)


def _stream(tmp: Path, path: str | os.PathLike) -> None:
    """``tmp``'s bytes into standard output (``-``), a FIFO or a device."""
    with open(tmp, "rb") as src:
        if str(path) == STDOUT:
            out = _TABLE_STREAM or sys.stdout
            out.flush()
            shutil.copyfileobj(src, out.buffer)
            out.buffer.flush()
        else:
            with open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _sync(path: Path) -> None:
    """Flush a written file's bytes to its disk (a folder written through, say an HDF5 store's
    parts, is left to the file system)."""
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(tmp: Path, path: str | os.PathLike) -> Path:
    """Rename ``tmp`` onto ``path`` (a link's target) with plain-file permissions, or stream it
    into ``path`` when that is ``-``, a FIFO or a device; ``tmp`` is removed either way. The
    bytes reach the disk before the rename (fsync), so a node that loses power right after
    never leaves an empty or short file under the final name."""
    try:
        if is_stream(path):
            _stream(tmp, path)
        else:
            if tmp.exists():
                os.chmod(tmp, 0o666 & ~_umask())
                _sync(tmp)
            os.replace(tmp, destination(path))
    finally:
        discard(tmp)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; it replaces ``path`` only if the block finishes without error."""
    tmp = new_temp(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        discard(tmp)


def write_text(path: str | os.PathLike, text: str, errors: str = "strict") -> Path:
    """``text`` to ``path`` as UTF-8 (whatever the locale), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors=errors)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _remove_live() -> None:
    for tmp in list(_LIVE):
        discard(tmp)


atexit.register(_remove_live)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def install_signal_cleanup() -> bool:
    """SIGTERM and SIGHUP end the process like an exception, so every ``finally``/``with`` block
    (temporary files, work directories) runs. Only from the main thread and only where the
    signal still has its default handler; returns whether anything was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    done = False
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _exit_on_signal)
            done = True
    return done
