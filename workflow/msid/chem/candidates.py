"""Candidate-pool index: molecules sorted by monoisotopic mass, looked up by mass window or formula.

Built once from the curated pool (formula, mass and InChIKey given) plus large SMILES-only decoy
pools (formula and mass computed with RDKit). For speed the decoys are parsed without
sanitisation: formula and exact mass need only atoms and implicit hydrogens, which RDKit's
property cache gives without aromaticity perception. Every candidate *returned* is fully parsed
and normalised (:func:`msid.chem.structures.parse_structure`) before anything compares it.

The index is one ``.npz`` (no pickles): sorted masses, SMILES as a UTF-8 blob with offsets,
formulas as codes into a table, InChIKey first blocks where known, source codes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdMolDescriptors

from msid.atomic import atomic_path
from msid.chem.structures import (
    Structure,
    needs_standardising,
    parse_structure,
    unique_structures,
)
from msid.parallel import imap_ordered

RDLogger.DisableLog("rdApp.*")

INDEX_VERSION = 5  # 2: salts and charged forms at their standardised parent; 3: a
# permanent cation (pyridinium) keeps its charge instead of an invalid "neutral" form;
# 4: a salt written with a covalent metal bond (CC(=O)O[Na]) at its parent; 5: an empty
# SMILES cell is no molecule


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt") if path.name.endswith(".gz") else open(path)


def _formula_mass_chunk(smiles: Sequence[str]) -> tuple[list[str], np.ndarray]:
    RDLogger.DisableLog("rdApp.*")  # counted and named by build_index, not printed per molecule
    formulas, masses = [], np.full(len(smiles), np.nan)
    for i, s in enumerate(smiles):
        st = parse_structure(s) if needs_standardising(s) else None
        if st is not None:  # salts and charged forms: the standardised parent's
            formulas.append(st.formula)
            masses[i] = st.exact_mass
            continue
        mol = Chem.MolFromSmiles(s, sanitize=False)
        if mol is None:
            formulas.append("")
            continue
        try:
            mol.UpdatePropertyCache(strict=False)
            formulas.append(rdMolDescriptors.CalcMolFormula(mol))
            masses[i] = rdMolDescriptors.CalcExactMolWt(mol)
        except Exception:  # pragma: no cover - RDKit raises on exotic valence states
            formulas.append("")
    return formulas, masses


def formula_and_mass(smiles: Sequence[str], n_jobs: int = 1,
                     chunk: int = 20_000) -> tuple[list[str], np.ndarray]:
    """Formula and monoisotopic mass per SMILES ('' and NaN where unparseable)."""
    chunks = [smiles[i:i + chunk] for i in range(0, len(smiles), chunk)]
    parts = list(imap_ordered(_formula_mass_chunk, chunks, n_jobs))
    formulas = [f for p in parts for f in p[0]]
    masses = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    return formulas, masses


@dataclass(frozen=True)
class PoolSource:
    """A molecule file: TSV/CSV with a smiles column (+ formula, monoisotopic_mass, inchikey)."""

    path: Path
    name: str

    def read(self) -> tuple[list[str], list[str] | None, np.ndarray | None, list[str] | None]:
        with _open_text(self.path) as fh:
            first = fh.readline()
            fh.seek(0)
            delim = "\t" if "\t" in first else ","
            reader = csv.DictReader(fh, delimiter=delim)
            cols = {c.lower(): c for c in (reader.fieldnames or [])}
            if "smiles" not in cols:
                raise ValueError(f"{self.path}: no 'smiles' column (columns: {reader.fieldnames})")
            rows = list(reader)
        smiles = [r[cols["smiles"]] for r in rows]
        formula = [r[cols["formula"]] for r in rows] if "formula" in cols else None
        mass = (np.array([float(r[cols["monoisotopic_mass"]] or "nan") for r in rows])
                if "monoisotopic_mass" in cols else None)
        ik = ([r[cols["inchikey"]][:14] for r in rows] if "inchikey" in cols else
              [r[cols["inchikey14"]] for r in rows] if "inchikey14" in cols else None)
        return smiles, formula, mass, ik


def sources_digest(sources: Iterable[PoolSource]) -> str:
    h = hashlib.sha256(f"msid-candidate-index-v{INDEX_VERSION}".encode())
    for s in sources:
        h.update(s.name.encode())
        with open(s.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def build_index(sources: Sequence[PoolSource], out: str | os.PathLike, n_jobs: int = 1,
                log=print) -> dict:
    """Build the index from ``sources`` into ``out`` (atomic). Returns build statistics."""
    t0 = time.perf_counter()
    all_smiles: list[str] = []
    all_formula: list[str] = []
    masses: list[np.ndarray] = []
    ik14: list[str] = []
    src_code: list[np.ndarray] = []
    per_source = {}
    for code, src in enumerate(sources):
        t = time.perf_counter()
        smiles, formula, mass, ik = src.read()
        if formula is None or mass is None:
            formula, mass = formula_and_mass(smiles, n_jobs=n_jobs)
        else:  # given values: salts and charged forms still get their parent's
            fix = [i for i, smi in enumerate(smiles) if needs_standardising(smi)]
            if fix:
                f_fix, m_fix = _formula_mass_chunk([smiles[i] for i in fix])
                formula, mass = list(formula), np.array(mass, dtype=np.float64)
                for j, i in enumerate(fix):
                    formula[i], mass[i] = f_fix[j], m_fix[j]
        mass = np.array(mass, dtype=np.float64)
        mass[[i for i, smi in enumerate(smiles) if not smi.strip()]] = np.nan  # RDKit parses
        # '' as a molecule of mass 0: an empty cell is no molecule (counted as unparseable)
        all_smiles += smiles
        all_formula += formula
        masses.append(mass)
        ik14 += ik if ik is not None else [""] * len(smiles)
        src_code.append(np.full(len(smiles), code, dtype=np.int8))
        bad = np.flatnonzero(~np.isfinite(mass))
        per_source[src.name] = {"molecules": len(smiles), "seconds": time.perf_counter() - t,
                                "unparseable": len(bad)}
        log(f"[candidates] {src.name}: {len(smiles):,} molecules in "
            f"{per_source[src.name]['seconds']:.1f} s")
        if len(bad):  # data row i is line i + 2 of the file (after its header)
            log(f"[candidates] {src.name}: {len(bad):,} molecule(s) left out (no parseable "
                "SMILES): " + "; ".join(f"line {i + 2}: '{smiles[i][:60]}'" for i in bad[:5])
                + (" ..." if len(bad) > 5 else ""))
    mass = np.concatenate(masses)
    ok = np.isfinite(mass)
    order = np.flatnonzero(ok)[np.argsort(mass[ok], kind="stable")]
    smiles_sorted = [all_smiles[i] for i in order]
    blob = "\n".join(smiles_sorted).encode()
    lengths = np.fromiter((len(s.encode()) + 1 for s in smiles_sorted), dtype=np.int64,
                          count=len(smiles_sorted))
    offsets = np.zeros(len(smiles_sorted) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    formula_table, formula_code = np.unique(np.array([all_formula[i] for i in order]),
                                            return_inverse=True)
    meta = {"version": INDEX_VERSION, "sources": per_source,
            "digest": sources_digest(sources), "n_unparseable": int((~ok).sum()),
            "source_names": [s.name for s in sources]}
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:  # a file object: savez adds no suffix
        np.savez(fh, mass=mass[order], smiles_blob=np.frombuffer(blob, dtype=np.uint8),
                 smiles_offsets=offsets, formula_table=formula_table,
                 formula_code=formula_code.astype(np.int32),
                 inchikey14=np.array([ik14[i] for i in order], dtype="S14"),
                 source=np.concatenate(src_code)[order], meta=np.array(json.dumps(meta)))
    meta["n_molecules"] = len(order)
    meta["build_seconds"] = time.perf_counter() - t0
    return meta


#: the arrays a candidate index holds (one .npy each in its .npz)
INDEX_ARRAYS = ("mass", "smiles_blob", "smiles_offsets", "formula_table", "formula_code",
                "source", "meta")


def check_index_file(path: str | os.PathLike) -> Path:
    """``path`` is a candidate index (the .npz :func:`build_index` writes), or an
    :class:`InputFileError` says what it is not (read without unpickling anything)."""
    import zipfile

    from msid.io.errors import InputFileError

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise InputFileError(path, "not an msid candidate index (the .npz that 'msid "
                             "build-index' writes from a molecule list)")
    with zipfile.ZipFile(path) as z:
        missing = [a for a in INDEX_ARRAYS if f"{a}.npy" not in z.namelist()]
    if missing:
        raise InputFileError(path, "not an msid candidate index: it lacks "
                             f"{', '.join(missing)} (write one with 'msid build-index')")
    return path


class CandidateIndex:
    """Read-only candidate pool. Lookups return normalised, de-duplicated structures."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = check_index_file(path)
        with np.load(self.path, allow_pickle=False) as z:
            self.mass: np.ndarray = z["mass"]
            self._blob: bytes = z["smiles_blob"].tobytes()
            self._offsets: np.ndarray = z["smiles_offsets"]
            self.formula_table: np.ndarray = z["formula_table"]
            self._formula_code: np.ndarray = z["formula_code"]
            self._source: np.ndarray = z["source"]
            self.meta: dict = json.loads(str(z["meta"]))
        self._by_formula: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.mass)

    def smiles(self, i: int) -> str:
        return self._blob[self._offsets[i]:self._offsets[i + 1] - 1].decode()

    def mass_window(self, mass: float, ppm: float) -> np.ndarray:
        """Indices with |m - mass| <= ppm * mass * 1e-6, nearest first."""
        tol = mass * ppm * 1e-6
        lo, hi = np.searchsorted(self.mass, [mass - tol, mass + tol + 1e-12])
        idx = np.arange(lo, hi)
        return idx[np.argsort(np.abs(self.mass[idx] - mass), kind="stable")]

    def formula_matches(self, formula: str) -> np.ndarray:
        if self._by_formula is None:
            order = np.argsort(self._formula_code, kind="stable")
            bounds = np.searchsorted(self._formula_code[order],
                                     np.arange(len(self.formula_table) + 1))
            self._by_formula = {str(f): order[bounds[k]:bounds[k + 1]]
                                for k, f in enumerate(self.formula_table)}
        return self._by_formula.get(formula, np.zeros(0, dtype=np.int64))

    def structures(self, indices: Iterable[int], max_n: int,
                   exclude_ik14: str = "") -> list[Structure]:
        """Up to ``max_n`` unique (by InChIKey first block), parseable structures, in order."""
        return unique_structures((self.smiles(int(i)) for i in indices), max_n, exclude_ik14)


def candidate_set(index: CandidateIndex, *, mass: float | None = None,
                  formula: str | None = None, ppm: float = 10.0, max_n: int = 256,
                  true: Structure | None = None) -> list[Structure]:
    """MassSpecGym-style candidate set: by mass window (or formula), at most ``max_n``.

    When ``true`` is given it is always included (first; rankers must not rely on order).
    """
    if formula:
        idx = index.formula_matches(formula)
    elif mass is not None and np.isfinite(mass):
        idx = index.mass_window(mass, ppm)
    else:
        raise ValueError("candidate_set needs a mass or a formula")
    if true is None:
        return index.structures(idx, max_n)
    return [true, *index.structures(idx, max_n - 1, exclude_ik14=true.inchikey14)]
