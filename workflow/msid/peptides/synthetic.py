"""Synthetic peptide spectra made on the fly, and the clean -> noisy curriculum.

A synthetic spectrum is the b/y ladder of a sequence (charges 1 and, for precursors of charge >= 2,
2) with peak dropout, ppm error, intensity jitter and random noise peaks. Sequences are training
peptides or random tryptic-like peptides (natural amino-acid frequencies, C-terminal K/R,
fixed carbamidomethyl C, occasional oxidised M / deamidated N,Q / N-terminal acetyl).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from msid.models.config import config_from_dict
from msid.peptides.data import PeptideSpectrum
from msid.peptides.physics import fragment_ions, precursor_mz

# UniProtKB/Swiss-Prot amino-acid composition (release statistics, %), I folded into L.
AA_FREQ = {"A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75,
           "G": 7.07, "H": 2.27, "L": 9.66 + 5.96, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70,
           "S": 6.56, "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87}


@dataclass
class NoiseConfig:
    dropout: float = 0.0  # probability that a fragment peak is missing
    noise_peaks: int = 0  # random peaks added (uniform m/z)
    ppm: float = 0.0  # fragment m/z error, standard deviation in ppm
    jitter: float = 0.0  # log-normal intensity jitter (sigma)
    charge2_fraction: float = 0.3  # share of the 2+ fragments kept when z >= 2


CLEAN = NoiseConfig(dropout=0.1, noise_peaks=5, ppm=2.0, jitter=0.2)
NOISY = NoiseConfig(dropout=0.45, noise_peaks=60, ppm=10.0, jitter=0.8)


@dataclass
class CurriculumConfig:
    """Stages of (share of clean synthetic spectra) over training; PepTRM's schedule runs from
    80/20 clean/noisy to 0/100."""
    clean_share: list[float] = field(default_factory=lambda: [0.8, 0.6, 0.4, 0.2, 0.0])
    synthetic_per_batch: int = 16  # synthetic spectra added to each batch of real ones
    random_share: float = 0.5  # of those, random tryptic-like sequences (else training ones)
    min_len: int = 6
    max_len: int = 20

    @classmethod
    def from_dict(cls, d: dict | None) -> CurriculumConfig:
        return config_from_dict(cls, d)

    def clean_share_at(self, progress: float) -> float:
        k = min(int(progress * len(self.clean_share)), len(self.clean_share) - 1)
        return self.clean_share[k]


def random_peptide(rng: np.random.Generator, min_len: int = 6, max_len: int = 20) -> list[str]:
    aas = list(AA_FREQ)
    p = np.array([AA_FREQ[a] for a in aas])
    p /= p.sum()
    n = int(rng.integers(min_len, max_len + 1))
    body = list(rng.choice(aas, size=n - 1, p=p))
    tokens = [("C[Carbamidomethyl]" if a == "C" else a) for a in body]
    for i, t in enumerate(tokens):
        if t == "M" and rng.random() < 0.2:
            tokens[i] = "M[Oxidation]"
        elif t in ("N", "Q") and rng.random() < 0.05:
            tokens[i] = f"{t}[Deamidated]"
    tokens.append("K" if rng.random() < 0.5 else "R")
    if rng.random() < 0.03:
        tokens.insert(0, "[Acetyl]-")
    return tokens


def synthetic_spectrum(tokens: list[str], charge: int, noise: NoiseConfig,
                       rng: np.random.Generator, sid: str = "synthetic") -> PeptideSpectrum:
    ions = fragment_ions(tokens, (1, 2))
    mzs, ints = [], []
    for key, arr in ions.items():
        keep = rng.random(len(arr)) >= noise.dropout
        if key.endswith("2"):
            if charge < 2:
                continue
            keep &= rng.random(len(arr)) < noise.charge2_fraction
        base = 1.0 if key.startswith("y") else 0.6
        mzs.append(arr[keep])
        ints.append(base * rng.uniform(0.2, 1.0, int(keep.sum())))
    mz = np.concatenate(mzs) if mzs else np.zeros(0)
    inten = np.concatenate(ints) if ints else np.zeros(0)
    if noise.ppm:
        mz = mz * (1 + rng.normal(0, noise.ppm * 1e-6, len(mz)))
    if noise.jitter:
        inten = inten * rng.lognormal(0, noise.jitter, len(inten))
    pmz = precursor_mz(tokens, charge)
    if noise.noise_peaks:
        hi = max(pmz * charge, 200.0)
        mz = np.concatenate([mz, rng.uniform(50, hi, noise.noise_peaks)])
        inten = np.concatenate([inten, rng.uniform(0.0, 0.5, noise.noise_peaks) ** 2])
    if len(mz) == 0:  # everything dropped: keep one y ion
        mz, inten = ions["y1"][-1:], np.ones(1)
    order = np.argsort(mz)
    return PeptideSpectrum(sid, mz[order], inten[order], pmz, charge, list(tokens),
                           source="synthetic")


def curriculum_batch(train_tokens: list[list[str]], cfg: CurriculumConfig, progress: float,
                     rng: np.random.Generator, max_len: int) -> list[PeptideSpectrum]:
    """``cfg.synthetic_per_batch`` synthetic spectra for training progress ``progress`` (0..1)."""
    out = []
    share = cfg.clean_share_at(progress)
    for _ in range(cfg.synthetic_per_batch):
        if rng.random() < cfg.random_share or not train_tokens:
            tokens = random_peptide(rng, cfg.min_len, min(cfg.max_len, max_len))
        else:
            tokens = train_tokens[int(rng.integers(len(train_tokens)))]
        charge = int(rng.choice([1, 2, 2, 2, 3, 3])) if len(tokens) > 8 else int(
            rng.choice([1, 2, 2]))
        noise = CLEAN if rng.random() < share else NOISY
        out.append(synthetic_spectrum(tokens, charge, noise, rng))
    return out
