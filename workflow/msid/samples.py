"""Runs to identify from a folder: every mzML/mzXML/MGF/MSP file (gzip allowed) dropped into
``runs_dir`` becomes a sample.

A core facility's file names are whatever the instrument software or a user typed ("QC run 01
(rep).mzML", "Müller_GC.msp"), while a sample name ends up in output paths and must match
``[A-Za-z0-9_.-]+``. So a file's name is made safe (accents dropped, any other run of characters
becomes ``_``; letters with no ASCII form, as in a Chinese or Cyrillic name, add a digest of
the whole name; a clash with a name already taken, in any case, gets ``-2``, ``-3``, ...) and
the file's own path is kept beside it, instead of one awkward file name stopping the whole batch
at validation. A
file whose name is already safe always keeps it, so a file added later never renames an earlier
run's results. Hidden files (``._QC.mzML`` from macOS, a copy in progress) are skipped, and
:func:`unread_entries` names everything in the folder that is not read, with why (a vendor raw
file needs converting first), so the workflow can say so instead of ignoring it.

The names given are kept in ``<results_dir>/runs/sample_names.tsv``: a file keeps its name on
every later run (also when the whole folder was moved or renamed), and a file added later never
takes a name an earlier file was given.

A file in a subfolder named after a run kind (``peptide/``, ``ei/``, ``small_molecule/``) is of
that kind; a file at the top level is ``small_molecule``. A file the sample sheet already lists
is not added twice.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

RUN_FILE = re.compile(r"\.(mzml|mzxml|mgf|msp)(\.gz)?$", re.IGNORECASE)
SAMPLE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # as workflow/schemas/samples.schema.yaml
RUN_KINDS = ("small_molecule", "peptide", "ei")
VENDOR_FORMATS = {  # suffix -> the instrument software that writes it
    ".raw": "Thermo RAW (or Waters .raw folder)", ".d": "Agilent/Bruker .d folder",
    ".wiff": "SCIEX WIFF", ".wiff2": "SCIEX WIFF2", ".baf": "Bruker BAF", ".tdf": "Bruker TDF",
    ".lcd": "Shimadzu LCD", ".qgd": "Shimadzu GCMSsolution",
}
CONVERT_HINT = ("convert it to mzML first (ProteoWizard msconvert, or ThermoRawFileParser "
                "for Thermo files), then drop the mzML here")


def safe_sample_name(stem: str, taken: set[str]) -> str:
    """``stem`` as a sample name that matches :data:`SAMPLE_NAME` and is not in ``taken``."""
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain).strip("._-") or "run"
    if _letters(plain) < _letters(stem):  # letters with no ASCII form (样品, Проба, ...)
        # a digest of the whole name keeps two such files apart, whatever order they come in
        digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        name = f"{name}_{digest}"
    candidate, k = name, 2
    while clashes(candidate, taken):
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def clashes(name: str, taken: set[str]) -> bool:
    """``name`` is taken, also in another case: ``With_Garbage`` and ``with_garbage`` would be
    one folder on a case-insensitive share (SMB, NTFS, macOS), where results are often kept."""
    low = name.casefold()
    return any(t.casefold() == low for t in taken)


def _letters(text: str) -> int:
    """Letters and digits in ``text`` (accents not counted apart from their letter)."""
    return sum(1 for c in unicodedata.normalize("NFKD", text) if c.isalnum())


def _registry_rows(path: str | os.PathLike | None
                   ) -> list[tuple[str, str, int | None, str | None]]:
    """``(sample, resolved path, size in bytes or None, run kind or None)`` rows of a registry
    (an older registry has no size or kind column)."""
    if not path or not Path(path).is_file():
        return []
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    out = []
    for r in (line.split("\t") for line in text.split("\n")[1:]):
        if 2 <= len(r) <= 4 and SAMPLE_NAME.match(r[0]):
            size = int(r[2]) if len(r) >= 3 and r[2].isdigit() else None
            kind = r[3] if len(r) == 4 and r[3] in RUN_KINDS else None
            out.append((r[0], r[1], size, kind))
    return out


def read_registry(path: str | os.PathLike | None) -> dict[str, str]:
    """resolved file path -> the sample name it was given ({} when there is no registry)."""
    return {p: name for name, p, *_ in _registry_rows(path)}


def _size(path: str | os.PathLike) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _entries(folder: Path) -> list[tuple[Path, str, str]]:
    """``(path, run kind, why it is not read)`` for every entry of ``folder`` and of its kind
    subfolders, in name order; ``why`` is '' for a run file (the one walk both
    :func:`runs_dir_samples` and :func:`unread_entries` read)."""
    out = []
    for kind in ("", *RUN_KINDS):
        sub = folder / kind
        if kind and not sub.is_dir():
            continue
        for p in sorted(sub.iterdir()):
            vendor = VENDOR_FORMATS.get(p.suffix.lower())
            if p.is_symlink() and not p.exists():
                why = f"a broken link: its target {os.readlink(p)} does not exist"
            elif p.name.startswith("."):
                why = ("hidden file (e.g. a macOS '._' copy, an editor's lock file or a "
                       "transfer in progress)")
            elif vendor:
                why = f"{vendor}: msid reads mzML, mzXML, MGF and MSP; {CONVERT_HINT}"
            elif p.is_dir():
                if not kind and p.name in RUN_KINDS:
                    continue
                why = ("a folder: only the run-kind subfolders "
                       f"({', '.join(k + '/' for k in RUN_KINDS)}) are read")
            elif not RUN_FILE.search(p.name):
                why = "not a run file msid reads (mzML, mzXML, MGF or MSP, gzip allowed)"
            else:
                why = ""
            out.append((p, kind or "small_molecule", why))
    return out


def unread_entries(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``(path relative to folder, why it is not read)`` for every entry of ``folder`` and of
    its kind subfolders that :func:`runs_dir_samples` does not make a sample of."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [(str(p.relative_to(folder)), why) for p, _, why in _entries(folder) if why]


def sheet_rows_unread(rows: list[dict[str, str]],
                      sheet: str | os.PathLike) -> list[tuple[int, str, str]]:
    """``(row index, row, why)`` for every sample-sheet row that cannot be run: its file
    missing, a folder, unreadable, or not a run file msid reads (a vendor file says how to
    convert it); a run kind msid does not know; a sample name that cannot be a path. The
    workflow leaves such a row out and names it at start and in the batch report, so that one
    mistyped row does not stop the other runs."""
    out = []
    for i, row in enumerate(rows):
        path = str(row.get("path", ""))
        name = str(row.get("sample", ""))
        kind = str(row.get("kind", "") or "")
        vendor = VENDOR_FORMATS.get(Path(path.rstrip("/")).suffix.lower())
        if not path:
            why = "no path given"
        elif not os.path.exists(path):
            why = f"{path}: no such file" + (
                "" if os.path.isabs(path) else
                f" (a relative path is read from the working directory, {os.getcwd()})")
        elif vendor:
            why = f"{path}: {vendor}: msid reads mzML, mzXML, MGF and MSP; {CONVERT_HINT}"
        elif os.path.isdir(path):
            why = f"{path}: a folder, not a run file"
        elif not os.access(path, os.R_OK):
            why = f"{path}: not readable (permission denied)"
        elif not RUN_FILE.search(path):
            why = f"{path}: not a run file msid reads (mzML, mzXML, MGF or MSP, gzip allowed)"
        elif kind and kind not in RUN_KINDS:
            why = f"kind {kind!r} is none of {', '.join(RUN_KINDS)}"
        elif not SAMPLE_NAME.match(name) or name in (".", ".."):
            why = (f"sample name {name!r} cannot name output files: letters, digits, '_', '.' "
                   f"and '-' only (e.g. {safe_sample_name(name, set())!r})")
        else:
            continue
        out.append((i, f"{sheet}: sample {name}", why))
    return out


def _moved_names(rows: list[tuple[str, str, int | None, str | None]], present: set[str]
                 ) -> dict[tuple[str, str, int], str]:
    """``(run kind, file name, size) -> sample name`` of the registered files that are gone
    from where they were: a runs folder that was moved or renamed (``/data/incoming`` to
    ``/data/2026/incoming``) keeps its runs' names, so nothing is renamed or rerun. The size
    must match too: a new batch's ``blank.mzML`` after the old folder was deleted is another
    run, and never takes the old one's name. A place that two gone files share is left out
    (either may be meant). The kind is the one the registry recorded (an older registry's:
    the name of the file's folder)."""
    out: dict[tuple[str, str, int], str] = {}
    clash = set()
    for name, path, size, kind in rows:
        if size is None or path in present or os.path.exists(path):
            continue
        if kind is None:
            parent = os.path.basename(os.path.dirname(path))
            kind = parent if parent in RUN_KINDS[1:] else "small_molecule"
        key = (kind, os.path.basename(path), size)
        if key in out and out[key] != name:
            clash.add(key)
        out[key] = name
    return {k: v for k, v in out.items() if k not in clash}


def record_names(registry: str | os.PathLike, rows: list[dict[str, str]]) -> int:
    """Add the names :func:`runs_dir_samples` gave (``rows``) to ``registry``; returns how many
    were new. The workflow calls it when it starts running, so a dry run writes nothing. A
    path with a tab or a line break cannot be a row of the registry: such a file keeps a name
    only as long as no other file takes it first (file names that are not UTF-8, from a
    latin-1 share, are kept byte for byte)."""
    old = _registry_rows(registry)
    known = {p: (name, size, kind) for name, p, size, kind in old}
    new, sized = {}, {}
    for row in rows:
        r = os.path.realpath(row["path"])
        if {"\t", "\n", "\r"} & set(r):
            continue
        entry = (str(row["sample"]), _size(r), row.get("kind") or "small_molecule")
        if known.get(r, ("", None))[0] != entry[0]:
            new[r] = entry
        elif known[r] != entry:  # the size it has now (a re-sent file), or a size or kind
            sized[r] = entry  # first recorded
    if new or sized:
        from msid.atomic import write_text

        Path(registry).parent.mkdir(parents=True, exist_ok=True)
        merged = {**known, **sized, **new}
        write_text(registry, "sample\tpath\tsize\tkind\n" + "".join(
            f"{n}\t{r}\t{'' if size is None else size}\t{kind or ''}\n"
            for r, (n, size, kind) in merged.items()), errors="surrogateescape")
    return len(new)


def runs_dir_samples(folder: str | os.PathLike, taken: set[str] | None = None,
                     listed: set[str] | None = None,
                     registry: str | os.PathLike | None = None,
                     write_registry: bool = True) -> list[dict[str, str]]:
    """``{sample, path, kind, file}`` for every run file of ``folder`` and of its kind
    subfolders, in name order. ``taken``: sample names already in use (the sample sheet's);
    ``listed``: paths the sheet already holds (compared resolved), which are skipped.
    ``registry``: a TSV (``sample, path, size, kind``) of the names files were given before:
    a file keeps its name, and a name once given is never given to another file (its results
    stay its own); new names are added to it (:func:`record_names`) unless ``write_registry`` is
    False (the workflow records them when it starts running, not on a dry run)."""
    taken = set(taken or ())
    rows_before = _registry_rows(registry)
    known = {p: name for name, p, *_ in rows_before}
    listed = {os.path.realpath(p) for p in (listed or ())}
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(
            f"runs_dir '{folder}' is not a folder: set runs_dir to the folder run files are "
            "dropped into (--config runs_dir=/path/to/runs)")
    found = [(p, k) for p, k, why in _entries(folder)
             if not why and p.is_file() and os.path.realpath(p) not in listed]
    real = [os.path.realpath(p) for p, _ in found]
    stems = [RUN_FILE.sub("", p.name) for p, _ in found]
    names: list[str | None] = [None] * len(found)
    for i, r in enumerate(real):  # the name a file was given before
        if known.get(r) and known[r] not in taken:
            names[i] = known[r]
            taken.add(known[r])
    moved = _moved_names(rows_before, set(real))
    for i, (p, kind) in enumerate(found):  # ... or at its place in a folder since moved
        name = moved.get((kind, p.name, _size(p))) if moved and names[i] is None else None
        if name and name not in taken:
            names[i] = name
            taken.add(name)
    taken |= set(known.values())  # never handed to another file
    # then a file whose name is already a safe sample name keeps it, and the others are named
    # after them (so the order in which files arrive matters only for clashing unsafe names)
    for i, stem in enumerate(stems):
        if names[i] is None and SAMPLE_NAME.match(stem) and not clashes(stem, taken):
            names[i] = stem
            taken.add(stem)
    for i, stem in enumerate(stems):
        if names[i] is None:
            names[i] = safe_sample_name(stem, taken)
            taken.add(names[i])
    rows = [{"sample": str(name), "path": str(path), "kind": kind, "file": path.name}
            for (path, kind), name in zip(found, names, strict=True)]
    if registry and write_registry:
        record_names(registry, rows)
    return rows
