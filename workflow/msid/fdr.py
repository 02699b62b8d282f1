"""Target-decoy false-discovery estimates for spectral library search.

Decoy spectra are made by the *spectrum-based* method of Scheubert et al. (2017, Nat. Commun.
8:1494, "Significance estimation for large scale metabolomics annotations by spectral
matching"): a decoy keeps its target's precursor m/z and peak count, and its fragments are
drawn from library spectra that share a fragment with the decoy being built (fragment
co-occurrence), so decoys look like real spectra of that mass without being any one of them.
Here the first co-occurrence step starts from a random fragment of the target; each further step
picks a fragment already in the decoy, a library spectrum holding it, and up to :data:`PICK` of
that spectrum's fragments below the precursor (peaks closer than the library's peak separation
are skipped). At most ceil(:data:`MAX_SHARED` x peaks), and never all, of a decoy's peaks may be
fragments of its target (within the fragment tolerance), so a decoy is never a copy of its
target; with none shared, decoys were too easy to beat (on the MassBank test fold the estimate
fell to a third of the true FDR). Decoys are made on demand, all at once, for the library
spectra inside any query's precursor window, each from its own random stream (seed and library
position), so they do not depend on the queries or their order.

Decoys and queries are scored by compiled kernels (:mod:`msid.search.decoys`) over the library's
flat peak arrays: the decoy of a library spectrum sits in that spectrum's own peak slots, so the
best target and the best decoy of every query come from one pass each, with the same entropy
similarity as :meth:`SpectralLibrary.identity_scores`.

Each query's best target and best decoy score compete (concatenated target-decoy competition);
the FDR at a score threshold is (decoy winners >= t) / (target winners >= t) and a hit's q-value
is the least FDR of any threshold at or below its score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from msid.rankings import MIN_DELTA_SCORE, is_precursor_only, structure_margin
from msid.search.decoys import best_in_windows, make_decoys
from msid.search.library import SpectralLibrary, clean_for_entropy, polarity_code

PICK = 5  # fragments taken from each co-occurring library spectrum
MAX_SHARED = 0.25  # at most ceil(this x peaks) of a decoy's peaks may be its target's fragments


def max_shared(n_peaks: np.ndarray) -> np.ndarray:
    """How many of its target's fragments a decoy may hold: ceil(:data:`MAX_SHARED` x peaks),
    and never all of them (a one- or two-peak decoy would otherwise copy its target and win
    the competition at score 1)."""
    n_peaks = np.asarray(n_peaks, dtype=np.int64)
    return np.minimum(np.ceil(MAX_SHARED * n_peaks).astype(np.int64), np.maximum(n_peaks - 1, 0))


SCORE_EPS = 1e-12  # scores this close are equal when looking up a hit's q-value


class DecoyLibrary:
    """Spectrum-based decoys of a :class:`SpectralLibrary`, made on demand and kept.

    Decoys are stored in the library's own flat layout (the decoy of position ``p`` in the first
    ``count[p]`` slots of ``p``'s peak range), so :func:`best_scores` scores them like targets.
    """

    def __init__(self, library: SpectralLibrary, seed: int = 0) -> None:
        self.lib = library
        self.seed = seed
        by_mz = np.argsort(library.peak_mz, kind="stable")
        self._sorted_mz = library.peak_mz[by_mz]
        self._sorted_owner = library.peak_owner[by_mz].astype(np.int64)
        self._max_shared = max_shared(np.diff(library.offsets))
        self.mz = np.zeros(len(library.peak_mz))
        self.intensity = np.zeros(len(library.peak_mz))
        self.count = np.zeros(len(library), dtype=np.int64)
        self._made = np.zeros(len(library), dtype=bool)

    def make(self, positions: np.ndarray) -> None:
        """Make the decoys of these library positions (those not made yet)."""
        positions = np.asarray(positions, dtype=np.int64)
        todo = np.unique(positions[~self._made[positions]])
        if not len(todo):
            return
        lib, cfg = self.lib, self.lib.cfg
        make_decoys(todo, self.seed, lib.offsets, lib.peak_mz, lib.peak_int, lib.precursor,
                    self._sorted_mz, self._sorted_owner, cfg.fragment_tol_da,
                    cfg.min_peak_separation_da, cfg.precursor_ions_removal_da, PICK,
                    self._max_shared, self.mz, self.intensity, self.count)
        self._made[todo] = True

    def decoy(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(m/z, intensity) of the decoy of the library spectrum at sorted position ``pos``."""
        self.make(np.array([pos]))
        a = self.lib.offsets[pos]
        b = a + self.count[pos]
        return self.mz[a:b].copy(), self.intensity[a:b].copy()

    def best_score(self, precursor_mz: float, query: np.ndarray,
                   exclude_row: int = -1) -> float:
        """Best entropy similarity of a cleaned query against the decoys in its window."""
        scores, _ = best_scores(self.lib, [precursor_mz], [query], [exclude_row], decoys=self)
        return float(scores[0])


def best_scores(library: SpectralLibrary, precursors: Sequence[float],
                queries: Sequence[np.ndarray], exclude_rows: Sequence[int] | None = None,
                decoys: DecoyLibrary | None = None, ion_modes: Sequence[object] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per cleaned query (:func:`clean_for_entropy`): the best identity score in its precursor
    window and the store row of that best (-1: none above 0), against the library's spectra or,
    with ``decoys``, against their decoys (made here where missing). ``exclude_rows``: a store
    row per query left out of its search (-1: none). ``ion_modes``: per query; spectra of the
    opposite polarity are left out (as library search leaves them out)."""
    p = np.asarray(precursors, dtype=np.float64)
    q_pol = np.array([polarity_code(m) for m in ion_modes] if ion_modes is not None
                     else np.zeros(len(p)), dtype=np.int8)
    lo, hi = (w.astype(np.int64) for w in library.windows(p))
    skip = np.full(len(p), -1, dtype=np.int64)
    if exclude_rows is not None:
        ex = np.asarray(exclude_rows, dtype=np.int64)
        pos_of_row = np.empty(len(library), dtype=np.int64)
        pos_of_row[library.order] = np.arange(len(library))
        skip = np.where(ex >= 0, pos_of_row[np.clip(ex, 0, None)], -1)
    sizes = np.array([len(q) for q in queries], dtype=np.int64)
    q_off = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=q_off[1:])
    flat = (np.concatenate([np.asarray(q, dtype=np.float64).reshape(-1, 2) for q in queries])
            if len(queries) else np.zeros((0, 2)))
    if decoys is None:
        count, s_mz, s_int = np.diff(library.offsets), library.peak_mz, library.peak_int
    else:
        has = hi > lo
        cover = np.zeros(len(library) + 1, dtype=np.int64)  # positions inside any window
        np.add.at(cover, lo[has], 1)
        np.add.at(cover, hi[has], -1)
        decoys.make(np.flatnonzero(np.cumsum(cover[:-1]) > 0))
        count, s_mz, s_int = decoys.count, decoys.mz, decoys.intensity
    best = np.zeros(len(p))
    pos = np.full(len(p), -1, dtype=np.int64)
    best_in_windows(lo, hi, skip, q_off, np.ascontiguousarray(flat[:, 0]),
                    np.ascontiguousarray(flat[:, 1]), library.offsets, count, s_mz, s_int,
                    library.cfg.fragment_tol_da, best, pos, library.polarity, q_pol)
    return best, np.where(pos >= 0, library.order[np.clip(pos, 0, None)], -1)


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
        """q-value of hits with these scores (NaN for a score of 0 or below). A score within
        :data:`SCORE_EPS` of a threshold counts as at it: the competition's compiled scoring may
        differ from the search's in the last bit."""
        th, _, q = self.qvalue_table()
        scores = np.asarray(list(scores), dtype=np.float64)
        if not len(th):  # nothing competed: no estimate, so no hit is called confident
            return np.where(scores > 0, 1.0, np.nan)
        idx = np.searchsorted(th, scores + SCORE_EPS, side="right") - 1
        out = np.where(idx >= 0, q[np.clip(idx, 0, None)], 1.0)
        return np.where(scores > 0, out, np.nan)


def compete(library: SpectralLibrary, decoys: DecoyLibrary, precursors: Sequence[float],
            peaks: Sequence[tuple[np.ndarray, np.ndarray]],
            exclude_rows: Sequence[int] | None = None,
            ion_modes: Sequence[object] | None = None) -> tuple[Competition, np.ndarray]:
    """Target-decoy competition over queries (each against the library spectra, and their
    decoys, of its polarity); also returns each query's best target row."""
    queries = [clean_for_entropy(p, mz, inten, library.cfg)
               for p, (mz, inten) in zip(precursors, peaks, strict=True)]
    t, best_row = best_scores(library, precursors, queries, exclude_rows, ion_modes=ion_modes)
    d, _ = best_scores(library, precursors, queries, exclude_rows, decoys=decoys,
                       ion_modes=ion_modes)
    return Competition(t, d), best_row


def add_qvalues(rows: list[dict], library: SpectralLibrary, store, seed: int = 0,
                method: str = "library") -> Competition:
    """Fill ``q_value`` of ``method``'s rows (in place) from a target-decoy competition over the
    store's queries: each query's best target against its best decoy. A query's top row gets
    the q-value of its score when its target won, and 1 when its decoy won (the competition
    rejects it). Rows below the top were not in the competition and precursor-only matches
    have no spectrum to compare: both keep NaN."""
    decoys = DecoyLibrary(library, seed)
    precursors = store.metadata["precursor_mz"].to_numpy(dtype=np.float64)
    comp, _ = compete(library, decoys, precursors, store.peaks_range(0, len(store)),
                      ion_modes=store.metadata["ion_mode"].tolist())
    won = dict(zip(store.metadata["id"].astype(str), comp.target > comp.decoy, strict=True))
    top = [r for r in rows if r["method"] == method and r["rank"] == 1
           and not is_precursor_only(r.get("note", ""))]
    for r, q in zip(top, comp.qvalues([r["score"] for r in top]), strict=True):
        if not won.get(str(r["query_id"]), False):
            q = 1.0
        r["q_value"] = float(q) if math.isfinite(q) else math.nan
    return comp


def structure_deltas(library: SpectralLibrary, rows: np.ndarray,
                     peaks: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per query (a library row, searched without its own spectrum): the top hit's score minus
    the best score of a spectrum of another structure (InChIKey first block), as
    ``delta_score`` in run tables; NaN without a hit."""
    md = library.metadata
    ik = md["inchikey"].astype(str).str[:14].to_numpy()
    out = np.full(len(rows), np.nan)
    for k, (r, (mz, inten)) in enumerate(zip(rows, peaks, strict=True)):
        hits = [h for h in library.search(float(md["precursor_mz"].iat[r]), mz, inten, top_k=0,
                                          ion_mode=md["ion_mode"].iat[r])
                if h.library_index != r]
        out[k] = structure_margin([ik[h.library_index] for h in hits], [h.score for h in hits])
    return out


def fdr_curve(library_store, fold: str = "test", max_queries: int = 1000, seed: int = 0,
              cfg=None, min_delta: float = MIN_DELTA_SCORE) -> tuple[object, dict]:
    """Estimated vs true FDR of library search on one fold, leave-one-spectrum-out.

    Queries are up to ``max_queries`` spectra of ``fold`` (seeded sample); each is searched
    against the whole library less its own spectrum (other spectra of its structure stay), and
    against the decoys. A target winner is a true hit when its InChIKey first block is the
    query's. Returns (table: threshold, n_target, n_decoy, est_fdr, q_value, true_fdr, and
    n_target_clear / true_fdr_clear over the accepted hits whose delta_score is at least
    ``min_delta``, the ones a run report calls confident; summary).
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
                             exclude_rows=rows, ion_modes=md["ion_mode"].to_numpy()[rows])
    ik = md["inchikey"].astype(str).str[:14].to_numpy()
    correct = np.array([b >= 0 and ik[b] == ik[r] for b, r in zip(best_row, rows, strict=True)])
    clear = ~(structure_deltas(library, rows, peaks) < min_delta)
    th, est, q = comp.qvalue_table()
    t, d = comp.target, comp.decoy
    target_win = (t > d) & (t > 0)
    out = []
    for s, e, qq in zip(th, est, q, strict=True):
        tw = target_win & (t >= s)
        n_t = int(tw.sum())
        n_c = int((tw & clear).sum())
        out.append({"threshold": float(s), "n_target": n_t,
                    "n_decoy": int(((d >= t) & (d > 0) & (d >= s)).sum()),
                    "est_fdr": float(e), "q_value": float(qq),
                    "true_fdr": float((tw & ~correct).sum() / max(n_t, 1)),
                    "n_target_clear": n_c,
                    "true_fdr_clear": float((tw & clear & ~correct).sum() / max(n_c, 1))})
    table = pd.DataFrame(out)
    summary = {"fold": fold, "queries": len(rows), "target_winners": int(target_win.sum()),
               "decoy_winners": int(((d >= t) & (d > 0)).sum()),
               "no_hit": int(((t <= 0) & (d <= 0)).sum()),
               "correct_top1": int((target_win & correct).sum()),
               "decoy_method": "spectrum-based (Scheubert et al. 2017)", "seed": seed,
               "min_delta_score": min_delta,
               "target_winners_clear": int((target_win & clear).sum())}
    for level in (0.01, 0.05, 0.1):
        ok = table[table["q_value"] <= level] if len(table) else table
        if len(ok):
            row = ok.iloc[0]  # lowest threshold passing the level: the most hits kept
            summary[f"at_q{level}"] = {"threshold": row["threshold"],
                                       "n_target": int(row["n_target"]),
                                       "true_fdr": row["true_fdr"],
                                       "n_target_clear": int(row["n_target_clear"]),
                                       "true_fdr_clear": row["true_fdr_clear"]}
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
    if "true_fdr_clear" in table:
        ax.step(table["n_target"], table["true_fdr_clear"], where="post", lw=1.5, ls="--",
                label="true FDR of the unambiguous hits (\u0394score \u2265 "
                      f"{MIN_DELTA_SCORE:g}) among them")
    ax.set_xlabel("library hits accepted (best first)")
    ax.set_ylabel("FDR")
    top = float(max(table["q_value"].max(), table["true_fdr"].max(), 0.01)) if len(table) else 1
    ax.set_ylim(0, min(1.0, top * 1.1))
    ax.set_title("Library search FDR on the test fold (leave-one-out)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
