"""``msid identify``: queries (+ library / candidates) -> a Rankings table.

Queries may be a spectrum store (``.h5``) or any readable file (mzML/mzXML/MGF/MSP, gz allowed),
which is converted and preprocessed on the way in; bad records are quarantined and reported,
never fatal.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from msid.candidate_sets import candidates_for_queries
from msid.chem.candidates import CandidateIndex, PoolSource, build_index, sources_digest
from msid.chem.structures import Structure
from msid.convert import convert_file
from msid.fdr import add_qvalues
from msid.method_kinds import check_methods
from msid.methods import Method, MethodResources, make_method, rank_queries
from msid.preprocess import PreprocessConfig, preprocess_store
from msid.rankings import write_rankings
from msid.search.library import SpectralLibrary
from msid.store import SpectrumStore

REPO_RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def default_pool_sources(resources: Path = REPO_RESOURCES) -> list[PoolSource]:
    cdir = resources / "candidates"
    return [PoolSource(cdir / "candidate_pool.tsv.gz", "pool"),
            PoolSource(cdir / "moses_train_smiles.csv.gz", "moses")]


DEFAULT_LIBRARY = REPO_RESOURCES / "massbank_esi" / "massbank_esi_msms.mgf.gz"


def cache_dir() -> Path:
    return Path(os.environ.get("MSID_CACHE", Path.home() / ".cache" / "msid"))


def cached_index(path: str | os.PathLike | None = None, n_jobs: int = 2) -> CandidateIndex:
    """The candidate index at ``path``; without a path, the shipped pool, built once and cached."""
    if path:
        return CandidateIndex(path)
    sources = default_pool_sources()
    target = cache_dir() / f"candidates-{sources_digest(sources)}.npz"
    if not target.exists():
        build_index(sources, target, n_jobs=n_jobs)
    return CandidateIndex(target)


def cached_library(path: str | os.PathLike | None = None, n_jobs: int = 2) -> Path:
    """A library store: ``path`` itself if it is one, else ``path`` (default: the shipped
    MassBank library) converted and preprocessed once and cached under ``$MSID_CACHE``."""
    src = Path(path) if path else DEFAULT_LIBRARY
    if src.suffix == ".h5":
        return src
    digest = sources_digest([PoolSource(src, "library")])
    target = cache_dir() / f"library-{digest}.h5"
    if not target.exists():
        raw = target.with_suffix(".raw.h5")
        convert_file(src, raw, n_jobs=n_jobs, progress=False)
        preprocess_store(raw, target, PreprocessConfig(require_structure=True), n_jobs=n_jobs,
                         progress=False)
        raw.unlink()
    return target


def load_queries(path: str | os.PathLike, workdir: str | os.PathLike,
                 preprocess: PreprocessConfig | None = None) -> SpectrumStore:
    """Queries as a store: an ``.h5`` store as is, any other file converted + preprocessed."""
    path = Path(path)
    if path.suffix == ".h5":
        return SpectrumStore(path)
    workdir = Path(workdir)
    raw, clean = workdir / "queries.raw.h5", workdir / "queries.h5"
    convert_file(path, raw, progress=False)
    preprocess_store(raw, clean, preprocess or PreprocessConfig(), progress=False)
    return SpectrumStore(clean)


def identify_to_file(method: Method, store: SpectrumStore, out: str | os.PathLike,
                     candidates: dict[str, list[Structure]] | None = None,
                     top_k: int = 0, progress: bool = True, fdr: bool = True) -> Path:
    """Rank every query and write the table; library search hits get target-decoy q-values
    (unless ``fdr`` is False)."""
    rows = rank_queries(method, store, None, candidates, top_k, progress)
    library = getattr(method, "library", None)
    if fdr and candidates is None and method.name == "library" and library is not None:
        add_qvalues(rows, library, store)
    return write_rankings(rows, out)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="msid-")


@dataclass
class RunMethodsConfig:
    """How a run's spectra are identified: ``methods`` in order (see :func:`identify_run`)."""

    methods: list[str] = field(default_factory=lambda: ["library"])
    top_k: int = 20
    fdr: float = 0.01  # a library hit is confident at q-value <= fdr (when q-values exist)
    confident_score: float = 0.7  # ... else at score >= this
    candidate_ppm: float = 10.0  # pool candidates within this of the query's neutral mass
    max_candidates: int = 256
    seed: int = 0
    options: dict = field(default_factory=dict)


def confident_queries(rows: list[dict], cfg: RunMethodsConfig) -> set[str]:
    """Queries whose top row is a confident answer: q-value <= fdr where estimated, else
    score >= confident_score."""
    out = set()
    for r in rows:
        if r["rank"] != 1:
            continue
        q = r.get("q_value", math.nan)
        ok = q <= cfg.fdr if isinstance(q, float) and math.isfinite(q) else (
            r["score"] >= cfg.confident_score)
        if ok:
            out.add(r["query_id"])
    return out


def identify_run(store: SpectrumStore, cfg: RunMethodsConfig, *,
                 library: SpectralLibrary | None = None, index: CandidateIndex | None = None,
                 model_dir: str | os.PathLike | None = None, kind: str = "small_molecule",
                 progress: bool = False) -> list[dict]:
    """Rankings rows for every spectrum of a run, from every configured method.

    Methods that propose their own answers (library search, with target-decoy q-values: see
    :mod:`msid.fdr`) run first on every spectrum; the
    methods that rank candidates (random, the learned models) then rank pool candidates, taken
    from ``index`` by the query's neutral mass, for the spectra without a confident answer.
    Every spectrum gets rows from at least one method, or a rank-0 row with the reason.
    """
    check_methods(cfg.methods, kind)
    methods = []
    for name in cfg.methods:
        model = Path(model_dir) / f"{name}.safetensors" if model_dir else None
        res = MethodResources(library=library, seed=cfg.seed, options=cfg.options,
                              model_path=str(model) if model and model.exists() else None)
        methods.append(make_method(name, res))
    everything = list(range(len(store)))
    ids = store.metadata["id"].astype(str).tolist()
    rows: list[dict] = []
    confident: set[str] = set()
    for m in methods:
        if not m.needs_candidates:
            found = rank_queries(m, store, everything, None, cfg.top_k, progress)
            if m.name == "library" and library is not None:
                add_qvalues(found, library, store, seed=cfg.seed)
            rows += found
            confident |= confident_queries(found, cfg)
    rankers = [m for m in methods if m.needs_candidates]
    rest = [i for i in everything if ids[i] not in confident]
    if rankers and rest:
        if index is None:
            raise ValueError(f"methods {[m.name for m in rankers]} rank pool candidates: "
                             "they need a candidate index")
        cands = candidates_for_queries(store, rest, index=index, kind="mass",
                                       ppm=cfg.candidate_ppm, max_n=cfg.max_candidates,
                                       seed=cfg.seed)
        for m in rankers:
            rows += rank_queries(m, store, rest, cands, cfg.top_k, progress)
    return rows
