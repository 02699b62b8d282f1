"""Molecule features for the models: RDKit Morgan bits or counts, cached per SMILES.

A :class:`MolFeaturizer` turns SMILES into a dense float32 matrix (rows in input order). Each
molecule is fingerprinted once per process (sparse form cached), so candidate lists that overlap
between queries cost a dictionary lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator

RDLogger.DisableLog("rdApp.*")


@lru_cache(maxsize=16)
def _generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def _sparse(smiles: str, radius: int, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    counts = _generator(radius, n_bits).GetCountFingerprintAsNumPy(mol)
    idx = np.flatnonzero(counts).astype(np.int32)
    return idx, counts[idx].astype(np.float32)


class MolFeaturizer:
    """SMILES -> (n, n_bits) float32: ``bits`` (0/1) or ``count`` (log1p of Morgan counts)."""

    def __init__(self, n_bits: int = 2048, radius: int = 2, kind: str = "bits",
                 cache_size: int = 500_000) -> None:
        if kind not in ("bits", "count"):
            raise ValueError("kind must be 'bits' or 'count'")
        self.n_bits, self.radius, self.kind = n_bits, radius, kind
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def sparse(self, smiles: str) -> tuple[np.ndarray, np.ndarray]:
        hit = self._cache.get(smiles)
        if hit is None:
            idx, cnt = _sparse(smiles, self.radius, self.n_bits)
            hit = (idx, np.ones_like(cnt) if self.kind == "bits" else np.log1p(cnt))
            self._cache[smiles] = hit
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return hit

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(smiles), self.n_bits), dtype=np.float32)
        for i, s in enumerate(smiles):
            idx, val = self.sparse(s)
            out[i, idx] = val
        return out


class FeatureBank:
    """A fixed list of molecules stored sparsely (CSR); ``dense(rows)`` builds a batch matrix."""

    def __init__(self, smiles: Sequence[str], featurizer: MolFeaturizer) -> None:
        self.smiles = list(smiles)
        self.n_bits = featurizer.n_bits
        parts = [featurizer.sparse(s) for s in self.smiles]
        sizes = np.array([len(p[0]) for p in parts], dtype=np.int64)
        self.offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.offsets[1:])
        self.indices = (np.concatenate([p[0] for p in parts]) if parts
                        else np.zeros(0, np.int32))
        self.values = (np.concatenate([p[1] for p in parts]) if parts
                       else np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.smiles)

    def dense(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), self.n_bits), dtype=np.float32)
        for k, r in enumerate(rows):
            a, b = self.offsets[r], self.offsets[r + 1]
            out[k, self.indices[a:b]] = self.values[a:b]
        return out
