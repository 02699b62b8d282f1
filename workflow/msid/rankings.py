"""The Rankings table: what ``msid identify`` writes and the evaluation harness reads.

Required columns: ``query_id, rank, score, method, smiles, inchikey, library_id`` (one row per
ranked candidate; ``library_id`` is empty unless the candidate came from a spectral library).

Optional columns (written by msid, filled with defaults when an older table lacks them):
``name`` (library entry name), ``rt`` (s), ``precursor_mz``, ``adduct`` (the query's; on a
candidate row noted :data:`ADDUCT_ASSUMED`, the one its neutral mass assumed; on a library hit
noted :data:`ADDUCT_OF_MATCH`, the matched library spectrum's, when the query states none),
``ppm_error`` (the query's precursor m/z against the hit's or candidate's ion, mzTab-M's),
``matched_peaks`` (-1: not computed), ``q_value`` (target-decoy, NaN: not estimated),
``delta_score`` (on a query's rank-1 row: its score minus the score of the best candidate of
another structure, i.e. the rank-2 row before any top-k cut, or minus 0 when there is none;
NaN on the other rows: a small delta means another structure fits the spectrum about as well)
and ``note``: a flag on a row (e.g. a precursor-mass-only match) or, on a row with ``rank`` 0
and no candidate, the reason a query got no answer. Every query has at least one row.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from msid.atomic import atomic_path

COLUMNS = ("query_id", "rank", "score", "method", "smiles", "inchikey", "library_id")
#: optional columns and the value a table without them gets
OPTIONAL_COLUMNS: dict[str, object] = {
    "name": "", "rt": math.nan, "precursor_mz": math.nan, "adduct": "", "ppm_error": math.nan,
    "matched_peaks": -1, "q_value": math.nan, "delta_score": math.nan, "note": "",
}
ALL_COLUMNS = COLUMNS + tuple(OPTIONAL_COLUMNS)
#: ``note`` of a library match by precursor mass alone (a spectrum without fragment peaks)
PRECURSOR_ONLY = "precursor-mass match only (no fragment evidence)"
#: ``note`` of a candidate whose ``ppm_error`` (and the candidate set, by its ion's m/z) assumed
#: the ``adduct`` written on its row: the query states none ([M+H]+ / [M-H]- by ion mode, or
#: [M+zH]z+ / [M-zH]z- for charge z)
ADDUCT_ASSUMED = "adduct assumed"
#: ``note`` of a library hit whose ``adduct`` is the matched library spectrum's (the query
#: states none): the ion the query was matched as, by precursor m/z and fragments
ADDUCT_OF_MATCH = "adduct of the matched library spectrum"


def is_precursor_only(note: object) -> bool:
    """Whether a row's ``note`` flags a precursor-mass-only match (other flags may follow it,
    "; "-joined)."""
    return PRECURSOR_ONLY in str(note)


@dataclass(frozen=True)
class RankedCandidate:
    smiles: str
    inchikey: str
    score: float
    library_id: str = ""
    name: str = ""
    ppm_error: float = math.nan
    matched_peaks: int = -1
    q_value: float = math.nan
    note: str = ""
    #: the ion the candidate was matched as, where the method knows it (a library hit: its
    #: entry's adduct); the row's ``adduct`` when the query states none
    adduct: str = ""


def _row_adduct(query_adduct: str, c: RankedCandidate) -> tuple[str, str]:
    """(adduct, note) of a candidate's row: the query's adduct, else the candidate's own."""
    if query_adduct or not c.adduct:
        return query_adduct, c.note
    return c.adduct, "; ".join(filter(None, (c.note, ADDUCT_OF_MATCH)))


def rows_for_query(query_id: str, method: str, ranked: Iterable[RankedCandidate], *,
                   rt: float = math.nan, precursor_mz: float = math.nan, adduct: str = "",
                   reason: str = "", delta_score: float | None = None) -> list[dict]:
    """Table rows of one query's ranked candidates; when there are none, one row with rank 0,
    no candidate and ``reason`` (default "no answer") in ``note``: no query vanishes.
    ``delta_score`` of the rank-1 row: given by a caller that cut the list, else from it
    (:func:`top_delta_score`)."""
    ranked = list(ranked)
    query = {"query_id": query_id, "method": method, "rt": rt, "precursor_mz": precursor_mz,
             "adduct": adduct}
    rows = [{**query, "rank": r, "score": c.score, "smiles": c.smiles, "inchikey": c.inchikey,
             "library_id": c.library_id, "name": c.name, "ppm_error": c.ppm_error,
             "matched_peaks": c.matched_peaks, "q_value": c.q_value, "delta_score": math.nan}
            for r, c in enumerate(ranked, start=1)]
    for row, c in zip(rows, ranked, strict=True):
        row["adduct"], row["note"] = _row_adduct(adduct, c)
    if rows:
        rows[0]["delta_score"] = (delta_score if delta_score is not None
                                  else top_delta_score(ranked))
    else:
        rows = [{**query, "rank": 0, "score": 0.0, "smiles": "", "inchikey": "",
                 "library_id": "", "name": "", "ppm_error": math.nan, "matched_peaks": -1,
                 "q_value": math.nan, "delta_score": math.nan, "note": reason or "no answer"}]
    return rows


#: ``note`` prefix of the rank-0 row of an input record that was quarantined (never ranked)
QUARANTINED = "quarantined"


def quarantined_rows(quarantine: pd.DataFrame, methods: Sequence[str],
                     stored: Iterable[str] = ()) -> list[dict]:
    """A rank-0 row per method for every input record that was quarantined before it could
    be ranked (the store's quarantine table; a damaged file's note and a kept record's note
    are no records), the reason in ``note``: a table accounts for every record of the file,
    not only for those that were stored. An MS1 spectrum of an MS/MS file is no query, a
    record whose id a stored query holds (an MS1 block before its MS2 block, in SIRIUS and
    MZmine exports) gets no row beside that query's, and a file that could not be read at all
    (its one ``(whole file)`` row) lists no query: its report says why."""
    from msid.store import MS1_REASON, WHOLE_FILE, lost_records

    lost = lost_records(quarantine) if len(quarantine) else quarantine
    taken = {*map(str, stored), WHOLE_FILE}  # a file read not at all holds no query to list
    return [row for q in lost.itertuples()
            if str(q.record_id) not in taken and str(q.reason) != MS1_REASON
            for m in methods
            for row in rows_for_query(str(q.record_id), m, [],
                                      reason=f"{QUARANTINED}: {q.reason}")]


def top_delta_score(ranked: list[RankedCandidate]) -> float:
    """The top candidate's score minus the best score of a candidate of another structure:
    :func:`structure_margin` of a ranked list. Lists are one row per structure, so this is
    usually rank 1 minus rank 2."""
    return structure_margin([c.inchikey[:14] for c in ranked], [c.score for c in ranked])


def structure_margin(keys: Sequence[str], scores: Sequence[float]) -> float:
    """For hits best first (``keys``: their InChIKey first blocks, '' for none, which counts
    as a structure of its own): the first hit's score minus the best score of a hit of
    another structure, 0 when there is none; NaN without hits."""
    if not len(keys):
        return math.nan
    top = keys[0]
    other = next((s for k, s in zip(keys[1:], scores[1:], strict=True) if not top or k != top),
                 0.0)
    return float(scores[0] - other)


#: a library hit whose ``delta_score`` is below this is ambiguous: another structure's spectrum
#: scores nearly as well (mostly isomers with near-identical spectra, which no decoy stands for).
#: Chosen on the val fold (leave-one-spectrum-out, 1,872 hits): 3.7 % of hits fall below it and
#: hold 40 of the 65 wrong ones; the true FDR of the others is 1.4 % against 3.5 % for all.
MIN_DELTA_SCORE = 0.1
#: a library hit is confident at target-decoy q-value <= this (``identify.fdr`` in the config)
CONFIDENT_FDR = 0.05
#: the rule in words where no q-values were estimated (library search ranking given
#: candidates, a method without decoys): no score cut stands in for an error rate
NOT_ASSESSED = "none: no q-values, so no false-discovery estimate"


def confident_top(top: pd.DataFrame, fdr: float,
                  min_delta: float = MIN_DELTA_SCORE) -> tuple[pd.Series, str]:
    """Which top rows are confident answers, and the rule in words: target-decoy q-value <=
    ``fdr`` and not ambiguous (``delta_score`` >= ``min_delta`` where known). Where no
    q-values were estimated no row is confident (rule :data:`NOT_ASSESSED`): an uncalibrated
    score cut says nothing about how many of the answers are wrong."""
    q = pd.to_numeric(top["q_value"], errors="coerce")
    if top.empty or q.notna().any():  # no top row at all: none confident by the q-value rule
        delta = pd.to_numeric(top["delta_score"], errors="coerce") if "delta_score" in top \
            else pd.Series(math.nan, index=top.index)
        clear = ~(delta < min_delta)
        return ((q <= fdr).fillna(False) & clear,
                f"q-value \u2264 {fdr:g} and \u0394score \u2265 {min_delta:g}")
    return pd.Series(False, index=top.index), NOT_ASSESSED


def answered(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that rank a candidate (drops the rank-0 'no answer' rows)."""
    return df[df["rank"] > 0]


def unanswered_reasons(df: pd.DataFrame, query_ids: Iterable[str]) -> pd.Series:
    """The queries of ``query_ids`` without a ranked row, each with every method's reason
    (``"library: no library entry within precursor tolerance; ranker: no candidates"``)."""
    answered_ids = set(df.loc[df["rank"] > 0, "query_id"].astype(str))
    zero = df[df["rank"] == 0]
    notes = (zero["method"] + ": " + zero["note"]).groupby(zero["query_id"].astype(str)).agg(
        "; ".join)
    missing = [q for q in map(str, query_ids) if q not in answered_ids]
    return pd.Series([notes.get(q, "no row in the table") for q in missing], index=missing,
                     dtype=object)


#: how msid's result tables write floats: 10 significant digits, so an m/z of 1234.56789 keeps
#: its 5th decimal (%.6g would cut it to 1234.57, a 4 ppm error against a 10 ppm window)
FLOAT_FORMAT = "%.10g"


def write_table(df: pd.DataFrame, path: str | os.PathLike, sep: str = "\t", **kwargs) -> Path:
    """Write a table atomically (TSV unless ``sep`` says otherwise)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, **kwargs)
    return Path(path)


def write_rankings(rows: list[dict], path: str | os.PathLike) -> Path:
    df = pd.DataFrame(rows, columns=list(ALL_COLUMNS))
    for col, default in OPTIONAL_COLUMNS.items():
        df[col] = df[col].fillna(default) if isinstance(default, str) else df[col]
    df["matched_peaks"] = df["matched_peaks"].fillna(-1).astype(int)
    return write_table(df, path, float_format=FLOAT_FORMAT)


def read_rankings(path: str | os.PathLike) -> pd.DataFrame:
    """A rankings table with every column of :data:`ALL_COLUMNS` (older tables: defaults)."""
    str_cols = {c: str for c in ("query_id", "smiles", "inchikey", "library_id", "method",
                                 "name", "adduct", "note")}
    df = pd.read_csv(path, sep="\t", dtype=str_cols, keep_default_na=False,
                     na_values={c: ["", "nan", "NaN"] for c in
                                ("rt", "precursor_mz", "ppm_error", "q_value", "delta_score")})
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not a rankings table (missing {sorted(missing)})")
    for col, default in OPTIONAL_COLUMNS.items():
        if col not in df:
            df[col] = default
    return df
