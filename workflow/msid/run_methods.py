"""Every configured identification method on one run (the workflow's ``identify_run``).

Kept apart from :mod:`msid.identify` (file conversion for ``msid identify``) so that the rule
needs no file readers.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from msid.candidate_sets import candidates_for_queries
from msid.chem.candidates import CandidateIndex
from msid.chem.structures import Structure
from msid.fdr import add_qvalues
from msid.method_kinds import check_method_options, check_methods, method_table
from msid.methods import Method, MethodResources, make_method, rank_queries
from msid.rankings import CONFIDENT_FDR, MIN_DELTA_SCORE, confident_top
from msid.search.library import SpectralLibrary
from msid.store import SpectrumStore

log = logging.getLogger("msid.identify")


@dataclass
class RunMethodsConfig:
    """How a run's spectra are identified: ``methods`` in order (see :func:`identify_run`)."""

    methods: list[str] = field(default_factory=lambda: ["library"])
    top_k: int = 20
    fdr: float = CONFIDENT_FDR  # a library hit is confident at q-value <= fdr (none without)
    min_delta_score: float = MIN_DELTA_SCORE  # ... and only when no other structure's library
    #                                           spectrum scores within this of the top hit
    candidate_ppm: float = 10.0  # pool candidates within this of the query's neutral mass
    max_candidates: int = 256
    seed: int = 0
    options: dict = field(default_factory=dict)  # every method's (e.g. num_threads)
    method_options: dict[str, dict] = field(default_factory=dict)  # one method's, over options


def confident_queries(rows: list[dict], cfg: RunMethodsConfig) -> set[str]:
    """Queries whose top row is a confident answer, by the rule the reports use
    (:func:`msid.rankings.confident_top`)."""
    top = pd.DataFrame([r for r in rows if r["rank"] == 1],
                       columns=["query_id", "score", "q_value", "delta_score"])
    ok, _ = confident_top(top, cfg.fdr, cfg.min_delta_score)
    return set(top.loc[ok, "query_id"])


def identify_run(store: SpectrumStore, cfg: RunMethodsConfig, *,
                 library: SpectralLibrary | None = None, index: CandidateIndex | None = None,
                 model_dir: str | os.PathLike | None = None, kind: str = "small_molecule",
                 progress: bool = False) -> list[dict]:
    """Rankings rows for every spectrum of a run, from every configured method.

    Library search (with target-decoy q-values: see :mod:`msid.fdr`) runs first on every
    spectrum. For the spectra without a confident library answer, the methods that rank
    candidates (random, the learned models, GLMR) then rank pool candidates, taken from
    ``index`` by the query's neutral mass, and de novo generation proposes structures of its
    own. Every spectrum gets rows from at least one method, or a rank-0 row with the reason.
    Each method's start, its number of answered queries and its time are logged
    (``msid.identify``); ``progress`` adds a progress bar per method.
    """
    check_methods(cfg.methods, kind)
    check_method_options(cfg.method_options)
    methods = []
    table = method_table()
    for name in cfg.methods:
        own = table[name].models[:1] if name in table else ()
        # the method's own model file as its spec declares it (what the DAG hands the job)
        model = Path(model_dir) / f"{own[0]}.safetensors" if model_dir and own else None
        res = MethodResources(library=library, seed=cfg.seed,
                              options={**cfg.options, **cfg.method_options.get(name, {})},
                              model_path=str(model) if model and model.exists() else None)
        methods.append(make_method(name, res))
    everything = list(range(len(store)))
    ids = store.metadata["id"].astype(str).tolist()
    rows: list[dict] = []
    confident: set[str] = set()
    for m in methods:
        if m.needs_library:
            found = _ranked(m, store, everything, None, cfg.top_k, progress)
            if m.name == "library" and library is not None:
                add_qvalues(found, library, store, seed=cfg.seed)
            rows += found
            now = confident_queries(found, cfg)
            log.info("%s: %d of %d spectra answered confidently", m.name, len(now),
                     len(everything))
            confident |= now
    rankers = [m for m in methods if m.needs_candidates]
    generators = [m for m in methods if not m.needs_candidates and not m.needs_library]
    rest = [i for i in everything if ids[i] not in confident]
    if (rankers or generators) and len(rest) < len(everything):
        log.info("%d spectra without a confident library answer go on to %s", len(rest),
                 ", ".join(m.name for m in rankers + generators))
    if rankers and rest:
        if index is None:
            raise ValueError(f"methods {[m.name for m in rankers]} rank pool candidates: "
                             "they need a candidate index")
        cands = candidates_for_queries(store, rest, index=index, kind="mass",
                                       ppm=cfg.candidate_ppm, max_n=cfg.max_candidates,
                                       seed=cfg.seed)
        log.info("pool candidates for %d spectra (%d with none within %g ppm)", len(rest),
                 sum(not cands.get(ids[i]) for i in rest), cfg.candidate_ppm)
        for m in rankers:
            rows += _ranked(m, store, rest, cands, cfg.top_k, progress)
    for m in generators:
        if rest:
            rows += _ranked(m, store, rest, None, cfg.top_k, progress)
    return rows


def _ranked(method: Method, store: SpectrumStore, rows: list[int],
            candidates: dict[str, list[Structure]] | None, top_k: int,
            progress: bool) -> list[dict]:
    """:func:`rank_queries`, its start, answers and time logged."""
    log.info("%s: ranking %d spectra", method.name, len(rows))
    start = time.perf_counter()
    found = rank_queries(method, store, rows, candidates, top_k, progress)
    answered = len({r["query_id"] for r in found if r["rank"] >= 1})
    seconds = time.perf_counter() - start
    log.info("%s: %d of %d spectra answered in %.1f s (%.1f spectra/s)", method.name,
             answered, len(rows), seconds, len(rows) / seconds if seconds > 0 else 0.0)
    return found
