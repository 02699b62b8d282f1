"""Deterministic train/val/test folds by structure (InChIKey first block) or peptide sequence.

A key's fold depends on nothing but the key and the fractions, like MassSpecGym's fold column:
the same structure lands in the same fold in every dataset and every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class FoldSpec:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    salt: str = "msid-folds-v1"

    def __post_init__(self) -> None:
        if abs(self.train + self.val + self.test - 1.0) > 1e-9:
            raise ValueError("fold fractions must sum to 1")


def _unit(key: str, salt: str) -> float:
    h = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def fold_of(key: str, spec: FoldSpec = FoldSpec()) -> str:
    """'train', 'val' or 'test' for a structure (InChIKey first block) or peptide key."""
    if not key:
        return ""
    u = _unit(key, spec.salt)
    if u < spec.train:
        return "train"
    return "val" if u < spec.train + spec.val else "test"


def peptide_key(sequence: str) -> str:
    """Split key of a peptide: the bare sequence (modifications stripped, I/L merged)."""
    bare = "".join(c for c in sequence.upper() if c.isalpha())
    return bare.replace("I", "L")
