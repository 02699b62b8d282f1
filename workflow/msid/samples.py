"""Runs to identify from a folder: every mzML/mzXML/MGF/MSP file (gzip allowed) dropped into
``runs_dir`` becomes a sample.

A core facility's file names are whatever the instrument software or a user typed ("QC run 01
(rep).mzML", "Müller_GC.msp"), while a sample name ends up in output paths and must match
``[A-Za-z0-9_.-]+``. So a file's name is made safe (accents dropped, any other run of characters
becomes ``_``; a clash with a name already taken gets ``-2``, ``-3``, ...) and the file's own path
is kept beside it, instead of one awkward file name stopping the whole batch at validation. A
file whose name is already safe always keeps it, so a file added later never renames an earlier
run's results. Hidden files (``._QC.mzML`` from macOS, a copy in progress) are skipped.

A file in a subfolder named after a run kind (``peptide/``, ``ei/``, ``small_molecule/``) is of
that kind; a file at the top level is ``small_molecule``. A file the sample sheet already lists
is not added twice.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

RUN_FILE = re.compile(r"\.(mzml|mzxml|mgf|msp)(\.gz)?$", re.IGNORECASE)
SAMPLE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # as workflow/schemas/samples.schema.yaml
RUN_KINDS = ("small_molecule", "peptide", "ei")


def safe_sample_name(stem: str, taken: set[str]) -> str:
    """``stem`` as a sample name that matches :data:`SAMPLE_NAME` and is not in ``taken``."""
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain).strip("._-") or "run"
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def runs_dir_samples(folder: str | os.PathLike, taken: set[str] | None = None,
                     listed: set[str] | None = None) -> list[dict[str, str]]:
    """``{sample, path, kind, file}`` for every run file of ``folder`` and of its kind
    subfolders, in name order. ``taken``: sample names already in use (the sample sheet's);
    ``listed``: paths the sheet already holds (compared resolved), which are skipped."""
    taken = set(taken or ())
    listed = {os.path.realpath(p) for p in (listed or ())}
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"runs_dir '{folder}' is not a folder")
    found = [(p, "small_molecule") for p in sorted(folder.iterdir()) if p.is_file()]
    for kind in RUN_KINDS:
        sub = folder / kind
        if sub.is_dir():
            found += [(p, kind) for p in sorted(sub.iterdir()) if p.is_file()]
    found = [(p, k) for p, k in found if RUN_FILE.search(p.name) and not p.name.startswith(".")
             and os.path.realpath(p) not in listed]  # hidden: ._QC.mzML, a copy in progress
    # a file whose name is already a safe sample name keeps it, whatever files arrive later;
    # the others are named after them
    stems = [RUN_FILE.sub("", p.name) for p, _ in found]
    names: list[str | None] = [None] * len(found)
    for i, stem in enumerate(stems):
        if SAMPLE_NAME.match(stem) and stem not in taken:
            names[i] = stem
            taken.add(stem)
    for i, stem in enumerate(stems):
        if names[i] is None:
            names[i] = safe_sample_name(stem, taken)
            taken.add(names[i])
    return [{"sample": str(name), "path": str(path), "kind": kind, "file": path.name}
            for (path, kind), name in zip(found, names, strict=True)]
