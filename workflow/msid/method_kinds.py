"""Which identification methods run on which kind of run (no heavy imports: the workflow checks
its config with this before anything runs).

Small-molecule runs: spectral library search, the random baseline, the learned retrieval
models and GLMR (which rank candidates from the pool index) and de novo generation (which
proposes its own structures). EI runs: the EI family's methods. Peptide runs use de novo
peptide sequencing (configured under ``peptides:``), not this list.
"""

from __future__ import annotations

from collections.abc import Iterable

METHODS_BY_KIND: dict[str, tuple[str, ...]] = {
    "small_molecule": ("library", "random", "ranker", "reconstructor", "deepsets", "fp_ffn",
                       "glmr", "denovo"),
    "ei": ("ei-embedding", "ei-embedding-wcos", "ei-cosine", "ei-weighted-cosine", "ei-entropy"),
    "peptide": (),
}
ALL_METHODS: tuple[str, ...] = tuple(m for ms in METHODS_BY_KIND.values() for m in ms)


def check_methods(methods: Iterable[str], kind: str, key: str = "identify.methods") -> None:
    """Raise ValueError naming every method in ``methods`` that cannot run on ``kind`` runs."""
    if kind not in METHODS_BY_KIND:
        raise ValueError(f"unknown run kind '{kind}' (known: {', '.join(METHODS_BY_KIND)})")
    valid = METHODS_BY_KIND[kind]
    for m in methods:
        if m in valid:
            continue
        if m in ALL_METHODS:
            other = next(k for k, ms in METHODS_BY_KIND.items() if m in ms)
            raise ValueError(f"{key}: method '{m}' is for {other} runs and cannot run on "
                             f"{kind} runs (valid for {kind}: {', '.join(valid) or 'none'})")
        raise ValueError(f"{key}: unknown method '{m}' (valid for {kind}: "
                         f"{', '.join(valid) or 'none'})")
