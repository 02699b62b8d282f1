"""Spectral library search: entropy similarity (Li et al. 2021) with a precursor window.

Spectra are cleaned and entropy-weighted exactly as ms-entropy does (its ``clean_spectrum`` and
``apply_weight_to_intensity``), so scores equal FlashEntropySearch's identity search. The engine
differs: the library is sorted by precursor m/z and its cleaned peaks are stored flat, so the
spectra inside a query's precursor window are one contiguous slice; matching a query against that
slice is a handful of vectorised numpy operations over only those peaks.

Open (analogue) search, needed when the true structure cannot be in the library, uses
ms-entropy's FlashEntropySearch fragment index, built on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from ms_entropy import apply_weight_to_intensity, clean_spectrum

from msid.atomic import atomic_path
from msid.parallel import imap_ordered
from msid.store import SpectrumStore


@dataclass
class LibrarySearchConfig:
    precursor_tol_da: float = 0.01
    precursor_tol_ppm: float = 10.0  # the window is max(Da, ppm): the wider wins
    fragment_tol_da: float = 0.02
    noise_threshold: float = 0.01
    min_peak_separation_da: float = 0.05  # peaks closer than this are merged (> 2 fragment tol)
    precursor_ions_removal_da: float = 1.6
    max_peaks: int = 0  # 0: keep all
    min_score: float = 0.0
    top_k: int = 10

    def __post_init__(self) -> None:
        if self.min_peak_separation_da <= 2 * self.fragment_tol_da:
            raise ValueError("min_peak_separation_da must exceed 2 x fragment_tol_da, or one "
                             "query peak could match two peaks of a library spectrum")

    @classmethod
    def from_dict(cls, d: dict | None) -> LibrarySearchConfig:
        return cls(**(d or {}))


@dataclass(frozen=True)
class LibraryHit:
    library_index: int  # row in the library store
    score: float
    n_matched: int


def clean_for_entropy(precursor_mz: float, mz: np.ndarray, intensity: np.ndarray,
                      cfg: LibrarySearchConfig) -> np.ndarray:
    """Cleaned, entropy-weighted peaks (n, 2), intensities summing to 1, halved (ms-entropy)."""
    peaks = np.column_stack([mz, intensity]).astype(np.float32)
    max_mz = precursor_mz - cfg.precursor_ions_removal_da if precursor_mz > 0 else -1
    peaks = clean_spectrum(peaks, min_mz=-1, max_mz=max_mz, noise_threshold=cfg.noise_threshold,
                           min_ms2_difference_in_da=cfg.min_peak_separation_da,
                           max_peak_num=cfg.max_peaks or None, normalize_intensity=True)
    if len(peaks) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    peaks = np.asarray(apply_weight_to_intensity(peaks), dtype=np.float32)
    peaks[:, 1] /= 2
    return peaks


def _clean_slice(args: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                             LibrarySearchConfig]) -> list[np.ndarray]:
    """:func:`clean_for_entropy` of consecutive spectra (flat peaks, offsets from 0)."""
    prec, mz, inten, offsets, cfg = args
    return [clean_for_entropy(prec[i], mz[offsets[i]:offsets[i + 1]],
                              inten[offsets[i]:offsets[i + 1]], cfg) for i in range(len(prec))]


#: libraries smaller than this are indexed in one process (starting workers would cost more)
_PARALLEL_FROM = 20_000


def polarity_code(ion_mode: object) -> int:
    """+1 positive, -1 negative, 0 unknown: library spectra of the opposite polarity to a
    query's are never its hits (an [M-H]- entry at the m/z of an [M+H]+ query is another
    molecule)."""
    mode = str(ion_mode or "").strip().lower()
    return 1 if mode.startswith("pos") else -1 if mode.startswith("neg") else 0


_INDEX_ARRAYS = ("order", "precursor", "offsets", "peak_mz", "peak_int")
#: the settings the index is built with (clean_for_entropy); search tolerances act at query time
INDEX_SETTINGS = ("noise_threshold", "min_peak_separation_da", "precursor_ions_removal_da",
                  "max_peaks")


def _xlog2x(x: np.ndarray) -> np.ndarray:
    return x * np.log2(x)


class SpectralLibrary:
    """An in-memory search index over a spectrum store."""

    def __init__(self, store: str | os.PathLike | SpectrumStore,
                 cfg: LibrarySearchConfig | None = None, cache: bool = False,
                 n_jobs: int = 1) -> None:
        """``cache``: keep the built index beside the store (``<store>.search-<key>.npz``,
        keyed by the store's content digest and the search settings) and load it next time.
        ``n_jobs``: processes that clean the spectra when the index is built."""
        self.cfg = cfg or LibrarySearchConfig()
        self.n_jobs = n_jobs
        own = not isinstance(store, SpectrumStore)
        st = SpectrumStore(store) if own else store
        try:
            self.metadata = st.metadata.reset_index(drop=True)
            sidecar = self._sidecar(st) if cache else None
            if sidecar is not None and sidecar.exists():
                with np.load(sidecar) as z:
                    arrays = {k: z[k] for k in _INDEX_ARRAYS}
            else:
                arrays = self._build(st)
                if sidecar is not None:  # atomic: two first calls may build it at once
                    with atomic_path(sidecar) as tmp, open(tmp, "wb") as fh:
                        np.savez(fh, **arrays)
        finally:
            if own:
                st.close()
        self.order, self.precursor, self.offsets = (arrays["order"], arrays["precursor"],
                                                    arrays["offsets"])
        self.peak_mz, self.peak_int = arrays["peak_mz"], arrays["peak_int"]
        sizes = np.diff(self.offsets)
        self.peak_owner = np.repeat(np.arange(len(sizes)), sizes)  # position of owning spectrum
        modes = self.metadata.get("ion_mode", pd.Series("", index=self.metadata.index))
        #: polarity (polarity_code) of each store row, and of each sorted position
        self.row_polarity = modes.map(polarity_code).to_numpy(dtype=np.int8)
        self.polarity = self.row_polarity[self.order]
        self._flash = None

    def _sidecar(self, st: SpectrumStore) -> Path:
        """Where the index of ``st`` is cached: named by what the store holds (its recorded
        content digest: a store rewritten with other spectra, however its size and mtime
        fall, never meets an old index) and the settings that build the index."""
        built_by = {k: getattr(self.cfg, k) for k in INDEX_SETTINGS}  # not tolerances, top_k
        key = hashlib.sha256(json.dumps([st.content_sha256, built_by],
                                        sort_keys=True).encode()).hexdigest()[:16]
        return st.path.with_name(f"{st.path.name}.search-{key}.npz")

    def _build(self, st: SpectrumStore) -> dict[str, np.ndarray]:
        mz, inten, offsets = st.all_peaks()
        prec = self.metadata["precursor_mz"].to_numpy(dtype=np.float64)
        prec = np.where(np.isfinite(prec), prec, 0.0)
        n_jobs = self.n_jobs if len(prec) >= _PARALLEL_FROM else 1
        step = -(-len(prec) // (4 * n_jobs)) if len(prec) else 1
        jobs = ((prec[a:a + step], mz[offsets[a]:offsets[min(a + step, len(prec))]],
                 inten[offsets[a]:offsets[min(a + step, len(prec))]],
                 offsets[a:a + step + 1] - offsets[a], self.cfg)
                for a in range(0, len(prec), step))
        cleaned = [peaks for part in imap_ordered(_clean_slice, jobs, n_jobs) for peaks in part]
        order = np.argsort(prec, kind="stable")  # position -> store row
        sizes = np.array([len(cleaned[i]) for i in order], dtype=np.int64)
        out_offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=out_offsets[1:])
        flat = (np.concatenate([cleaned[i] for i in order]) if len(order)
                else np.zeros((0, 2), np.float32))
        return {"order": order, "precursor": prec[order], "offsets": out_offsets,
                "peak_mz": flat[:, 0].astype(np.float64),
                "peak_int": flat[:, 1].astype(np.float64)}

    def __len__(self) -> int:
        return len(self.order)

    def tolerance(self, precursor_mz):
        """Precursor tolerance in Da (of one m/z or an array of them): the wider of the Da and
        the ppm setting."""
        return np.maximum(self.cfg.precursor_tol_da,
                          np.asarray(precursor_mz, dtype=np.float64) * self.cfg.precursor_tol_ppm
                          * 1e-6)

    def windows(self, precursor_mz):
        """Sorted positions [lo, hi) of the spectra in the precursor window of each m/z."""
        p = np.asarray(precursor_mz, dtype=np.float64)
        tol = self.tolerance(p)
        return (np.searchsorted(self.precursor, p - tol, side="left"),
                np.searchsorted(self.precursor, p + tol, side="right"))

    def _window(self, precursor_mz: float) -> tuple[int, int]:
        lo, hi = self.windows(precursor_mz)
        return int(lo), int(hi)

    def opposite(self, lo: int, hi: int, ion_mode: object) -> np.ndarray:
        """Mask of the positions ``lo..hi-1`` whose polarity is opposite to ``ion_mode``'s."""
        code = polarity_code(ion_mode)
        return self.polarity[lo:hi] * code < 0

    def identity_scores(self, precursor_mz: float, query: np.ndarray, ion_mode: object = ""
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(store rows, entropy similarity, matched peaks) for spectra in the precursor window
        (spectra of the opposite polarity to ``ion_mode`` score 0).

        ``query`` is the output of :func:`clean_for_entropy`.
        """
        lo, hi = self._window(precursor_mz)
        if hi <= lo or len(query) == 0:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        a, b = self.offsets[lo], self.offsets[hi]
        lib_mz = self.peak_mz[a:b]
        # |query peak - library peak| <= tol; cleaned spectra have peaks > 2 tol apart, so each
        # query peak matches at most one peak of each library spectrum.
        diff = np.abs(query[:, 0, None] - lib_mz[None, :]) <= self.cfg.fragment_tol_da
        qi, li = np.nonzero(diff)
        qa = query[qi, 1].astype(np.float64)
        lb = self.peak_int[a:b][li]
        contrib = _xlog2x(qa + lb) - _xlog2x(qa) - _xlog2x(lb)
        owner = self.peak_owner[a:b][li] - lo
        # entropy similarity lies in [0, 1]; summing the contributions can overshoot 1 by rounding
        scores = np.minimum(np.bincount(owner, weights=contrib, minlength=hi - lo), 1.0)
        matched = np.bincount(owner, minlength=hi - lo)
        other = self.opposite(lo, hi, ion_mode)
        if other.any():
            scores[other], matched[other] = 0.0, 0
        return self.order[lo:hi], scores, matched

    def search(self, precursor_mz: float, mz: np.ndarray, intensity: np.ndarray,
               top_k: int | None = None, ion_mode: object = "") -> list[LibraryHit]:
        """Top-k identity hits (precursor within tolerance), best first; ``top_k`` defaults to
        the config's, 0 gives every hit."""
        top_k = self.cfg.top_k if top_k is None else top_k
        query = clean_for_entropy(precursor_mz, mz, intensity, self.cfg)
        rows, scores, matched = self.identity_scores(precursor_mz, query, ion_mode)
        keep = np.flatnonzero(scores > max(self.cfg.min_score, 0.0))
        best = keep[np.argsort(-scores[keep], kind="stable")]
        best = best[:top_k] if top_k > 0 else best
        return [LibraryHit(int(rows[k]), float(scores[k]), int(matched[k])) for k in best]

    # -- analogue search over the whole library (FlashEntropySearch fragment index) -----------
    def _flash_index(self):
        if self._flash is None:
            from ms_entropy import FlashEntropySearch

            tol = self.cfg.min_peak_separation_da / 2 - 1e-6
            fes = FlashEntropySearch(max_ms2_tolerance_in_da=tol)
            spectra = [{"precursor_mz": float(self.precursor[p]), "row": int(self.order[p]),
                        "peaks": np.column_stack([
                            self.peak_mz[self.offsets[p]:self.offsets[p + 1]],
                            self.peak_int[self.offsets[p]:self.offsets[p + 1]] * 2,
                        ]).astype(np.float32)}
                       for p in range(len(self)) if self.offsets[p + 1] > self.offsets[p]]
            # peaks are already cleaned and weighted above; FlashEntropySearch re-weights, so
            # hand it unweighted-equivalent input by turning its weighting off.
            fes.entropy_search.intensity_weight = None
            indexed = fes.build_index(spectra, clean_spectra=False)
            self._flash = (fes, np.array([s["row"] for s in indexed], dtype=np.int64))
        return self._flash

    def analog_search(self, precursor_mz: float, mz: np.ndarray, intensity: np.ndarray,
                      top_k: int | None = None, ion_mode: object = "") -> list[LibraryHit]:
        """Top-k hits by fragment similarity alone (open search: any precursor, the query's
        polarity)."""
        top_k = top_k or self.cfg.top_k
        query = clean_for_entropy(precursor_mz, mz, intensity, self.cfg)
        if len(query) == 0:
            return []
        fes, rows = self._flash_index()
        q = query.copy()
        q[:, 1] *= 2  # FlashEntropySearch halves internally
        scores = fes.entropy_search.search(method="open", peaks=q,
                                           ms2_tolerance_in_da=self.cfg.fragment_tol_da)
        scores = np.minimum(scores, 1.0)  # float32 sums overshoot 1 for identical spectra
        code = polarity_code(ion_mode)
        if code:
            scores = np.where(self.row_polarity[rows] * code < 0, 0.0, scores)
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [LibraryHit(int(rows[k]), float(scores[k]), 0) for k in best if scores[k] > 0]
