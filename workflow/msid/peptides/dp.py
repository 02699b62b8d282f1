"""The classic baseline: spectrum-graph de novo sequencing by dynamic programming (not learned).

Every peak becomes candidate prefix (b-ion) masses under each ion interpretation: b and y at
charge 1, and at charge 2 when the precursor has charge >= 2 (a y ion at prefix mass M - y).
Nearby candidates are merged into nodes scored by their peaks' (square-root) intensity; the
nodes 0 and M (the precursor's residue mass) are added. Two nodes are joined by an edge when
their mass difference is one residue, or two residues (a missing fragment; penalised). The
best-scoring path from 0 to M is the peptide (dynamic programming over nodes in mass order).
Confidence: the share of the spectrum's (square-root) intensity the path's nodes explain.

Uses the same physics (vocabulary masses, proton, water) as PepTRM.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np

from msid.peptides.data import PeptideSpectrum, top_peaks
from msid.peptides.decode import Decoded, mass_ok
from msid.peptides.physics import PROTON, WATER, Vocab, neutral_from_mz


@dataclass
class DPConfig:
    fragment_tol_da: float = 0.05
    ppm: float = 50.0
    isotopes: int = 1
    max_peaks: int = 100
    gap_penalty: float = 0.5  # per two-residue edge
    node_bonus: float = 0.05  # every supported node on the path

    @classmethod
    def from_dict(cls, d: dict | None) -> DPConfig:
        return cls(**(d or {}))


class SpectrumGraphDP:
    def __init__(self, cfg: DPConfig | None = None, vocab: Vocab | None = None) -> None:
        self.cfg = cfg or DPConfig()
        self.vocab = vocab or Vocab.default()
        res = [(i, float(m)) for i, (t, m) in enumerate(zip(self.vocab.tokens,
                                                              self.vocab.masses, strict=True))
               if i > 0 and i not in self.vocab.first_only_ids]  # residues found anywhere
        singles = [((i,), m) for i, m in res]
        pairs = [((a[0], b[0]), a[1] + b[1]) for a, b in combinations_with_replacement(res, 2)]
        self.singles = sorted(singles, key=lambda x: x[1])
        self.pairs = sorted(pairs, key=lambda x: x[1])
        self.single_m = np.array([m for _, m in self.singles])
        self.pair_m = np.array([m for _, m in self.pairs])

    def _nodes(self, mz: np.ndarray, w: np.ndarray, M: float, charge: int
               ) -> tuple[np.ndarray, np.ndarray]:
        pos, sc = [], []
        for z in ((1, 2) if charge >= 2 else (1,)):
            frag = mz * z - z * PROTON  # neutral fragment mass (+ water for y)
            pos += [frag, M - (frag - WATER)]
            sc += [w, w]
        p, s = np.concatenate(pos), np.concatenate(sc)
        keep = (p > 50) & (p < M - 50)
        p, s = p[keep], s[keep]
        order = np.argsort(p)
        p, s = p[order], s[order]
        tol = self.cfg.fragment_tol_da
        nodes_p, nodes_s = [0.0], [0.0]
        k = 0
        while k < len(p):  # merge candidates within the tolerance
            j = k
            while j + 1 < len(p) and p[j + 1] - p[k] <= tol:
                j += 1
            ww = s[k:j + 1]
            nodes_p.append(float(np.average(p[k:j + 1], weights=ww + 1e-9)))
            nodes_s.append(float(ww.sum()) + self.cfg.node_bonus)
            k = j + 1
        nodes_p.append(M)
        nodes_s.append(0.0)
        return np.array(nodes_p), np.array(nodes_s)

    def _match(self, diff: np.ndarray, masses: np.ndarray, tol: float) -> np.ndarray:
        """Index into ``masses`` of the closest mass within ``tol`` of each diff, else -1."""
        k = np.clip(np.searchsorted(masses, diff), 1, len(masses) - 1)
        left, right = masses[k - 1], masses[k]
        best = np.where(np.abs(diff - left) <= np.abs(diff - right), k - 1, k)
        ok = np.abs(masses[best] - diff) <= tol
        return np.where(ok, best, -1)

    def sequence(self, s: PeptideSpectrum) -> Decoded:
        cfg = self.cfg
        pm = neutral_from_mz(s.precursor_mz, s.charge)
        M = pm - WATER
        mz, inten = top_peaks(np.asarray(s.mz, float), np.asarray(s.intensity, float),
                              cfg.max_peaks)
        if len(mz) == 0:
            return Decoded([], 0.0, False)
        p, sc = self._nodes(mz, inten, M, s.charge)
        n = len(p)
        diff = p[None, :] - p[:, None]  # diff[i, j] = p_j - p_i
        tol = np.full((n, n), cfg.fragment_tol_da)
        tol[:, -1] = cfg.fragment_tol_da + cfg.ppm * 1e-6 * pm  # edges into M
        valid = diff > 0
        d = np.where(valid, diff, 0.0)
        one = np.where(valid, self._match(d, self.single_m, cfg.fragment_tol_da), -1)
        two = np.where(valid & (one < 0), self._match(d, self.pair_m, cfg.fragment_tol_da), -1)
        # wider tolerance for the last edge (precursor error)
        one[:, -1] = np.where(valid[:, -1], self._match(d[:, -1], self.single_m, tol[0, -1]), -1)
        two[:, -1] = np.where(valid[:, -1] & (one[:, -1] < 0),
                              self._match(d[:, -1], self.pair_m, tol[0, -1]), -1)
        best = np.full(n, -np.inf)
        best[0] = 0.0
        back: list[tuple[int, tuple[int, ...]] | None] = [None] * n
        for j in range(1, n):
            cand_one = np.flatnonzero(one[:j, j] >= 0)
            cand_two = np.flatnonzero(two[:j, j] >= 0)
            for i in cand_one:
                v = best[i] + sc[j]
                if v > best[j]:
                    best[j], back[j] = v, (int(i), self.singles[one[i, j]][0])
            for i in cand_two:
                v = best[i] + sc[j] - cfg.gap_penalty
                if v > best[j]:
                    best[j], back[j] = v, (int(i), self.pairs[two[i, j]][0])
        if not np.isfinite(best[-1]):
            return Decoded([], 0.0, False)
        ids: list[int] = []
        j = n - 1
        while j > 0 and back[j] is not None:
            i, res = back[j]
            ids = list(res) + ids
            j = i
        tokens = [self.vocab.tokens[i] for i in ids]
        explained = float(sc[1:-1].sum())
        on_path = float(best[-1])
        conf = max(0.0, min(1.0, on_path / explained)) if explained > 0 else 0.0
        ok = mass_ok(float(self.vocab.masses[ids].sum()), pm, cfg.ppm, cfg.isotopes)
        return Decoded(tokens, conf if ok else conf - 1.0, ok)
