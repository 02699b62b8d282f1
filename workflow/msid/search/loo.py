"""Leave-one-spectrum-out library-search benchmark: msid's search vs plain matchms.

Queries are spectra of one fold of the library store; each is searched against the whole
library less its own spectrum (the other spectra of its structure stay). msid: entropy
similarity in the max(Da, ppm) precursor window, with the precursor-mass fallback for queries
without fragment evidence (as :class:`msid.methods.LibrarySearch` answers). Baseline: matchms
``CosineGreedy`` (default fragment tolerance) over the library spectra within ``ppm`` of the
query's precursor. Both keep to the query's polarity (library spectra of the other ion mode are
never a hit). Hit@1 compares InChIKey first blocks; a query without an answer is a miss.
"""

from __future__ import annotations

import os
import time

import numpy as np

from msid.search.library import LibrarySearchConfig, SpectralLibrary, clean_for_entropy
from msid.store import SpectrumStore


def _msid_top1(lib: SpectralLibrary, prec: float, mz, inten, own: int,
               ion_mode: object = "") -> tuple[int, bool]:
    """(store row of the best hit or -1, precursor-only?)"""
    q = clean_for_entropy(prec, mz, inten, lib.cfg)
    rows, scores, _ = lib.identity_scores(prec, q, ion_mode)
    scores = np.where(rows == own, 0.0, scores)
    if len(scores) and scores.max() > 0:
        return int(rows[int(np.argmax(scores))]), False
    lo, hi = lib._window(prec)
    other = lib.opposite(lo, hi, ion_mode)
    pos = [p for p in range(lo, hi) if int(lib.order[p]) != own and not other[p - lo]]
    if not pos:
        return -1, False
    best = min(pos, key=lambda p: abs(lib.precursor[p] - prec))
    return int(lib.order[best]), True


def loo_benchmark(store: str | os.PathLike, fold: str = "test", max_queries: int = 0,
                  seed: int = 0, cfg: LibrarySearchConfig | None = None,
                  ppm: float = 10.0) -> dict:
    from matchms import Spectrum
    from matchms.similarity import CosineGreedy

    t0 = time.perf_counter()
    lib = SpectralLibrary(store, cfg)
    t_index = time.perf_counter() - t0
    md = lib.metadata
    ik = md["inchikey"].astype(str).str[:14].to_numpy()
    prec_all = md["precursor_mz"].to_numpy(dtype=np.float64)
    modes = md["ion_mode"].astype(str).to_numpy()  # both searches keep to a query's polarity
    pol = lib.row_polarity
    rows = np.flatnonzero(md["fold"].astype(str).to_numpy() == fold)
    if max_queries and len(rows) > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_queries, replace=False))
    with SpectrumStore(store) as st:
        peaks = st.peaks_many([int(r) for r in rows])
        t0 = time.perf_counter()
        top_msid, pre_only = [], 0
        for r, (mz, inten) in zip(rows, peaks, strict=True):
            best, po = _msid_top1(lib, float(prec_all[r]), mz, inten, int(r), modes[r])
            top_msid.append(best)
            pre_only += po
        t_msid = time.perf_counter() - t0
        # matchms baseline over the same cleaned peaks
        order = np.argsort(prec_all, kind="stable")
        sorted_prec = prec_all[order]
        windows = []
        for r in rows:
            tol = prec_all[r] * ppm * 1e-6
            lo, hi = np.searchsorted(sorted_prec, [prec_all[r] - tol, prec_all[r] + tol])
            windows.append([int(x) for x in order[lo:hi]
                            if x != r and pol[x] * pol[r] >= 0])
        needed = sorted({x for w in windows for x in w} | {int(r) for r in rows})
        spectra = {}
        for x, (mz, inten) in zip(needed, st.peaks_many(needed), strict=True):
            spectra[x] = Spectrum(mz.astype(float), inten.astype(float),
                                  metadata={"precursor_mz": float(prec_all[x])},
                                  metadata_harmonization=False)
    cos = CosineGreedy()
    t0 = time.perf_counter()
    top_mm = []
    for r, w in zip(rows, windows, strict=True):
        if not w:
            top_mm.append(-1)
            continue
        s = [float(cos.pair(spectra[int(r)], spectra[x])["score"]) for x in w]
        top_mm.append(w[int(np.argmax(s))])
    t_mm = time.perf_counter() - t0

    def hit1(top: list[int]) -> float:
        return float(np.mean([t >= 0 and ik[t] == ik[r] for t, r in zip(top, rows, strict=True)]))

    n = len(rows)
    answerable = 0  # queries with another library spectrum of their polarity in the window
    for r in rows:
        lo, hi = lib._window(float(prec_all[r]))
        same = (lib.order[lo:hi] != r) & ~lib.opposite(lo, hi, modes[r])
        answerable += int(same.any())
    return {
        "fold": fold, "queries": n, "answerable": answerable, "library_spectra": len(lib),
        "seed": seed,
        "msid": {"hit@1": hit1(top_msid), "answered": int(sum(t >= 0 for t in top_msid)),
                 "precursor_only": int(pre_only), "search_seconds": t_msid,
                 "index_seconds": t_index,
                 "window": f"max({lib.cfg.precursor_tol_da} Da, {lib.cfg.precursor_tol_ppm} ppm)"},
        "matchms_cosine_greedy": {"hit@1": hit1(top_mm),
                                  "answered": int(sum(t >= 0 for t in top_mm)),
                                  "search_seconds": t_mm, "window": f"{ppm} ppm"},
    }
