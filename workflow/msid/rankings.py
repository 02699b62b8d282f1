"""The Rankings table: what ``msid identify`` writes and the evaluation harness reads.

Columns: ``query_id, rank, score, method, smiles, inchikey, library_id`` (one row per ranked
candidate; ``library_id`` is empty unless the candidate came from a spectral library).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from msid.atomic import atomic_path

COLUMNS = ("query_id", "rank", "score", "method", "smiles", "inchikey", "library_id")


@dataclass(frozen=True)
class RankedCandidate:
    smiles: str
    inchikey: str
    score: float
    library_id: str = ""


def rows_for_query(query_id: str, method: str, ranked: Iterable[RankedCandidate]) -> list[dict]:
    return [{"query_id": query_id, "rank": r, "score": c.score, "method": method,
             "smiles": c.smiles, "inchikey": c.inchikey, "library_id": c.library_id}
            for r, c in enumerate(ranked, start=1)]


def write_table(df: pd.DataFrame, path: str | os.PathLike, sep: str = "\t", **kwargs) -> Path:
    """Write a table atomically (TSV unless ``sep`` says otherwise)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, **kwargs)
    return Path(path)


def write_rankings(rows: list[dict], path: str | os.PathLike) -> Path:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return write_table(df, path, float_format="%.6g")


def read_rankings(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype={"query_id": str, "smiles": str, "inchikey": str,
                                            "library_id": str, "method": str},
                     keep_default_na=False)
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not a rankings table (missing {sorted(missing)})")
    return df
