"""``msid identify``: queries (+ library / candidates) -> a Rankings table.

Queries may be a spectrum store (``.h5``) or any readable file (mzML/mzXML/MGF/MSP, gz allowed),
which is converted and preprocessed on the way in; bad records are quarantined and reported,
never fatal.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from msid.chem.candidates import CandidateIndex, PoolSource, build_index, sources_digest
from msid.chem.structures import Structure
from msid.convert import convert_file
from msid.fdr import add_qvalues
from msid.methods import Method, rank_queries
from msid.preprocess import PREPROCESS_VERSION, PreprocessConfig
from msid.rankings import quarantined_rows, write_rankings
from msid.resources import data_dir, resource
from msid.store import SpectrumStore


def default_pool_sources(resources: Path | None = None) -> list[PoolSource]:
    cdir = (resources or data_dir()) / "candidates"
    return [PoolSource(cdir / "candidate_pool.tsv.gz", "pool"),
            PoolSource(cdir / "moses_train_smiles.csv.gz", "moses")]


def default_library() -> Path:
    """The shipped MassBank library (under :func:`msid.resources.data_dir`)."""
    return resource("massbank_esi", "massbank_esi_msms.mgf.gz")


def cache_dir() -> Path:
    return Path(os.environ.get("MSID_CACHE", Path.home() / ".cache" / "msid"))


def cached_index(path: str | os.PathLike | None = None, n_jobs: int = 2) -> CandidateIndex:
    """The candidate index at ``path``; without a path, the shipped pool, built once and cached."""
    if path:
        return CandidateIndex(path)
    sources = default_pool_sources()
    target = cache_dir() / f"candidates-{sources_digest(sources)}.npz"
    if not target.exists():  # said on stderr: stdout may be carrying a table (--out -)
        build_index(sources, target, n_jobs=n_jobs,
                    log=lambda *a: print(*a, file=sys.stderr, flush=True))
    return CandidateIndex(target)


def cached_library(path: str | os.PathLike | None = None, n_jobs: int = 2) -> Path:
    """A library store: ``path`` itself if it is one, else ``path`` (default: the shipped
    MassBank library) converted and preprocessed once and cached under ``$MSID_CACHE``."""
    src = Path(path) if path else default_library()
    if src.suffix == ".h5":
        return src
    digest = sources_digest([PoolSource(src, "library")])
    target = cache_dir() / f"library-{digest}-v{PREPROCESS_VERSION}.h5"
    if not target.exists():  # one pass: convert + clean (atomic write)
        convert_file(src, target, n_jobs=n_jobs, progress=False,
                     clean=PreprocessConfig(require_structure=True))
    return target


def load_queries(path: str | os.PathLike, workdir: str | os.PathLike,
                 preprocess: PreprocessConfig | None = None, n_jobs: int = 1,
                 warn: Callable[[str], None] | None = None) -> SpectrumStore:
    """Queries as a store: an ``.h5`` store as is, any other file converted + preprocessed
    (by default a query's structure annotation is kept as written: it never drops a query).
    ``warn`` hears of repeated record ids (kept as ``<id>#2``...)."""
    path = Path(path)
    if path.suffix == ".h5":
        return SpectrumStore(path)
    clean = Path(workdir) / "queries.h5"
    stats = convert_file(path, clean, n_jobs=n_jobs, progress=False,
                         clean=preprocess or PreprocessConfig(standardise_structures=False))
    if stats.renamed and warn is not None:  # rows would carry ids the user never wrote
        warn(stats.renamed_note(path))
    return SpectrumStore(clean)


def identify_to_file(method: Method, store: SpectrumStore, out: str | os.PathLike,
                     candidates: dict[str, list[Structure]] | None = None,
                     top_k: int = 0, progress: bool = True, fdr: bool = True,
                     candidate_source: str = "pool", seed: int = 0) -> Path:
    """Rank every query and write the table; library search hits get target-decoy q-values
    (unless ``fdr`` is False; decoys drawn with ``seed``, as the workflow's ``identify_run``
    does). ``candidate_source``: "pool", "pool-formula" or "file" (see rank_queries)."""
    rows = rank_queries(method, store, None, candidates, top_k, progress,
                        candidate_source=candidate_source)
    library = getattr(method, "library", None)
    if fdr and candidates is None and method.name == "library" and library is not None:
        add_qvalues(rows, library, store, seed=seed)
    rows += quarantined_rows(store.quarantine, [method.name],  # every input record has rows
                             stored=store.metadata["id"].astype(str))
    return write_rankings(rows, out)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="msid-")

