"""Target-decoy false-discovery estimates for spectral library search.

Decoy spectra are made by the *spectrum-based* method of Wang et al. (2018, Anal. Chem. 90:
5191, "Target-decoy-based false discovery rate estimation for large-scale metabolomics data
analysis"): a decoy keeps its target's precursor m/z and peak count, and its fragments are drawn
from library spectra that share a fragment with the decoy being built (fragment co-occurrence),
so decoys look like real spectra of that mass without being any one of them. Here the first
co-occurrence step starts from a random fragment of the target; each further step picks a
fragment already in the decoy, a library spectrum holding it, and up to :data:`PICK` of that
spectrum's fragments below the precursor (peaks closer than the library's peak separation are
skipped). At most ceil(:data:`MAX_SHARED` x peaks) of a decoy's peaks may be fragments of its
target (within the fragment tolerance), so a decoy is never a copy of its target; with none
shared, decoys were too easy to beat (on the MassBank test fold the estimate fell to a third of
the true FDR). Decoys are made on demand for the library spectra inside a query's precursor
window, seeded per library spectrum, so they do not depend on query order.

Each query's best target and best decoy score compete (concatenated target-decoy competition);
the FDR at a score threshold is (decoy winners >= t) / (target winners >= t) and a hit's q-value
is the least FDR of any threshold at or below its score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from msid.rankings import PRECURSOR_ONLY
from msid.search.library import SpectralLibrary, clean_for_entropy

PICK = 5  # fragments taken from each co-occurring library spectrum
MAX_SHARED = 0.25  # at most ceil(this x peaks) of a decoy's peaks may be its target's fragments


def _xlog2x(x: np.ndarray) -> np.ndarray:
    return x * np.log2(x)


class DecoyLibrary:
    """Spectrum-based decoys of a :class:`SpectralLibrary`, made on demand and cached."""

    def __init__(self, library: SpectralLibrary, seed: int = 0) -> None:
        self.lib = library
        self.seed = seed
        self._by_mz = np.argsort(library.peak_mz, kind="stable")
        self._sorted_mz = library.peak_mz[self._by_mz]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def decoy(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(m/z, intensity) of the decoy of the library spectrum at sorted position ``pos``."""
        if pos in self._cache:
            return self._cache[pos]
        lib = self.lib
        a, b = lib.offsets[pos], lib.offsets[pos + 1]
        n = int(b - a)
        rng = np.random.default_rng([self.seed, pos])
        max_mz = lib.precursor[pos] - lib.cfg.precursor_ions_removal_da
        sep = lib.cfg.min_peak_separation_da
        tol = lib.cfg.fragment_tol_da
        mz: list[float] = []
        inten: list[float] = []
        own = lib.peak_mz[a:b]
        seeds = [float(own[rng.integers(n)])] if n else []
        tries = n_shared = 0
        max_shared = math.ceil(MAX_SHARED * n)
        while len(mz) < n and tries < 20 * n + 20:
            tries += 1
            f = seeds[0] if not mz else mz[rng.integers(len(mz))]
            lo, hi = np.searchsorted(self._sorted_mz, [f - tol, f + tol])
            if hi > lo:  # a library spectrum holding this fragment
                donor = int(lib.peak_owner[self._by_mz[rng.integers(lo, hi)]])
            else:  # no co-occurrence: any spectrum
                donor = int(rng.integers(len(lib)))
            if donor == pos:
                continue
            da, db = lib.offsets[donor], lib.offsets[donor + 1]
            cand = np.arange(da, db)[lib.peak_mz[da:db] < max_mz]
            for k in rng.permutation(cand)[:PICK]:
                m = float(lib.peak_mz[k])
                shared = bool(np.any(np.abs(own - m) <= tol))
                if (len(mz) >= n or any(abs(m - x) <= sep for x in mz)
                        or (shared and n_shared >= max_shared)):
                    continue
                n_shared += shared
                mz.append(m)
                inten.append(float(lib.peak_int[k]))
        mz_a = np.asarray(mz, dtype=np.float64)
        int_a = np.asarray(inten, dtype=np.float64)
        if len(int_a):
            int_a *= 0.5 / int_a.sum()  # the library's form: weighted, summing to 1/2
        order = np.argsort(mz_a)
        self._cache[pos] = (mz_a[order], int_a[order])
        return self._cache[pos]

    def best_score(self, precursor_mz: float, query: np.ndarray,
                   exclude_row: int = -1) -> float:
        """Best entropy similarity of a cleaned query against the decoys in its window."""
        lo, hi = self.lib._window(precursor_mz)
        if hi <= lo or len(query) == 0:
            return 0.0
        best = 0.0
        qmz = query[:, 0].astype(np.float64)
        qint = query[:, 1].astype(np.float64)
        tol = self.lib.cfg.fragment_tol_da
        for pos in range(lo, hi):
            if int(self.lib.order[pos]) == exclude_row:
                continue
            mz, inten = self.decoy(pos)
            if not len(mz):
                continue
            qi, li = np.nonzero(np.abs(qmz[:, None] - mz[None, :]) <= tol)
            if not len(qi):
                continue
            qa, lb = qint[qi], inten[li]
            best = max(best, float((_xlog2x(qa + lb) - _xlog2x(qa) - _xlog2x(lb)).sum()))
        return best


def target_best(library: SpectralLibrary, precursor_mz: float, query: np.ndarray,
                exclude_row: int = -1) -> tuple[float, int]:
    """(best target score, its store row) for a cleaned query; (0, -1) when none."""
    rows, scores, _ = library.identity_scores(precursor_mz, query)
    if exclude_row >= 0:
        scores = np.where(rows == exclude_row, 0.0, scores)
    if not len(scores) or scores.max() <= 0:
        return 0.0, -1
    k = int(np.argmax(scores))
    return float(scores[k]), int(rows[k])


@dataclass
class Competition:
    """Per query: the best target and decoy scores (0: none)."""

    target: np.ndarray
    decoy: np.ndarray

    def winners(self) -> tuple[np.ndarray, np.ndarray]:
        """(winning scores, is_decoy) of the queries with any hit."""
        t, d = self.target, self.decoy
        has = (t > 0) | (d > 0)
        is_decoy = d >= t
        return np.where(is_decoy, d, t)[has], is_decoy[has]

    def qvalue_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(thresholds ascending, estimated FDR, q-value) at each distinct winning score."""
        score, is_decoy = self.winners()
        if not len(score):
            return np.zeros(0), np.zeros(0), np.zeros(0)
        order = np.argsort(-score, kind="stable")
        s, dec = score[order], is_decoy[order]
        n_dec = np.cumsum(dec)
        n_tar = np.cumsum(~dec)
        last = np.r_[s[1:] != s[:-1], True]  # the last of each run of equal scores
        s, n_dec, n_tar = s[last], n_dec[last], n_tar[last]
        fdr = np.minimum(n_dec / np.maximum(n_tar, 1), 1.0)
        s, fdr = s[::-1], fdr[::-1]  # ascending thresholds
        q = np.minimum.accumulate(fdr)  # least FDR of any threshold at or below
        return s, fdr, q

    def qvalues(self, scores: Iterable[float]) -> np.ndarray:
        """q-value of hits with these scores (NaN for a score of 0 or below)."""
        th, _, q = self.qvalue_table()
        scores = np.asarray(list(scores), dtype=np.float64)
        if not len(th):
            return np.where(scores > 0, 0.0, np.nan)
        idx = np.searchsorted(th, scores, side="right") - 1
        out = np.where(idx >= 0, q[np.clip(idx, 0, None)], 1.0)
        return np.where(scores > 0, out, np.nan)


def compete(library: SpectralLibrary, decoys: DecoyLibrary, precursors: Sequence[float],
            peaks: Sequence[tuple[np.ndarray, np.ndarray]],
            exclude_rows: Sequence[int] | None = None) -> tuple[Competition, np.ndarray]:
    """Target-decoy competition over queries; also returns each query's best target row."""
    n = len(precursors)
    t, d = np.zeros(n), np.zeros(n)
    best_row = np.full(n, -1, dtype=np.int64)
    for i, (p, (mz, inten)) in enumerate(zip(precursors, peaks, strict=True)):
        ex = -1 if exclude_rows is None else int(exclude_rows[i])
        q = clean_for_entropy(p, mz, inten, library.cfg)
        t[i], best_row[i] = target_best(library, p, q, ex)
        d[i] = decoys.best_score(p, q, ex)
    return Competition(t, d), best_row


def add_qvalues(rows: list[dict], library: SpectralLibrary, store, seed: int = 0,
                method: str = "library") -> Competition:
    """Fill ``q_value`` of ``method``'s rows (in place) from a target-decoy competition over the
    store's queries. Precursor-only matches keep NaN (no spectrum to compare)."""
    decoys = DecoyLibrary(library, seed)
    precursors = store.metadata["precursor_mz"].to_numpy(dtype=np.float64)
    comp, _ = compete(library, decoys, precursors, store.peaks_range(0, len(store)))
    hit = [r for r in rows if r["method"] == method and r["rank"] > 0
           and r.get("note", "") != PRECURSOR_ONLY]
    for r, q in zip(hit, comp.qvalues([r["score"] for r in hit]), strict=True):
        r["q_value"] = float(q) if math.isfinite(q) else math.nan
    return comp


def fdr_curve(library_store, fold: str = "test", max_queries: int = 1000, seed: int = 0,
              cfg=None) -> tuple[object, dict]:
    """Estimated vs true FDR of library search on one fold, leave-one-spectrum-out.

    Queries are up to ``max_queries`` spectra of ``fold`` (seeded sample); each is searched
    against the whole library less its own spectrum (other spectra of its structure stay), and
    against the decoys. A target winner is a true hit when its InChIKey first block is the
    query's. Returns (table: threshold, n_target, n_decoy, est_fdr, q_value, true_fdr; summary).
    """
    import pandas as pd

    from msid.store import SpectrumStore

    library = SpectralLibrary(library_store, cfg)
    md = library.metadata
    rows = np.flatnonzero(md["fold"].astype(str).to_numpy() == fold)
    rng = np.random.default_rng(seed)
    if max_queries and len(rows) > max_queries:
        rows = np.sort(rng.choice(rows, max_queries, replace=False))
    with SpectrumStore(library_store) as st:
        peaks = st.peaks_many([int(r) for r in rows])
    precursors = md["precursor_mz"].to_numpy(dtype=np.float64)[rows]
    comp, best_row = compete(library, DecoyLibrary(library, seed), precursors, peaks,
                             exclude_rows=rows)
    ik = md["inchikey"].astype(str).str[:14].to_numpy()
    correct = np.array([b >= 0 and ik[b] == ik[r] for b, r in zip(best_row, rows, strict=True)])
    th, est, q = comp.qvalue_table()
    t, d = comp.target, comp.decoy
    target_win = (t > d) & (t > 0)
    out = []
    for s, e, qq in zip(th, est, q, strict=True):
        tw = target_win & (t >= s)
        n_t = int(tw.sum())
        out.append({"threshold": float(s), "n_target": n_t,
                    "n_decoy": int(((d >= t) & (d > 0) & (d >= s)).sum()),
                    "est_fdr": float(e), "q_value": float(qq),
                    "true_fdr": float((tw & ~correct).sum() / max(n_t, 1))})
    table = pd.DataFrame(out)
    summary = {"fold": fold, "queries": len(rows), "target_winners": int(target_win.sum()),
               "decoy_winners": int(((d >= t) & (d > 0)).sum()),
               "no_hit": int(((t <= 0) & (d <= 0)).sum()),
               "correct_top1": int((target_win & correct).sum()),
               "decoy_method": "spectrum-based (Wang et al. 2018)", "seed": seed}
    for level in (0.01, 0.05, 0.1):
        ok = table[table["q_value"] <= level] if len(table) else table
        if len(ok):
            row = ok.iloc[0]  # lowest threshold passing the level: the most hits kept
            summary[f"at_q{level}"] = {"threshold": row["threshold"],
                                       "n_target": int(row["n_target"]),
                                       "true_fdr": row["true_fdr"]}
    return table, summary


def plot_fdr_curve(table, out) -> None:
    """Estimated (q-value) and true FDR against the number of hits accepted (by score cut)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.step(table["n_target"], table["q_value"], where="post", lw=1.5,
            label="estimated FDR (target-decoy q-value)")
    ax.step(table["n_target"], table["true_fdr"], where="post", lw=1.5,
            label="true FDR (known structures)")
    ax.set_xlabel("library hits accepted (best first)")
    ax.set_ylabel("FDR")
    top = float(max(table["q_value"].max(), table["true_fdr"].max(), 0.01)) if len(table) else 1
    ax.set_ylim(0, min(1.0, top * 1.1))
    ax.set_title("Library search FDR on the test fold (leave-one-out)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
