"""What each identification method is, in one table the workflow reads before anything runs
(no heavy imports): which kind of run it serves, whether it ranks candidates from the pool
index, whether it reads a spectral library, which shipped model files it reads, and whether
the ESI candidate-ranking benchmark (``benchmark.methods``) ranks with it.

Small-molecule runs: spectral library search, the random baseline, the learned retrieval
models and GLMR (which rank candidates from the pool index) and de novo generation (which
proposes its own structures). EI runs: the EI family's methods (their benchmark is the EI
leaderboard, ``ei_search.benchmark``). Peptide runs use de novo peptide sequencing (configured
under ``peptides:``), not this table.

A method is registered twice, once here (what the DAG needs to know without building it) and
once with :func:`msid.methods.register` (how to build it); ``tests/test_identify_run.py``
checks that the two, and the config schema's method enums, agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    kind: str  # the run kind it serves: small_molecule, ei
    needs_candidates: bool = False  # ranks candidates (in runs: from the pool index)
    needs_library: bool = False  # reads a spectral library
    models: tuple[str, ...] = ()  # shipped model files it reads (stems in models.dir), own first
    benchmark: bool = False  # ranked in the ESI candidate benchmark (benchmark.methods)


_RETRIEVAL = dict(kind="small_molecule", needs_candidates=True, benchmark=True)

METHODS: dict[str, MethodSpec] = {
    "library": MethodSpec("small_molecule", needs_library=True, benchmark=True),
    "random": MethodSpec(**_RETRIEVAL),
    "ranker": MethodSpec(**_RETRIEVAL, models=("ranker",)),
    "reconstructor": MethodSpec(**_RETRIEVAL, models=("reconstructor",)),
    "deepsets": MethodSpec(**_RETRIEVAL, models=("deepsets",)),
    "fp_ffn": MethodSpec(**_RETRIEVAL, models=("fp_ffn",)),
    # GLMR re-ranks the Ranker's top-K; de novo re-scores its beams with the Ranker's cosine.
    # Both have their own leaderboards (the generation rules), not the candidate benchmark.
    "glmr": MethodSpec("small_molecule", needs_candidates=True, models=("glmr", "ranker")),
    "denovo": MethodSpec("small_molecule", models=("denovo", "ranker")),
    "ei-embedding": MethodSpec("ei", needs_library=True),
    "ei-embedding-wcos": MethodSpec("ei", needs_library=True),
    "ei-cosine": MethodSpec("ei", needs_library=True),
    "ei-weighted-cosine": MethodSpec("ei", needs_library=True),
    "ei-entropy": MethodSpec("ei", needs_library=True),
}
RUN_KINDS = ("small_molecule", "ei", "peptide")
METHODS_BY_KIND: dict[str, tuple[str, ...]] = {
    k: tuple(m for m, s in METHODS.items() if s.kind == k) for k in RUN_KINDS}
ALL_METHODS: tuple[str, ...] = tuple(METHODS)
#: the methods the ESI candidate benchmark ranks (the schema's ``method`` enum)
BENCHMARK_METHODS: tuple[str, ...] = tuple(m for m, s in METHODS.items() if s.benchmark)
#: methods that rank pool candidates in runs (the DAG hands them the candidate index)
CANDIDATE_METHODS: tuple[str, ...] = tuple(m for m, s in METHODS.items() if s.needs_candidates)


def check_methods(methods: Iterable[str], kind: str, key: str = "identify.methods") -> None:
    """Raise ValueError naming every method in ``methods`` that cannot run on ``kind`` runs."""
    if kind not in METHODS_BY_KIND:
        raise ValueError(f"unknown run kind '{kind}' (known: {', '.join(METHODS_BY_KIND)})")
    valid = METHODS_BY_KIND[kind]
    for m in methods:
        if m in valid:
            continue
        if m in METHODS:
            raise ValueError(f"{key}: method '{m}' is for {METHODS[m].kind} runs and cannot run "
                             f"on {kind} runs (valid for {kind}: {', '.join(valid) or 'none'})")
        raise ValueError(f"{key}: unknown method '{m}' (valid for {kind}: "
                         f"{', '.join(valid) or 'none'})")
