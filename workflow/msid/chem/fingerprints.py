"""Molecular fingerprints (RDKit Morgan) and Tanimoto similarity."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator


@lru_cache(maxsize=8)
def _generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


@lru_cache(maxsize=200_000)
def morgan_bitvect(smiles: str, radius: int = 2, n_bits: int = 2048):
    """RDKit ExplicitBitVect, or None when the SMILES does not parse."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else _generator(radius, n_bits).GetFingerprint(mol)


def tanimoto_many(query_smiles: str, others: list[str]) -> np.ndarray:
    """Tanimoto of one molecule against many (0 where either does not parse)."""
    q = morgan_bitvect(query_smiles)
    fps = [morgan_bitvect(s) for s in others]
    if q is None:
        return np.zeros(len(others))
    ok = [i for i, f in enumerate(fps) if f is not None]
    out = np.zeros(len(others))
    if ok:
        out[ok] = DataStructs.BulkTanimotoSimilarity(q, [fps[i] for i in ok])
    return out
