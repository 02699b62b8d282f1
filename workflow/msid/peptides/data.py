"""Annotated peptide spectra: read Casanovo-style annotated MGF (ProForma ``SEQ``), split by
peptide sequence (I = L, modifications ignored), never by spectrum.

A record that cannot be used (no SEQ, a sequence outside the vocabulary, a precursor m/z that
disagrees with the sequence) is quarantined with its reason; it never stops the read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyteomics import mgf

from msid.peptides.physics import SequenceError, parse_proforma, plain, precursor_mz

FOLDS = ("train", "val", "test")


@dataclass
class PeptideSpectrum:
    id: str
    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: float
    charge: int
    tokens: list[str] = field(default_factory=list)  # empty: unlabelled
    source: str = ""

    @property
    def key(self) -> str:
        return plain(self.tokens)


@dataclass
class ReadResult:
    spectra: list[PeptideSpectrum]
    quarantine: list[tuple[str, str, str]]  # (file, record, reason)


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def read_annotated_mgf(paths: list[str | os.PathLike] | str | os.PathLike,
                       max_mz_error: float = 0.05) -> ReadResult:
    """Spectra with a sequence from annotated MGF files (pyteomics' MGF reader)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    spectra, quarantine = [], []
    for path in map(Path, paths):
        with _open(path) as fh:
            for k, rec in enumerate(mgf.read(fh, use_index=False, convert_arrays=1)):
                p = rec.get("params", {})
                rid = str(p.get("title", f"record {k}"))
                try:
                    seq = p.get("seq")
                    if not seq:
                        raise SequenceError("no SEQ")
                    tokens = parse_proforma(str(seq))
                    listed = [int(c) for c in p["charge"] if int(c) > 0] if p.get(
                        "charge") else []
                    if not listed:
                        raise SequenceError("no charge")
                    pmz = float(p["pepmass"][0])
                    # CHARGE=2+ and 3+: the listed charge the annotated peptide's m/z fits
                    charge = min(listed, key=lambda c: abs(precursor_mz(tokens, c) - pmz))
                    if abs(precursor_mz(tokens, charge) - pmz) > max_mz_error:
                        raise SequenceError(
                            f"precursor m/z {pmz:.4f} disagrees with {seq}/{charge}+")
                    mz = np.asarray(rec["m/z array"], dtype=np.float64)
                    inten = np.asarray(rec["intensity array"], dtype=np.float64)
                    if len(mz) == 0:
                        raise SequenceError("no peaks")
                except (SequenceError, KeyError, TypeError, ValueError) as e:
                    quarantine.append((path.name, rid, str(e)))
                    continue
                spectra.append(PeptideSpectrum(rid, mz, inten, pmz, charge, tokens,
                                               source=path.name))
    return ReadResult(spectra, quarantine)


def sequence_fold(key: str, val: float = 0.1, test: float = 0.1,
                  salt: str = "msid-peptide-folds-v1") -> str:
    """Fold of a peptide (plain sequence, I = L): a hash, so every spectrum of a peptide, and
    every modified form of it, lands in the same fold whatever else is in the data."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64
    if h < test:
        return "test"
    if h < test + val:
        return "val"
    return "train"


def split_by_sequence(spectra: list[PeptideSpectrum], val: float = 0.1, test: float = 0.1
                      ) -> dict[str, list[PeptideSpectrum]]:
    out: dict[str, list[PeptideSpectrum]] = {f: [] for f in FOLDS}
    for s in spectra:
        out[sequence_fold(s.key, val, test)].append(s)
    return out


def top_peaks(mz: np.ndarray, intensity: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most intense peaks, m/z order, intensities scaled to max 1 (sqrt)."""
    if len(mz) > n:
        keep = np.sort(np.argsort(-intensity, kind="stable")[:n])
        mz, intensity = mz[keep], intensity[keep]
    inten = np.sqrt(np.clip(intensity, 0, None))
    top = inten.max() if len(inten) else 0.0
    return mz, (inten / top if top > 0 else inten)
