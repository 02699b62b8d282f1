"""Decoding PepTRM's per-position distributions into peptides.

- greedy: the most probable token at every position, up to the first end token;
- beam: the most probable sequences (mean log-probability, end token included) whose mass
  matches the precursor within ``ppm`` (isotope errors 0..``isotopes`` allowed); beams heavier
  than the precursor are pruned as they grow. When no beam matches, the greedy sequence is
  returned with its confidence lowered by 1 (Casanovo's convention for mass-mismatched peptides).

Confidence: exp(mean log-probability) of the chosen tokens (end token included), in (0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msid.peptides.physics import WATER, Vocab

ISOTOPE = 1.00335483507  # 13C - 12C, the precursor isotope-error step


@dataclass
class Decoded:
    tokens: list[str]
    score: float
    mass_ok: bool


def mass_ok(residue_sum: float, precursor_mass: float, ppm: float, isotopes: int) -> bool:
    m = residue_sum + WATER
    return any(abs(m - (precursor_mass - k * ISOTOPE)) <= ppm * 1e-6 * precursor_mass
               for k in range(isotopes + 1))


def _valid_positions(ids: list[int], vocab: Vocab) -> bool:
    nterm = set(vocab.nterm_ids)
    return all(i not in nterm for i in ids[1:]) and bool([i for i in ids if i not in nterm])


def greedy(logp: np.ndarray, vocab: Vocab, precursor_mass: float, ppm: float = 50.0,
           isotopes: int = 1) -> Decoded:
    """``logp``: (max_len, V) log-probabilities."""
    ids = logp.argmax(-1)
    nterm = set(vocab.nterm_ids)
    chosen, lp = [], []
    for k, i in enumerate(ids):
        i = int(i)
        if i == 0:
            lp.append(logp[k, 0])
            break
        if i in nterm and chosen:  # an N-terminal modification only leads: skip it
            continue
        chosen.append(i)
        lp.append(logp[k, i])
    if chosen and all(c in nterm for c in chosen):
        chosen = []
    tokens = vocab.decode(chosen)
    ok = bool(tokens) and mass_ok(float(vocab.masses[chosen].sum()), precursor_mass, ppm,
                                  isotopes)
    score = float(np.exp(np.mean(lp))) if lp else 0.0
    return Decoded(tokens, score if ok else score - 1.0, ok)


def beam(logp: np.ndarray, vocab: Vocab, precursor_mass: float, beam_size: int = 10,
         per_position: int = 5, ppm: float = 50.0, isotopes: int = 1) -> Decoded:
    masses = vocab.masses
    target = precursor_mass - WATER
    tol = ppm * 1e-6 * precursor_mass + isotopes * ISOTOPE
    nterm = set(vocab.nterm_ids)
    L = logp.shape[0]
    beams: list[tuple[float, list[int], float]] = [(0.0, [], 0.0)]  # (sum logp, ids, mass)
    finished: list[tuple[float, list[int]]] = []
    for pos in range(L):
        cand = np.argsort(-logp[pos])[:per_position]
        nxt = []
        for slp, ids, m in beams:
            for c in cand:
                c = int(c)
                lp = slp + float(logp[pos, c])
                if c == 0:
                    if ids and mass_ok(m, precursor_mass, ppm, isotopes) \
                            and _valid_positions(ids, vocab):
                        finished.append((lp / (len(ids) + 1), ids))
                    continue
                if c in nterm and ids:
                    continue
                m2 = m + float(masses[c])
                if m2 > target + tol:
                    continue
                nxt.append((lp, [*ids, c], m2))
        nxt.sort(key=lambda b: -b[0])
        beams = nxt[:beam_size]
        if not beams:
            break
    for slp, ids, m in beams:  # sequences filling every position
        if mass_ok(m, precursor_mass, ppm, isotopes) and _valid_positions(ids, vocab):
            finished.append((slp / len(ids), ids))
    if not finished:
        return greedy(logp, vocab, precursor_mass, ppm, isotopes)
    best = max(finished, key=lambda f: f[0])
    return Decoded(vocab.decode(best[1]), float(np.exp(best[0])), True)
