"""Where msid's shipped data live: the library, candidate pool and model files.

``$MSID_DATA_DIR`` when set; else the ``resources/`` folder of the source checkout the package
is imported from (found through :mod:`importlib.resources`, so an editable install and the
workflow work unchanged). A wheel installed elsewhere carries no data (about 75 MB): it needs
``MSID_DATA_DIR`` pointing at a copy of ``resources/``, or explicit ``--library``/``--pool``/
``--model`` files, and says so when neither is there.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

ENV = "MSID_DATA_DIR"


class DataDirError(FileNotFoundError, ValueError):  # ValueError: the CLI reports it
    pass


def data_dir() -> Path:
    """The folder holding msid's shipped data (see the module docstring)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    package = Path(str(files("msid")))
    checkout = package.resolve().parent.parent / "resources"  # <repo>/workflow/msid -> resources
    if checkout.is_dir():
        return checkout
    raise DataDirError(f"msid's shipped data (spectral library, candidate pool, models) are not "
                       f"installed with the package: set {ENV} to a copy of the repository's "
                       f"resources/ folder, or pass the files explicitly")


def shipped_model(name: str) -> Path:
    """A shipped model file, ``models/<name>.safetensors`` under :func:`data_dir` (its card is
    beside it); the caller says what to do when it is missing."""
    return data_dir() / "models" / f"{name}.safetensors"


def resource(*parts: str) -> Path:
    """A file under :func:`data_dir`; a clear error when it is missing."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise DataDirError(f"{path} not found ({ENV}={os.environ.get(ENV, '')!r})")
    return path
