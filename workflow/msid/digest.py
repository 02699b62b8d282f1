"""SHA-256 of files, the one way msid names a file's content (model weights, libraries,
benchmark inputs). No heavy imports: the workflow's light rules use it."""

from __future__ import annotations

import hashlib
import os


def files_digest(*paths: str | os.PathLike | None) -> dict[str, str]:
    """{path: sha256} of the given files that exist: what a training run was fed, so that a
    checkpoint of a run on other data is never resumed (``Trainer``'s ``run_key``)."""
    return {str(p): sha256_file(p) for p in paths if p and os.path.isfile(p)}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
