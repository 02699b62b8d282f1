"""Identification methods: a registry of name -> factory, each method ranks one query at a time.

A method sees a :class:`Query` (peaks + precursor metadata, never the true structure) and,
when it ranks candidates, the query's candidate list. Model families register theirs with
:func:`register`; ``msid identify --method NAME`` and the benchmark harness find them here.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from itertools import islice
from typing import Protocol

import numpy as np

from msid.candidate_sets import CandidateTable, candidates_for_queries
from msid.chem.adducts import default_adduct, ion_mz, neutral_mass
from msid.chem.fingerprints import tanimoto_many
from msid.chem.structures import Structure, flat_smiles, parse_structure, smiles_exact_mass
from msid.method_kinds import method_table
from msid.progress import progress_bar
from msid.rankings import (
    ADDUCT_ASSUMED,
    PRECURSOR_ONLY,
    RankedCandidate,
    rows_for_query,
    top_delta_score,
)
from msid.search.library import LibrarySearchConfig, SpectralLibrary
from msid.store import SpectrumStore


@dataclass
class Query:
    query_id: str
    precursor_mz: float
    adduct: str
    ion_mode: str
    charge: int
    mz: np.ndarray
    intensity: np.ndarray
    rt: float = math.nan
    formula: str = ""  # molecular formula when the input carries one (a library record, an
    #                    MGF FORMULA= line); only generators read it, as a constraint


def iter_queries(store: SpectrumStore, rows: list[int] | None = None) -> Iterator[Query]:
    md = store.metadata.to_dict("records")  # one conversion, not a Series per query
    rows = list(range(len(store))) if rows is None else rows
    for start in range(0, len(rows), 2048):  # a few reads per block, not two per query
        block = rows[start:start + 2048]
        for r, (mz, inten) in zip(block, store.peaks_many(block), strict=True):
            m = md[r]
            yield Query(str(m["id"]), float(m["precursor_mz"]), str(m["adduct"]),
                        str(m["ion_mode"]), int(m["charge"]), mz, inten, float(m["rt"]),
                        str(m.get("formula", "")))


class Method(Protocol):
    name: str
    needs_candidates: bool  # True: ranks given candidates; False: proposes its own answers
    needs_library: bool
    # optional: ``precursor_ppm = False`` (EI methods) leaves the ppm error of a candidate's
    # mass against the query's precursor out; ``why_empty(query, candidates)`` says why a
    # query got no answer

    def rank(self, query: Query, candidates: list[Structure] | None) -> list[RankedCandidate]:
        ...


@dataclass
class MethodResources:
    """What a method factory may use. Unused fields stay None."""

    library: SpectralLibrary | None = None
    model_path: str | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)


_REGISTRY: dict[str, Callable[[MethodResources], Method]] = {}
#: msid's modules that register further methods (a new family's ``methods`` module joins
#: them); imported on first use so that a missing optional dependency (torch for the learned
#: methods) only removes those methods
METHOD_MODULES = ("msid.models.methods", "msid.generation.methods", "msid.ei.methods")
#: entry-point group through which another installed package adds methods: in its
#: pyproject.toml, [project.entry-points."msid.methods"] my_methods = "my_pkg.methods" (a
#: module that calls :func:`register`); msid imports it with its own plugins
ENTRY_POINT_GROUP = "msid.methods"
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in METHOD_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as e:
            _PLUGIN_ERRORS[module] = str(e)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plugin removes its methods, never msid's
            _PLUGIN_ERRORS[f"{ep.name} ({ep.value})"] = f"{type(e).__name__}: {e}"


def plugin_errors() -> dict[str, str]:
    """Plugin modules (msid's own and installed entry points) that failed to load, and why."""
    _load_plugins()
    return dict(_PLUGIN_ERRORS)


def register(name: str) -> Callable:
    """Decorator: ``factory`` builds method ``name``. A name is registered once: a plugin
    cannot silently replace another's method (msid's own included)."""
    def deco(factory: Callable[[MethodResources], Method]) -> Callable:
        old = _REGISTRY.get(name)
        if old is not None and old is not factory:
            raise ValueError(f"method '{name}' is already registered (by {old.__module__}); "
                             f"{factory.__module__} cannot register it again")
        _REGISTRY[name] = factory
        return factory
    return deco


def available() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def registered_by(name: str) -> str:
    """The module whose factory builds method ``name`` ('' when none does)."""
    _load_plugins()
    factory = _REGISTRY.get(name)
    return factory.__module__ if factory is not None else ""


def make_method(name: str, resources: MethodResources) -> Method:
    if name not in _REGISTRY:  # core methods need no plugin (and no torch import)
        _load_plugins()
    if name not in _REGISTRY:
        why = "".join(f"; {m} not loaded: {e}" for m, e in _PLUGIN_ERRORS.items())
        raise KeyError(f"unknown method '{name}' (available: {', '.join(available())}{why})")
    return _REGISTRY[name](resources)


def _query_seed(seed: int, query_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{query_id}".encode()).digest()[:8], "big")


def ranked_candidates(candidates: Sequence[Structure], scores: Sequence[float] | np.ndarray
                      ) -> list[RankedCandidate]:
    """``candidates`` as a method returns them: by decreasing score, ties in candidate order
    (the harness counts ties against the truth however they are listed)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    return [RankedCandidate(candidates[i].smiles_flat, candidates[i].inchikey, float(scores[i]))
            for i in order]


class RandomRanking:
    """Baseline: candidates in a random order (seeded per query; reproducible)."""

    name = "random"
    needs_candidates = True
    needs_library = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def rank(self, query: Query, candidates: list[Structure] | None) -> list[RankedCandidate]:
        if not candidates:
            return []
        rng = np.random.default_rng(_query_seed(self.seed, query.query_id))
        return ranked_candidates(candidates, rng.random(len(candidates)))


PRECURSOR_ONLY_SCORE = 0.01  # ceiling of a precursor-only match's score: below any real match
#: how far a library spectrum's stated precursor may lie from its structure's ion and still
#: be that ion (572.0000 for 572.3582: rounded): beyond it the record's adduct or structure
#: is mislabelled ([M]+ as [M+H]+, an isotope-labelled standard as its parent), and a hit's
#: ppm error is against the stated m/z
ION_SLIP_DA = 0.5


class LibrarySearch:
    """Spectral library search (entropy similarity).

    Without candidates: the library's best identity hits (precursor within tolerance), one row per
    structure, with the library entry's name, matched peaks and precursor ppm error. A query
    without fragment evidence (no fragment peak below its precursor, or none shared with a
    library spectrum) still gets the library entries whose precursor is within tolerance,
    flagged :data:`PRECURSOR_ONLY` and scored at most
    :data:`PRECURSOR_ONLY_SCORE` (nearer precursor: higher).

    With candidates: each candidate scores max over library hits h of
    similarity(h) x Tanimoto(candidate, structure of h), using identity and analogue (open)
    hits, so structures absent from the library are still ranked by their nearest library
    neighbours; ties (no similar hit) keep the candidates' given order.
    """

    name = "library"
    needs_candidates = False
    needs_library = True

    def __init__(self, library: SpectralLibrary, analog_k: int = 20) -> None:
        self.library = library
        self.analog_k = analog_k
        md = library.metadata
        self._smiles = md["smiles"].to_numpy()
        self._inchikey = md["inchikey"].to_numpy()
        self._ik14 = np.array([str(k)[:14] for k in self._inchikey], dtype=object)
        self._ids = md["id"].to_numpy()
        self._names = md["name"].to_numpy() if "name" in md else np.full(len(md), "")
        self._prec = md["precursor_mz"].to_numpy(dtype=np.float64)
        self._adducts = (md["adduct"].fillna("").astype(str).to_numpy() if "adduct" in md
                         else np.full(len(md), ""))

    def _ppm(self, row: int, query: Query) -> float:
        """ppm error of the query's precursor against the hit structure's ion: its exact mass
        (isotope labels counted) as the query's adduct when it states one, else as the
        library spectrum's: the ion and m/z that mzTab-M states (``adduct_ion``,
        ``theoretical_mass_to_charge``). Against
        the library spectrum's stated precursor m/z where the formula or the ion is unknown,
        or where that precursor is more than :data:`ION_SLIP_DA` from the ion (a record whose
        adduct or structure is mislabelled: its stated ion is not its structure's)."""
        mz, lib_mz = query.precursor_mz, float(self._prec[row])
        theo = ion_mz(smiles_exact_mass(str(self._smiles[row])), mz,
                      query.adduct or str(self._adducts[row]), query.ion_mode, query.charge)
        ok = math.isfinite(theo) and theo > 0 and not abs(lib_mz - theo) > ION_SLIP_DA
        ref = theo if ok else lib_mz
        return (mz - ref) / ref * 1e6 if ref > 0 else math.nan

    def _candidate(self, row: int, score: float, matched: int, query: Query,
                   note: str = "") -> RankedCandidate:
        # library stores hold standardised structures with their InChIKey: only the
        # stereo-free form used for ranking is left to write
        flat = flat_smiles(str(self._smiles[row]))
        ik = str(self._inchikey[row]) if flat else ""
        return RankedCandidate(flat, ik, score, str(self._ids[row]),
                               name=str(self._names[row]), ppm_error=self._ppm(row, query),
                               matched_peaks=matched, note=note,
                               adduct=str(self._adducts[row]))

    def _precursor_matches(self, query: Query) -> list[tuple[int, float]]:
        lo, hi = self.library._window(query.precursor_mz)
        tol = self.library.tolerance(query.precursor_mz)
        dm = np.abs(self.library.precursor[lo:hi] - query.precursor_mz)
        order = np.argsort(dm, kind="stable")
        order = order[~self.library.opposite(lo, hi, query.ion_mode)[order]]
        return [(int(self.library.order[lo + i]),
                 PRECURSOR_ONLY_SCORE * float(1 - dm[i] / (tol + 1e-12)) + 1e-6) for i in order]

    def why_empty(self, query: Query, candidates: list[Structure] | None) -> str:
        if candidates is not None:
            return "no candidates" if not candidates else "no similar library spectrum"
        lo, hi = self.library._window(query.precursor_mz)
        if hi > lo and self.library.opposite(lo, hi, query.ion_mode).all():
            return (f"no {query.ion_mode}-mode library entry within precursor tolerance (only "
                    "entries of the other ion mode)")
        return "no library entry within precursor tolerance"

    def rank(self, query: Query, candidates: list[Structure] | None) -> list[RankedCandidate]:
        if candidates is None:  # every hit in the window, one row per structure, then top-k
            hits = self.library.search(query.precursor_mz, query.mz, query.intensity, top_k=0,
                                       ion_mode=query.ion_mode)
            found = [(h.library_index, h.score, h.n_matched, "") for h in hits]
            if not found:  # no fragment evidence: precursor-mass matches, flagged, scored low
                found = [(row, score, 0, PRECURSOR_ONLY)
                         for row, score in self._precursor_matches(query)]
            out, seen = [], set()
            for row, score, matched, note in found:
                key = self._ik14[row]
                if key and key in seen:  # a better hit of this structure is in already
                    continue
                c = self._candidate(row, score, matched, query, note)
                seen.add(c.inchikey[:14])  # '' (no structure) is never a key above
                out.append(c)
                # a second structure stays in whatever top-k is asked for: the top hit's
                # delta_score is its margin over it (the caller cuts after measuring it)
                if self.library.cfg.top_k and len(out) >= max(self.library.cfg.top_k, 2):
                    break
            return out
        if not candidates:
            return []
        hits = self.library.search(query.precursor_mz, query.mz, query.intensity,
                                   ion_mode=query.ion_mode)
        identity = {h.library_index for h in hits}  # within the precursor tolerance
        hits = hits + self.library.analog_search(query.precursor_mz, query.mz, query.intensity,
                                                 ion_mode=query.ion_mode,
                                                 top_k=self.analog_k)
        scores = np.zeros(len(candidates))
        source = np.full(len(candidates), -1)  # the identity hit a candidate's score came from
        cand_smiles = [c.smiles_flat for c in candidates]
        cand_ik14 = np.array([c.inchikey14 for c in candidates], dtype=object)
        best_hit: dict[str, tuple[float, int]] = {}
        for h in hits:  # one Tanimoto row per distinct library structure, at its best score
            smi = str(self._smiles[h.library_index])
            if smi and h.score > best_hit.get(smi, (0.0, -1))[0]:
                best_hit[smi] = (h.score, h.library_index)
        for smi, (sim, row) in best_hit.items():
            t = tanimoto_many(smi, cand_smiles)
            same = (cand_ik14 == self._ik14[row]) if self._ik14[row] else np.zeros(len(t), bool)
            t[same] = 1.0  # the library's structure itself, however its SMILES is written
            better = sim * t > scores
            scores = np.where(better, sim * t, scores)
            named = same & (row in identity)  # an identity hit, not an analogue of it
            source = np.where(better & named, row, np.where(better, -1, source))
        out = ranked_candidates(candidates, scores)
        by_ik = {c.inchikey14: int(r) for c, r in zip(candidates, source, strict=True) if r >= 0}
        return [replace(c, library_id=str(self._ids[r]), name=str(self._names[r]))
                if (r := by_ik.get(c.inchikey[:14], -1)) >= 0 else c
                for c in out]  # a candidate that is an identity hit's structure names it


@register("random")
def _random(res: MethodResources) -> Method:
    return RandomRanking(res.seed)


@register("library")
def _library(res: MethodResources) -> Method:
    if res.library is None:
        raise ValueError("method 'library' needs a spectral library (--library)")
    return LibrarySearch(res.library, analog_k=int(res.options.get("analog_k", 20)))


def load_library(path: str, config: dict | None = None, cache: bool = False,
                 n_jobs: int = 1) -> SpectralLibrary:
    """A library store as a search index; ``cache`` keeps the built index beside the store;
    ``n_jobs`` processes build it."""
    return SpectralLibrary(path, LibrarySearchConfig.from_dict(config), cache=cache,
                           n_jobs=n_jobs)


def rank_queries(method: Method, store: SpectrumStore, rows: list[int] | None = None,
                 candidates: dict[str, list[Structure]] | None = None, top_k: int = 0,
                 progress: bool = True, label: str | None = None,
                 candidate_source: str = "pool") -> list[dict]:
    """Rows of the Rankings table for ``rows`` of ``store`` (all when None).

    ``candidate_source`` ("pool", "pool-formula" or "file") names where ``candidates`` came
    from (the pool by mass or by formula, or a candidate file), for the
    reason a query without any is given.

    Every query gets rows: its ranked candidates (with the query's rt, precursor m/z and
    adduct, and the candidate's ppm error where the method left it out), or one rank-0 row
    whose ``note`` says why there is no answer.
    """
    out: list[dict] = []
    rows = list(range(len(store))) if rows is None else rows
    rank_many = getattr(method, "rank_many", None)  # batched methods (models) rank faster
    batch = 256 if rank_many else 1
    bar = progress_bar(total=len(rows), desc=f"identify {method.name}", unit=" queries",
                       disable=not progress, mininterval=2)
    queries = iter_queries(store, rows)
    while chunk := list(islice(queries, batch)):
        cands = [None if candidates is None else candidates.get(q.query_id, []) for q in chunk]
        results = (rank_many(chunk, cands) if rank_many else
                   [method.rank(q, c) for q, c in zip(chunk, cands, strict=True)])
        for q, c, ranked in zip(chunk, cands, results, strict=True):
            delta = top_delta_score(ranked)  # before the top-k cut
            ranked = ranked[:top_k] if top_k else ranked
            filled, assumed = [], ""
            if getattr(method, "precursor_ppm", True):  # EI methods: no precursor ion
                ranked, filled, assumed = _with_ppm(q, ranked)
            rows = rows_for_query(q.query_id, label or method.name, ranked,
                                  rt=q.rt, precursor_mz=q.precursor_mz, adduct=q.adduct,
                                  reason="" if ranked else _why_empty(method, q, c,
                                                                      candidate_source),
                                  delta_score=delta)
            for k in filled if assumed else ():  # the ion its ppm error was computed for
                rows[k]["adduct"] = assumed
                rows[k]["note"] = "; ".join(filter(None, (rows[k]["note"], ADDUCT_ASSUMED)))
            out += rows
        bar.update(len(chunk))
    bar.close()
    return out


def _why_empty(method: Method, query: Query, candidates: list[Structure] | None,
               candidate_source: str = "pool") -> str:
    explain = getattr(method, "why_empty", None)
    if explain is not None:
        return explain(query, candidates)
    if getattr(method, "needs_candidates", False) and not candidates:
        if candidate_source == "file":
            return "no candidates (none for this query in the candidate file)"
        if candidate_source == "pool-formula":
            return ("no candidates (none in the pool with the query's formula)" if query.formula
                    else "no candidates (none in the pool with the formula of the query's "
                         "structure, or it carries neither a structure nor a formula)")
        mass = neutral_mass(query.precursor_mz, query.adduct, query.ion_mode, query.charge)
        if not math.isfinite(mass):
            return "no candidates (neutral mass unknown: no adduct or ion mode)"
        return "no candidates (none in the pool within the mass window)"
    return "no answer from the method"


def _with_ppm(query: Query, ranked: list[RankedCandidate]
              ) -> tuple[list[RankedCandidate], list[int], str]:
    """Candidates with the ppm error of the query's precursor m/z against the candidate's ion
    (its exact mass as the query's ion, as library hits get theirs) filled in; the positions
    filled; and the adduct that ion assumed ('' when the query states its own): [M+H]+ /
    [M-H]- (or [M+zH]z+ ...) by ion mode and charge."""
    if not ranked or all(not math.isnan(c.ppm_error) for c in ranked):
        return ranked, [], ""
    mz = query.precursor_mz
    if not math.isfinite(neutral_mass(mz, query.adduct, query.ion_mode, query.charge)):
        return ranked, [], ""
    out, filled = [], []
    for k, c in enumerate(ranked):
        st = parse_structure(c.smiles) if math.isnan(c.ppm_error) and c.smiles else None
        theo = (ion_mz(st.exact_mass, mz, query.adduct, query.ion_mode, query.charge)
                if st and st.exact_mass > 0 else math.nan)
        if math.isfinite(theo) and theo > 0:
            out.append(replace(c, ppm_error=(mz - theo) / theo * 1e6))
            filled.append(k)
        else:
            out.append(c)
    assumed = "" if query.adduct else default_adduct(query.ion_mode, query.charge)
    return out, filled, assumed


def benchmark_method(name: str, *, seed: int = 0, model_path: str | None = None,
                     library: str | os.PathLike | None = None,
                     search: dict | None = None) -> Method:
    """A registered method as the benchmark runs it: its shipped model, and the train-fold
    library only when the method searches one (``search``: the library-search scoring)."""
    resources = MethodResources(seed=seed, model_path=model_path or None)
    if method_table()[name].needs_library:
        if library is None:
            raise ValueError(f"method {name!r} searches a spectral library; none given")
        resources.library = load_library(str(library), search)
    return make_method(name, resources)


def rank_benchmark_queries(method: Method, queries: str | os.PathLike,
                           candidates: str | os.PathLike | CandidateTable,
                           seed: int = 0) -> list[dict]:
    """Rankings rows of every query of a benchmark query store over its candidate set (the
    same ``seed`` shuffles each set, as for every method)."""
    with SpectrumStore(queries) as store:
        rows = list(range(len(store)))
        cands = candidates_for_queries(store, rows, candidate_file=candidates, seed=seed)
        return rank_queries(method, store, rows, cands)
