"""De novo peptide metrics with Casanovo's conventions.

Amino acids are matched by mass, not by letter (so I = L, and K/Q within the 0.1 Da residue
tolerance): walking both sequences from the N-terminus, a predicted residue matches a true one
when their prefix masses agree within ``cum_tol`` (0.5 Da) and their own masses within
``ind_tol`` (0.1 Da); residues not matched from the front are then tried from the C-terminus. A
peptide matches when every residue of both sequences matches. N-terminal modifications count
with the first residue.

- amino-acid precision = matched residues / predicted residues (over all predictions),
- amino-acid recall = matched residues / true residues (over all spectra),
- peptide recall = matched peptides / spectra (full coverage: every spectrum gets a prediction
  or counts as missed), peptide precision = matched peptides / predictions,
- precision-coverage curve: predictions sorted by confidence, peptide precision of the top k
  against k / spectra; its area (AUC) summarises a model's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msid.peptides.physics import _residue_blocks


def aa_match(pred: list[str], true: list[str], cum_tol: float = 0.5,
             ind_tol: float = 0.1) -> tuple[int, bool]:
    """(matched residues of ``pred``, whole peptide matched)."""
    p, t = _residue_blocks(pred), _residue_blocks(true)
    if not p or not t:
        return 0, False
    n = max(len(p), len(t))
    match = np.zeros(n, dtype=bool)
    i = j = 0
    cp = ct = 0.0
    while i < len(p) and j < len(t):
        if abs((cp + p[i]) - (ct + t[j])) < cum_tol:
            match[i] = abs(p[i] - t[j]) < ind_tol
            cp, ct, i, j = cp + p[i], ct + t[j], i + 1, j + 1
        elif cp + p[i] < ct + t[j]:
            cp, i = cp + p[i], i + 1
        else:
            ct, j = ct + t[j], j + 1
    # C-terminal pass over what the N-terminal pass did not match
    i_stop = int(np.argmin(match)) if not match.all() else n
    i, j = len(p) - 1, len(t) - 1
    cp = ct = 0.0
    while i >= i_stop and j >= 0:
        if abs((cp + p[i]) - (ct + t[j])) < cum_tol:
            match[i] = match[i] or abs(p[i] - t[j]) < ind_tol
            cp, ct, i, j = cp + p[i], ct + t[j], i - 1, j - 1
        elif cp + p[i] < ct + t[j]:
            cp, i = cp + p[i], i - 1
        else:
            ct, j = ct + t[j], j - 1
    n_match = int(match[:len(p)].sum())
    return n_match, bool(len(p) == len(t) and match.all())


@dataclass
class Scored:
    """Per-spectrum results of one method: what the metrics and bootstrap resample."""
    n_pred: np.ndarray  # predicted residues (0: no prediction)
    n_true: np.ndarray
    n_match: np.ndarray
    pep_match: np.ndarray  # bool
    score: np.ndarray  # confidence (-inf: no prediction)

    def __len__(self) -> int:
        return len(self.n_true)

    def take(self, idx: np.ndarray) -> Scored:
        return Scored(self.n_pred[idx], self.n_true[idx], self.n_match[idx],
                      self.pep_match[idx], self.score[idx])


def score_predictions(preds: list[list[str] | None], scores: list[float],
                      truths: list[list[str]]) -> Scored:
    n_pred, n_true, n_match, pep = [], [], [], []
    for p, t in zip(preds, truths, strict=True):
        nt = len(_residue_blocks(t))
        if not p:
            n_pred.append(0), n_true.append(nt), n_match.append(0), pep.append(False)
            continue
        m, ok = aa_match(p, t)
        n_pred.append(len(_residue_blocks(p))), n_true.append(nt), n_match.append(m)
        pep.append(ok)
    sc = np.array([s if p else -np.inf for s, p in zip(scores, preds, strict=True)], dtype=float)
    return Scored(np.array(n_pred), np.array(n_true), np.array(n_match), np.array(pep, bool), sc)


def precision_coverage(s: Scored) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, precision) with predictions sorted by decreasing confidence."""
    has = np.isfinite(s.score)
    order = np.argsort(-s.score[has], kind="stable")
    hits = s.pep_match[has][order].astype(float)
    k = np.arange(1, len(hits) + 1)
    return k / max(len(s), 1), np.cumsum(hits) / k


def summary(s: Scored) -> dict[str, float]:
    cov, prec = precision_coverage(s)
    auc = float(np.trapezoid(prec, cov)) if len(cov) > 1 else 0.0
    n_predicted = int(np.isfinite(s.score).sum())
    return {
        "aa_precision": float(s.n_match.sum() / max(s.n_pred.sum(), 1)),
        "aa_recall": float(s.n_match.sum() / max(s.n_true.sum(), 1)),
        "peptide_recall": float(s.pep_match.mean()) if len(s) else 0.0,
        "peptide_precision": float(s.pep_match.sum() / max(n_predicted, 1)),
        "pc_auc": auc,
        "n_spectra": float(len(s)),
    }


METRICS = ("aa_precision", "aa_recall", "peptide_recall", "pc_auc")


def bootstrap(results: dict[str, Scored], n_boot: int = 1000, seed: int = 0
              ) -> dict[str, dict[str, tuple[float, float]]]:
    """95% percentile CIs per method and metric, all methods resampled on the same spectra
    (paired), plus CIs of each method's difference to the first one."""
    names = list(results)
    n = len(results[names[0]])
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in names}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for m in names:
            sm = summary(results[m].take(idx))
            for k in METRICS:
                draws[m][k].append(sm[k])
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for m in names:
        out[m] = {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
                  for k, v in draws[m].items()}
        if m != names[0]:
            out[m].update({f"delta_{k}": (
                float(np.percentile(np.subtract(draws[names[0]][k], draws[m][k]), 2.5)),
                float(np.percentile(np.subtract(draws[names[0]][k], draws[m][k]), 97.5)))
                for k in METRICS})
    return out
