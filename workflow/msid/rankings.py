"""The Rankings table: what ``msid identify`` writes and the evaluation harness reads.

Columns: ``query_id, rank, score, method, smiles, inchikey, library_id`` (one row per ranked
candidate; ``library_id`` is empty unless the candidate came from a spectral library).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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


def write_table(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a TSV atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_csv(tmp, sep="\t", index=False, **kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
