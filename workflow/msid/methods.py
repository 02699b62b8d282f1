"""Identification methods: a registry of name -> factory, each method ranks one query at a time.

A method sees a :class:`Query` (peaks + precursor metadata, never the true structure) and,
when it ranks candidates, the query's candidate list. Model families register theirs with
:func:`register`; ``msid identify --method NAME`` and the benchmark harness find them here.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

import numpy as np
from tqdm import tqdm

from msid.chem.fingerprints import tanimoto_many
from msid.chem.structures import Structure, parse_structure
from msid.rankings import RankedCandidate, rows_for_query
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


def iter_queries(store: SpectrumStore, rows: list[int] | None = None) -> Iterator[Query]:
    md = store.metadata.to_dict("records")  # one conversion, not a Series per query
    rows = list(range(len(store))) if rows is None else rows
    for r in rows:
        mz, inten = store.peaks(r)
        m = md[r]
        yield Query(str(m["id"]), float(m["precursor_mz"]), str(m["adduct"]),
                    str(m["ion_mode"]), int(m["charge"]), mz, inten)


class Method(Protocol):
    name: str
    needs_candidates: bool  # True: ranks given candidates; False: proposes its own answers
    needs_library: bool

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
# modules that register further methods; imported on first use so that a missing optional
# dependency (torch for the learned methods) only removes those methods
_PLUGINS = ("msid.models.methods",)
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in _PLUGINS:
        try:
            importlib.import_module(module)
        except ImportError as e:
            _PLUGIN_ERRORS[module] = str(e)


def register(name: str) -> Callable:
    def deco(factory: Callable[[MethodResources], Method]) -> Callable:
        _REGISTRY[name] = factory
        return factory
    return deco


def available() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def make_method(name: str, resources: MethodResources) -> Method:
    _load_plugins()
    if name not in _REGISTRY:
        why = "".join(f"; {m} not loaded: {e}" for m, e in _PLUGIN_ERRORS.items())
        raise KeyError(f"unknown method '{name}' (available: {', '.join(available())}{why})")
    return _REGISTRY[name](resources)


def _query_seed(seed: int, query_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{query_id}".encode()).digest()[:8], "big")


def _ranked(candidates: list[Structure], scores: np.ndarray) -> list[RankedCandidate]:
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
        return _ranked(candidates, rng.random(len(candidates)))


class LibrarySearch:
    """Spectral library search (entropy similarity).

    Without candidates: the library's best identity hits (precursor within tolerance), one row per
    structure. With candidates: each candidate scores max over library hits h of
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
        self._ids = md["id"].to_numpy()

    def rank(self, query: Query, candidates: list[Structure] | None) -> list[RankedCandidate]:
        hits = self.library.search(query.precursor_mz, query.mz, query.intensity)
        if candidates is None:
            out, seen = [], set()
            for h in hits:
                st = parse_structure(str(self._smiles[h.library_index]))
                ik = st.inchikey if st else str(self._inchikey[h.library_index])
                if ik and ik[:14] in seen:
                    continue
                seen.add(ik[:14])
                out.append(RankedCandidate(st.smiles_flat if st else "", ik, h.score,
                                           str(self._ids[h.library_index])))
            return out
        if not candidates:
            return []
        hits = hits + self.library.analog_search(query.precursor_mz, query.mz, query.intensity,
                                                 top_k=self.analog_k)
        scores = np.zeros(len(candidates))
        cand_smiles = [c.smiles_flat for c in candidates]
        best_hit: dict[str, float] = {}
        for h in hits:  # one Tanimoto row per distinct library structure, at its best score
            smi = str(self._smiles[h.library_index])
            if smi and h.score > best_hit.get(smi, 0.0):
                best_hit[smi] = h.score
        for smi, sim in best_hit.items():
            scores = np.maximum(scores, sim * tanimoto_many(smi, cand_smiles))
        return _ranked(candidates, scores)


@register("random")
def _random(res: MethodResources) -> Method:
    return RandomRanking(res.seed)


@register("library")
def _library(res: MethodResources) -> Method:
    if res.library is None:
        raise ValueError("method 'library' needs a spectral library (--library)")
    return LibrarySearch(res.library, analog_k=int(res.options.get("analog_k", 20)))


def load_library(path: str, config: dict | None = None) -> SpectralLibrary:
    return SpectralLibrary(path, LibrarySearchConfig.from_dict(config))


def rank_queries(method: Method, store: SpectrumStore, rows: list[int] | None = None,
                 candidates: dict[str, list[Structure]] | None = None, top_k: int = 0,
                 progress: bool = True, label: str | None = None) -> list[dict]:
    """Rows of the Rankings table for ``rows`` of ``store`` (all when None)."""
    out: list[dict] = []
    rows = list(range(len(store))) if rows is None else rows
    rank_many = getattr(method, "rank_many", None)  # batched methods (models) rank faster
    batch = 256 if rank_many else 1
    bar = tqdm(total=len(rows), desc=f"identify {method.name}", unit=" queries",
               disable=not progress, mininterval=2)
    queries = iter_queries(store, rows)
    while chunk := list(islice(queries, batch)):
        cands = [None if candidates is None else candidates.get(q.query_id, []) for q in chunk]
        results = (rank_many(chunk, cands) if rank_many else
                   [method.rank(q, c) for q, c in zip(chunk, cands, strict=True)])
        for q, ranked in zip(chunk, results, strict=True):
            out += rows_for_query(q.query_id, label or method.name,
                                  ranked[:top_k] if top_k else ranked)
        bar.update(len(chunk))
    bar.close()
    return out
