"""Compound-level summary of a run: the library's answers grouped by structure.

A run's identification table has one row per spectrum; an LC-MS/MS run fragments the same
compound many times (across its chromatographic peak, and as other adducts). What a core
facility hands on is the list of compounds found: one row per structure (InChIKey first
block) with how many spectra support it, the best evidence, and where it eluted.
"""

from __future__ import annotations

import os

import pandas as pd

from msid.rankings import (
    FLOAT_FORMAT,
    MIN_DELTA_SCORE,
    confident_top,
    is_precursor_only,
    read_rankings,
    write_table,
)

COMPOUND_COLUMNS = ("compound", "inchikey", "smiles", "confident", "spectra",
                    "confident_spectra", "best_score", "best_q_value", "best_delta_score",
                    "rt_first", "rt_last", "adducts", "precursor_mz", "best_query_id",
                    "library_id", "evidence")
#: ``evidence`` of a compound: at least one of its spectra has a match with fragment evidence
#: (or, for a method that ranks candidates, any answer), or library search matched only
#: precursor masses (spectra without fragment peaks; scored <= 0.01)
FRAGMENTS, PRECURSOR_MASS_ONLY = "fragment spectrum", "precursor m/z only"


def compound_keys(hits: pd.DataFrame) -> pd.Series:
    """What makes two hits the same compound: the InChIKey first block, else the SMILES, else
    the library record's name, else its id (a library record without a structure is never
    lumped with the others)."""
    def col(name: str) -> pd.Series:
        v = hits[name].astype(str) if name in hits else pd.Series("", index=hits.index)
        return v.where(~v.isin(["", "nan", "None"]), "")

    key = col("inchikey").str[:14]
    for name, prefix in (("smiles", ""), ("name", "name: "), ("library_id", "id: ")):
        v = col(name)
        key = key.where(key != "", (prefix + v).where(v != "", ""))
    return key


def compound_table(ids: pd.DataFrame, *, fdr: float, min_delta: float = MIN_DELTA_SCORE,
                   method: str = "library"
                   ) -> pd.DataFrame:
    """One row per structure among ``method``'s top hits (rank 1, fragment evidence or not).

    ``confident``: at least one of its spectra is a confident hit by the reports' rule
    (:func:`msid.rankings.confident_top`). Its best spectrum is the best-scoring of its
    confident spectra (of all its spectra when none is confident); ``best_*``,
    ``library_id``, ``best_query_id`` and ``precursor_mz`` are that spectrum's own values, so
    a row never pairs one spectrum's score with another's q-value or delta score.
    ``rt_first`` / ``rt_last`` (seconds, as ``rt`` in the identification table) span all of
    its spectra; ``evidence``: :data:`PRECURSOR_MASS_ONLY` when every one of its spectra
    matched by precursor mass alone, else :data:`FRAGMENTS`. Sorted confident first, then by
    best score; ``attrs["confident_rule"]`` says which rule judged "confident" (q-values
    exist only for library search over a library, not when it ranks given candidates)."""
    top = ids[(ids["method"] == method) & (ids["rank"] == 1)].copy()
    if top.empty:
        return pd.DataFrame(columns=list(COMPOUND_COLUMNS))
    top["confident"], rule = confident_top(top, fdr, min_delta)
    top["key"] = compound_keys(top)
    for c in ("score", "q_value", "delta_score", "rt", "precursor_mz"):
        top[c] = pd.to_numeric(top[c], errors="coerce")
    top = top.sort_values(["confident", "score", "q_value"], ascending=[False, False, True],
                          kind="stable")
    rows = []
    for _, g in top.groupby("key", sort=False):
        best = g.iloc[0]  # confident spectra first, each by score
        adducts = sorted({a for a in g["adduct"].astype(str) if a and a != "nan"})
        rows.append({
            "compound": best["name"] if isinstance(best["name"], str) else "",
            "inchikey": best["inchikey"], "smiles": best["smiles"],
            "confident": bool(g["confident"].any()), "spectra": len(g),
            "confident_spectra": int(g["confident"].sum()),
            "best_score": float(best["score"]),
            "best_q_value": float(best["q_value"]),
            "best_delta_score": float(best["delta_score"]),
            "rt_first": float(g["rt"].min()), "rt_last": float(g["rt"].max()),
            "adducts": ",".join(adducts), "precursor_mz": float(best["precursor_mz"]),
            "best_query_id": best["query_id"], "library_id": best["library_id"],
            "evidence": (PRECURSOR_MASS_ONLY if g["note"].map(is_precursor_only).all()
                         else FRAGMENTS)})
    out = pd.DataFrame(rows, columns=list(COMPOUND_COLUMNS))
    out = out.sort_values(["confident", "best_score"], ascending=[False, False],
                          kind="stable").reset_index(drop=True)
    out.attrs["confident_rule"] = rule  # in words: q-values where estimated, else the score
    return out


def write_compound_table(identifications: str | os.PathLike, out: str | os.PathLike, *,
                         fdr: float, min_delta: float = MIN_DELTA_SCORE) -> pd.DataFrame:
    """:func:`compound_table` of an identification TSV, written atomically as TSV."""
    table = compound_table(read_rankings(identifications), fdr=fdr, min_delta=min_delta)
    write_table(table, out, float_format=FLOAT_FORMAT)
    return table
