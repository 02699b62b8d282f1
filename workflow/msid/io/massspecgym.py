"""MassSpecGym's TSV (``MassSpecGym.tsv``) -> a spectrum store.

Columns: ``identifier, mzs, intensities`` (comma-separated numbers), ``smiles, inchikey, formula,
precursor_formula, parent_mass, precursor_mz, adduct, instrument_type, collision_energy, fold``.
MassSpecGym's ``fold`` (train/val/test) becomes the store's ``fold`` column (optionally taken
from a separate split table ``identifier, fold``), so its structure-disjoint split is kept.
A bad row (unparseable peaks, invalid SMILES, InChIKey contradicting the SMILES, missing
precursor m/z, duplicate identifier, unknown fold) goes to the store's quarantine with its
reason; only a file that cannot be read at all (or lacks required columns) raises.
Peaks are sorted by m/z and intensities scaled to base peak 1, like every msid store.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from msid.chem.structures import parse_structure
from msid.io.errors import InputFileError
from msid.store import QuarantineRecord, SpectrumRecord, SpectrumStoreWriter

REQUIRED = ("identifier", "mzs", "intensities", "smiles", "precursor_mz")
COLUMNS = ("identifier", "mzs", "intensities", "smiles", "inchikey", "formula",
           "precursor_formula", "parent_mass", "precursor_mz", "adduct", "instrument_type",
           "collision_energy", "fold")
#: MassSpecGym fold -> store fold
FOLD_MAP = {"train": "train", "val": "val", "validation": "val", "test": "test"}


@dataclass
class LoadStats:
    read: int = 0
    stored: int = 0
    quarantined: Counter = field(default_factory=Counter)
    folds: Counter = field(default_factory=Counter)


def parse_numbers(text: str) -> np.ndarray:
    """'1.0,2.5,3' -> float64 array; ValueError on anything that is not a number."""
    text = str(text).strip()
    if not text:
        return np.zeros(0, np.float64)
    return np.array([float(x) for x in text.split(",")], dtype=np.float64)


def _ion_mode(adduct: str) -> tuple[str, int]:
    a = adduct.strip()
    if a.endswith("+"):
        return "positive", 1
    if a.endswith("-"):
        return "negative", -1
    return "", 0


def row_to_record(row: dict, fold_map: dict[str, str] = FOLD_MAP,
                  source_file: str = "") -> SpectrumRecord | str:
    """One TSV row -> a store record, or the reason it is rejected."""
    rid = str(row.get("identifier", "")).strip()
    if not rid:
        return "missing identifier"
    try:
        mz = parse_numbers(row.get("mzs", ""))
        inten = parse_numbers(row.get("intensities", ""))
    except ValueError as e:
        return f"unparseable peak list ({e})"
    if mz.size != inten.size:
        return f"m/z and intensity lists differ in length ({mz.size} vs {inten.size})"
    if mz.size == 0:
        return "spectrum has no peaks"
    if not (np.isfinite(mz).all() and np.isfinite(inten).all()):
        return "non-finite (NaN/inf) m/z or intensity"
    if (mz <= 0).any():
        return "non-positive m/z"
    if (inten < 0).any():
        return "negative intensity"
    if inten.max() <= 0:
        return "all intensities are zero"
    order = np.argsort(mz, kind="stable")
    mz, inten = mz[order], inten[order]
    try:
        prec = float(row.get("precursor_mz", "nan") or "nan")
    except ValueError:
        prec = math.nan
    if not (math.isfinite(prec) and prec > 0):
        return "missing or invalid precursor m/z"
    smiles = str(row.get("smiles", "") or "")
    st = parse_structure(smiles)
    if st is None:
        return f"invalid SMILES (RDKit cannot parse): {smiles[:60]}"
    given_ik = str(row.get("inchikey", "") or "").strip()
    if given_ik and st.inchikey and given_ik[:14] != st.inchikey14:
        return "InChIKey does not match SMILES"
    fold_raw = str(row.get("fold", "") or "").strip().lower()
    if fold_raw and fold_raw not in fold_map:
        return f"unknown fold '{fold_raw}'"
    adduct = str(row.get("adduct", "") or "").strip()
    ion_mode, charge = _ion_mode(adduct)
    meta = {
        "id": rid, "source_file": source_file, "native_id": rid, "ms_level": 2,
        "precursor_mz": prec, "charge": charge, "adduct": adduct, "ion_mode": ion_mode,
        "instrument_type": str(row.get("instrument_type", "") or ""),
        "collision_energy": str(row.get("collision_energy", "") or ""),
        "smiles": st.smiles, "inchikey": st.inchikey or given_ik,
        "formula": str(row.get("formula", "") or "") or st.formula,
        "fold": fold_map.get(fold_raw, "") if fold_raw else "",
    }
    return SpectrumRecord(mz, (inten / inten.max()).astype(np.float32), meta)


def read_split(path: str | os.PathLike) -> dict[str, str]:
    """MassSpecGym split table (``identifier``, ``fold``) -> {identifier: fold}."""
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputFileError(path, f"cannot read split table ({e})") from e
    if not {"identifier", "fold"} <= set(df.columns):
        raise InputFileError(path, "a split table needs columns identifier, fold")
    return dict(zip(df["identifier"].str.strip(), df["fold"].str.strip(), strict=True))


def _read_rows(path: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                             chunksize=chunksize)
        first = True
        for chunk in reader:
            if first:
                missing = [c for c in REQUIRED if c not in chunk.columns]
                if missing:
                    raise InputFileError(path, f"not a MassSpecGym TSV (missing columns "
                                               f"{missing}; has {list(chunk.columns)[:20]})")
                first = False
            yield chunk
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, EOFError) as e:
        raise InputFileError(path, f"cannot read as a TSV ({e})") from e


def load_massspecgym(path: str | os.PathLike, out: str | os.PathLike, *,
                     split: str | os.PathLike | None = None,
                     fold_map: dict[str, str] | None = None, chunksize: int = 20_000,
                     progress: bool = False) -> LoadStats:
    """Write the spectra of MassSpecGym TSV ``path`` to store ``out`` (atomic).

    ``split``: optional fold table; its fold wins over the TSV's ``fold`` column (a row absent
    from it keeps the TSV's fold).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    fold_map = fold_map or FOLD_MAP
    folds = read_split(split) if split else {}
    stats = LoadStats()
    seen: set[str] = set()
    from msid.progress import progress_bar

    bar = progress_bar(desc=f"load {path.name}", unit=" spectra", disable=not progress,
                       mininterval=2)
    with SpectrumStoreWriter(out, provenance={"stage": "convert", "input": str(path),
                                              "format": "massspecgym-tsv",
                                              "split": str(split or "")}) as writer:
        for chunk in _read_rows(path, chunksize):
            for row in chunk.to_dict("records"):
                stats.read += 1
                rid = str(row.get("identifier", "")).strip()
                if rid in folds:
                    row["fold"] = folds[rid]
                if rid and rid in seen:
                    rec: SpectrumRecord | str = "duplicate identifier"
                else:
                    rec = row_to_record(row, fold_map, path.name)
                if isinstance(rec, str):
                    writer.quarantine(QuarantineRecord(path.name, rid or f"row {stats.read}",
                                                       rec))
                    stats.quarantined[rec.split(" (")[0].split(":")[0]] += 1
                    continue
                seen.add(rid)
                writer.add(rec)
                stats.stored += 1
                stats.folds[str(rec.meta["fold"])] += 1
            bar.update(len(chunk))
    bar.close()
    return stats
