"""EI library search: nominal-mass library spectra scored against a query, four ways.

- ``cosine``: cosine of the intensity vectors over integer m/z.
- ``weighted-cosine``: the same on NIST-style weighted peaks, (m/z)^3 x intensity^0.6.
- ``entropy``: entropy similarity (Li et al. 2021); peaks cleaned and entropy-weighted by
  ms-entropy (``msid.search.library.clean_for_entropy``), scored over all library peaks at
  once (nominal m/z: a peak matches the library peak of the same integer m/z).
- ``embedding``: cosine of language-model embeddings (:mod:`msid.ei.embedding`) through the
  library's vector index (:mod:`msid.ei.index`); the ``ei-embedding-wcos`` method re-scores the
  index's shortlist with the weighted cosine (:meth:`EILibrary.weighted_cosine_at`).

An :class:`EILibrary` holds a nominal-mass library in memory: the metadata (id, name, SMILES,
InChIKey) and each spectrum's integer peaks. It is read from an msid store or, for MSP/MGF,
from the EI store ``msid.ei.spectra.ei_store`` builds and caches for that file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from msid.ei.nominal import stein_scott_weight
from msid.io.errors import InputFileError
from msid.search.library import LibrarySearchConfig, clean_for_entropy
from msid.store import SpectrumStore

MAX_MZ = 2000  # nominal m/z above this is dropped from the baselines' vectors
ENTROPY_CFG = LibrarySearchConfig(fragment_tol_da=0.45, min_peak_separation_da=0.95,
                                  noise_threshold=0.0)


def nominal_peaks(mz: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer m/z (int64) and intensity (float64) of a spectrum, binned as library records
    are (:func:`msid.ei.nominal.nominal_record`: summed, or for a profile-like scan the
    maximum per bin above the noise floor), so that a query and the same spectrum in the
    library score alike."""
    from msid.ei.nominal import nominal_record

    nmz, nint, _ = nominal_record(np.asarray(mz, dtype=np.float64),
                                  np.asarray(intensity, dtype=np.float64))
    nmz = np.asarray(nmz, dtype=np.int64)
    nint = np.asarray(nint, dtype=np.float64)
    keep = (nmz > 0) & (nmz < MAX_MZ) & (nint > 0)
    return nmz[keep], nint[keep]


def library_store_path(path: str | os.PathLike) -> Path:
    """An msid store for an EI library: ``path`` if it is one, else its cached EI store
    (records without a structure kept: :data:`msid.ei.spectra.EI_SEARCH_LIBRARY_PREPROCESS`)."""
    path = Path(path)
    if path.suffix == ".h5":
        return path
    from msid.ei.spectra import EI_SEARCH_LIBRARY_PREPROCESS, ei_store

    return Path(ei_store(path, preprocess=EI_SEARCH_LIBRARY_PREPROCESS))


def _weighted(mz: np.ndarray, inten: np.ndarray, kind: str) -> np.ndarray:
    if kind == "weighted-cosine":
        return stein_scott_weight(mz, inten)
    return inten


def _unit_rows(m: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ m)


def spectrum_matrix(peaks: list[tuple[np.ndarray, np.ndarray]], kind: str
                    ) -> sparse.csr_matrix:
    """Nominal spectra (:func:`nominal_peaks`) as unit rows over integer m/z, intensities
    weighted for ``kind`` (``cosine`` or ``weighted-cosine``): row dot products are cosines."""
    rows = np.repeat(np.arange(len(peaks)), [len(p[0]) for p in peaks])
    cols = np.concatenate([p[0] for p in peaks]) if peaks else np.zeros(0, np.int64)
    vals = (np.concatenate([_weighted(m, i, kind) for m, i in peaks]) if peaks
            else np.zeros(0))
    return _unit_rows(sparse.csr_matrix((vals, (rows, cols)), shape=(len(peaks), MAX_MZ)))


def query_vector(mz: np.ndarray, inten: np.ndarray, kind: str) -> np.ndarray:
    """One query as a dense unit vector over integer m/z (all zeros without peaks)."""
    nmz, nint = nominal_peaks(mz, inten)
    q = np.zeros(MAX_MZ)
    np.add.at(q, nmz, _weighted(nmz, nint, kind))
    norm = np.linalg.norm(q)
    return q / norm if norm > 0 else q


@dataclass
class Hit:
    row: int
    score: float


class EILibrary:
    """A nominal-mass EI library held in memory (spectra by row of its store)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.source = Path(path)
        self.store_path = library_store_path(path)
        with SpectrumStore(self.store_path) as st:
            self.metadata: pd.DataFrame = st.metadata.reset_index(drop=True)
            mz, inten, off = st.all_peaks()
        self.peaks = [nominal_peaks(mz[off[i]:off[i + 1]], inten[off[i]:off[i + 1]])
                      for i in range(len(off) - 1)]

    def __len__(self) -> int:
        return len(self.peaks)

    # -- cosine baselines ----------------------------------------------------------------
    @cached_property
    def cosine_matrix(self) -> sparse.csr_matrix:
        return spectrum_matrix(self.peaks, "cosine")

    @cached_property
    def weighted_matrix(self) -> sparse.csr_matrix:
        return spectrum_matrix(self.peaks, "weighted-cosine")

    def cosine_scores(self, mz: np.ndarray, inten: np.ndarray, kind: str) -> np.ndarray:
        lib = self.weighted_matrix if kind == "weighted-cosine" else self.cosine_matrix
        return lib @ query_vector(mz, inten, kind)

    # -- entropy similarity --------------------------------------------------------------
    @cached_property
    def _entropy_flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cleaned = [clean_for_entropy(0.0, m.astype(np.float64), i, ENTROPY_CFG)
                   for m, i in self.peaks]
        owner = np.repeat(np.arange(len(cleaned)), [len(c) for c in cleaned])
        flat = np.concatenate(cleaned) if cleaned else np.zeros((0, 2), np.float32)
        return np.rint(flat[:, 0]).astype(np.int64), flat[:, 1].astype(np.float64), owner

    def entropy_scores(self, mz: np.ndarray, inten: np.ndarray) -> np.ndarray:
        nmz, nint = nominal_peaks(mz, inten)
        q = clean_for_entropy(0.0, nmz.astype(np.float64), nint, ENTROPY_CFG)
        dense = np.zeros(MAX_MZ + 1)
        dense[np.rint(q[:, 0]).astype(np.int64)] = q[:, 1]
        lib_mz, lib_int, owner = self._entropy_flat
        a = dense[np.minimum(lib_mz, MAX_MZ)]
        hit = a > 0
        a, b = a[hit], lib_int[hit]
        contrib = _xlog2x(a + b) - _xlog2x(a) - _xlog2x(b)
        # entropy similarity lies in [0, 1]; the sum can overshoot 1 by rounding
        return np.minimum(np.bincount(owner[hit], weights=contrib, minlength=len(self)), 1.0)

    def weighted_cosine_at(self, queries: list[tuple[np.ndarray, np.ndarray]],
                           rows: np.ndarray) -> np.ndarray:
        """Weighted cosine of each query with its own library rows (``rows[i]``: the rows
        scored for query ``i``; -1 scores 0), the same numbers :meth:`cosine_scores` gives,
        computed over the flat peaks of just those rows."""
        rows = np.asarray(rows, dtype=np.int64)
        q = np.array([query_vector(mz, inten, "weighted-cosine") for mz, inten in queries])
        flat = rows.ravel()
        sub = self.weighted_matrix[np.maximum(flat, 0)]
        owner = np.repeat(np.arange(len(flat)), np.diff(sub.indptr))
        query_of = np.repeat(np.arange(len(queries)), rows.shape[1])[owner]
        out = np.bincount(owner, weights=sub.data * q[query_of, sub.indices],
                          minlength=len(flat))
        out[flat < 0] = 0.0
        return out.reshape(rows.shape)

    def scores(self, mz: np.ndarray, inten: np.ndarray, kind: str) -> np.ndarray:
        if kind == "entropy":
            return self.entropy_scores(mz, inten)
        return self.cosine_scores(mz, inten, kind)

    def top_hits(self, scores: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best-scoring rows, best first; a row of score 0 (no peak in common with
        the query) is no hit, so a query that shares no peak with the library gets none."""
        k = min(k, len(scores))
        if k <= 0:
            return []
        part = np.argpartition(-scores, k - 1)[:k]
        best = part[np.lexsort((part, -scores[part]))]
        # similarities are at most 1: float32 rounding can put a self-match a hair above
        return [Hit(int(r), min(float(scores[r]), 1.0)) for r in best if scores[r] > 0]


def _xlog2x(x: np.ndarray) -> np.ndarray:
    return x * np.log2(x)


def load_ei_queries(path: str | os.PathLike, workdir: str | os.PathLike,
                    warn: Callable[[str], None] | None = None) -> SpectrumStore:
    """EI query spectra as a store: an ``.h5`` store as is; MSP/MGF/mzML converted, binned to
    nominal mass and cleaned exactly as library records are (:func:`msid.ei.spectra.ei_store`
    with the query settings: no precursor needed, an annotation kept as written), so that a
    query and the same spectrum in the library score alike. ``warn`` hears of repeated
    record ids."""
    from msid.ei.spectra import EI_PREPROCESS, ei_store
    from msid.store import SpectrumStore

    path = Path(path)
    if path.suffix == ".h5":
        return SpectrumStore(path)
    return SpectrumStore(ei_store(path, Path(workdir) / "queries.h5", preprocess=EI_PREPROCESS,
                                  n_jobs=2, warn=warn))


def identify_ei_run(queries: str | os.PathLike, library: str | os.PathLike,
                    spectra_out: str | os.PathLike, identifications_out: str | os.PathLike, *,
                    matches_out: str | os.PathLike | None = None,
                    method: str = "ei-embedding", model: str | os.PathLike | None = None,
                    top_k: int = 10, index: dict | None = None,
                    unreadable_ok: bool = False) -> int:
    """Identify the EI spectra of a run file against ``library``: writes the run's EI store
    (quarantine included), its Rankings table and (``matches_out``) a store of the library
    spectra that are some query's top hit, for the report's mirror plots. Returns the number
    of spectra. ``unreadable_ok`` (the DAG): a run file that cannot be read at all gives an
    empty store whose quarantine says why, and empty tables, instead of an error."""
    import shutil

    from msid.atomic import atomic_path
    from msid.identify import temp_workdir
    from msid.methods import MethodResources, make_method, rank_queries
    from msid.rankings import quarantined_rows, write_rankings

    with temp_workdir() as work:
        try:
            store = load_ei_queries(queries, work)
        except InputFileError as e:
            if not unreadable_ok:
                raise
            from msid.convert import unreadable_run_store
            from msid.store import SpectrumStore

            print(f"msid: error: {e}; the run goes on with no spectra")
            unreadable_run_store(queries, Path(work) / "unreadable.h5", e)
            store = SpectrumStore(Path(work) / "unreadable.h5")
        m = make_method(method, MethodResources(
            model_path=str(model) if model else None,
            options={"ei_library": str(library), "index": index or {}, "hits": max(top_k, 50)}))
        rows = rank_queries(m, store, top_k=top_k, progress=False)
        rows += quarantined_rows(store.quarantine, [method],
                                 stored=store.metadata["id"].astype(str))
        n = len(store)
        from msid.ei.spectrum_kind import ms2_like_warning

        warning = ms2_like_warning(store.metadata)
        if warning:
            print(f"msid: warning: {queries}: {warning}")
        src = store.path
        store.close()
        write_rankings(rows, identifications_out)
        if matches_out is not None:
            write_matches(library, rows, matches_out)
        with atomic_path(spectra_out) as tmp:
            shutil.copyfile(src, tmp)
    return n


def write_matches(library: str | os.PathLike, rows: list[dict], out: str | os.PathLike) -> int:
    """The library spectra that are a query's top hit, as a small store (id, name, structure)."""
    from msid.ei.methods import get_library
    from msid.store import SpectrumRecord, SpectrumStoreWriter

    lib = get_library(library)
    wanted = {str(r["library_id"]) for r in rows if r["rank"] == 1 and r["library_id"]}
    md = lib.metadata
    keep = [i for i, x in enumerate(md["id"].astype(str)) if x in wanted]
    recs = md.to_dict("records")
    with SpectrumStoreWriter(out, provenance={"stage": "ei-matches", "library": str(library)}
                             ) as w:
        for i in keep:
            mz, inten = lib.peaks[i]
            w.add(SpectrumRecord(mz.astype(np.float64), inten.astype(np.float32), recs[i]))
    return len(keep)
