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
  against k / spectra, predictions of equal confidence entering together; its area (AUC, each
  tie group spanning its coverage step at the precision it ends on, from coverage 0)
  summarises a model's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msid.peptides.physics import _residue_blocks


def aa_match(pred: list[str], true: list[str], cum_tol: float = 0.5,
             ind_tol: float = 0.1) -> tuple[int, bool]:
    """(matched residues of ``pred``, whole peptide matched)."""
    flags, ok = residue_matches(pred, true, cum_tol, ind_tol)
    return int(flags.sum()), ok


def residue_matches(pred: list[str], true: list[str], cum_tol: float = 0.5,
                    ind_tol: float = 0.1) -> tuple[np.ndarray, bool]:
    """(per residue of ``pred``, N-terminal modifications folded into the first: whether it
    matches the true peptide, Casanovo's mass-based matching; whole peptide matched)."""
    p, t = _residue_blocks(pred), _residue_blocks(true)
    if not p or not t:
        return np.zeros(len(p), dtype=bool), False
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
    # C-terminal pass over what the N-terminal pass did not match: both peptides stop at the
    # first unmatched position, so a true residue is never matched twice (Casanovo's rule)
    i_stop = int(np.argmin(match)) if not match.all() else n
    i, j = len(p) - 1, len(t) - 1
    cp = ct = 0.0
    while i >= i_stop and j >= i_stop:
        if abs((cp + p[i]) - (ct + t[j])) < cum_tol:
            match[i] = match[i] or abs(p[i] - t[j]) < ind_tol
            cp, ct, i, j = cp + p[i], ct + t[j], i - 1, j - 1
        elif cp + p[i] < ct + t[j]:
            cp, i = cp + p[i], i - 1
        else:
            ct, j = ct + t[j], j - 1
    return match[:len(p)].copy(), bool(len(p) == len(t) and match.all())


def residue_scores(tokens: list[str], aa_scores: list[float] | None, score: float
                   ) -> np.ndarray:
    """Per residue (N-terminal modifications folded into the first, as matching does): the
    decoder's token probability (the lower of a modification and its residue); the peptide
    ``score`` for every residue when there are no per-token scores (the DP)."""
    n = sum(not t.endswith("-") for t in tokens)
    if not aa_scores or len(aa_scores) != len(tokens):
        return np.full(n, score, dtype=float)
    out, carry = [], 1.0
    for t, p in zip(tokens, aa_scores, strict=True):
        if t.endswith("-"):
            carry = min(carry, p)
        else:
            out.append(min(p, carry))
            carry = 1.0
    return np.array(out, dtype=float)


@dataclass
class Scored:
    """Per-spectrum results of one method: what the metrics and bootstrap resample."""
    n_pred: np.ndarray  # predicted residues (0: no prediction)
    n_true: np.ndarray
    n_match: np.ndarray
    pep_match: np.ndarray  # bool
    score: np.ndarray  # confidence (-inf: no prediction)
    res_score: np.ndarray  # object: per spectrum, each predicted residue's score
    res_hit: np.ndarray  # object: per spectrum, whether each predicted residue matches

    def __len__(self) -> int:
        return len(self.n_true)

    def take(self, idx: np.ndarray) -> Scored:
        return Scored(self.n_pred[idx], self.n_true[idx], self.n_match[idx],
                      self.pep_match[idx], self.score[idx], self.res_score[idx],
                      self.res_hit[idx])


def score_predictions(preds: list[list[str] | None], scores: list[float],
                      truths: list[list[str]],
                      aa_scores: list[list[float]] | None = None) -> Scored:
    """``aa_scores``: per prediction, its per-token probabilities (None: the peptide score
    stands for every residue)."""
    n_pred, n_true, n_match, pep, r_score, r_hit = [], [], [], [], [], []
    aa = aa_scores if aa_scores is not None else [None] * len(preds)
    for p, t, s, a in zip(preds, truths, scores, aa, strict=True):
        nt = len(_residue_blocks(t))
        if not p:
            n_pred.append(0), n_true.append(nt), n_match.append(0), pep.append(False)
            r_score.append(np.zeros(0)), r_hit.append(np.zeros(0, dtype=bool))
            continue
        flags, ok = residue_matches(p, t)
        n_pred.append(len(flags)), n_true.append(nt), n_match.append(int(flags.sum()))
        pep.append(ok)
        r_score.append(residue_scores(p, a, s)), r_hit.append(flags)
    sc = np.array([s if p else -np.inf for s, p in zip(scores, preds, strict=True)], dtype=float)
    obj_score, obj_hit = np.empty(len(preds), dtype=object), np.empty(len(preds), dtype=object)
    obj_score[:], obj_hit[:] = r_score, r_hit
    return Scored(np.array(n_pred), np.array(n_true), np.array(n_match), np.array(pep, bool), sc,
                  obj_score, obj_hit)


def precision_coverage(s: Scored) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, precision) with predictions sorted by decreasing confidence; predictions of
    equal confidence enter together (one point per distinct score), so list order never
    decides a tie (the DP's confidences are clipped to 1)."""
    has = np.isfinite(s.score)
    scores = s.score[has]
    order = np.argsort(-scores, kind="stable")
    hits = s.pep_match[has][order].astype(float)
    k = np.arange(1, len(hits) + 1)
    last = np.r_[scores[order][1:] != scores[order][:-1], True] if len(k) else k > 0
    return (k / max(len(s), 1))[last], (np.cumsum(hits) / k)[last]


def aa_precision_coverage(s: Scored) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, precision) over every predicted residue, sorted by decreasing residue score
    (Casanovo's amino-acid curve; coverage = share of the predicted residues kept). Residues
    with equal scores enter together (one point per distinct score), so list order never
    decides a tie (the DP's residues all carry their peptide's score)."""
    if not len(s):
        return np.zeros(0), np.zeros(0)
    scores = np.concatenate([*s.res_score, np.zeros(0)])
    hits = np.concatenate([*s.res_hit, np.zeros(0, dtype=bool)]).astype(float)
    if not len(scores):
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    k = np.arange(1, len(order) + 1)
    last = np.r_[scores[order][1:] != scores[order][:-1], True]  # ends of runs of ties
    return (k / len(order))[last], (np.cumsum(hits[order]) / k)[last]


def step_auc(coverage: np.ndarray, precision: np.ndarray) -> float:
    """Area under a precision-coverage curve given at the ends of its tie groups: each group
    spans its coverage step at the precision it ends on."""
    if not len(coverage):
        return 0.0
    return float(np.sum(np.diff(np.r_[0.0, coverage]) * precision))


def summary(s: Scored) -> dict[str, float]:
    auc = step_auc(*precision_coverage(s))
    aa_cov, aa_prec = aa_precision_coverage(s)
    aa_auc = step_auc(aa_cov, aa_prec)
    n_predicted = int(np.isfinite(s.score).sum())
    return {
        "aa_precision": float(s.n_match.sum() / max(s.n_pred.sum(), 1)),
        "aa_recall": float(s.n_match.sum() / max(s.n_true.sum(), 1)),
        "peptide_recall": float(s.pep_match.mean()) if len(s) else 0.0,
        "peptide_precision": float(s.pep_match.sum() / max(n_predicted, 1)),
        "pc_auc": auc,
        "aa_pc_auc": aa_auc,
        "n_spectra": float(len(s)),
    }


METRICS = ("aa_precision", "aa_recall", "peptide_recall", "pc_auc", "aa_pc_auc")


def bootstrap(results: dict[str, Scored], n_boot: int = 1000, seed: int = 0,
              groups: list[str] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """95% percentile CIs per method and metric, all methods resampled on the same spectra
    (paired), plus CIs of each method's difference to the first one. ``groups`` (a label per
    spectrum: its peptide): a draw takes whole peptides, each with all its spectra, which
    share their sequence and mostly their outcome."""
    names = list(results)
    n = len(results[names[0]])
    rng = np.random.default_rng(seed)
    members: list[np.ndarray] = []
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"{len(groups)} group labels for {n} spectra")
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    draws: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in names}
    for _ in range(n_boot):
        if members:
            idx = np.concatenate([members[g] for g in rng.integers(0, len(members),
                                                                    len(members))])
        else:
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
