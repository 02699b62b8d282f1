"""Target-decoy FDR for library search: decoys, q-values, the estimated-vs-true curve."""

from __future__ import annotations

import math

import numpy as np

from msid.fdr import MAX_SHARED, Competition, DecoyLibrary, fdr_curve
from msid.search.library import SpectralLibrary


def test_spectrum_based_decoys_keep_mass_and_size_not_peaks(pesticides_store):
    lib = SpectralLibrary(pesticides_store)
    decoys = DecoyLibrary(lib, seed=0)
    for pos in range(len(lib)):
        own = lib.peak_mz[lib.offsets[pos]:lib.offsets[pos + 1]]
        mz, inten = decoys.decoy(pos)
        assert len(mz) <= len(own)
        assert (mz < lib.precursor[pos] - lib.cfg.precursor_ions_removal_da).all()
        if len(own) and len(mz):  # at most MAX_SHARED of the decoy's peaks are the target's
            shared = np.any(np.abs(own[:, None] - mz[None, :]) <= lib.cfg.fragment_tol_da, 0)
            assert shared.sum() <= math.ceil(MAX_SHARED * len(own))
        if len(mz):
            assert abs(inten.sum() - 0.5) < 1e-9 and (np.diff(mz) > 0).all()
    again = DecoyLibrary(lib, seed=0).decoy(5)
    assert np.array_equal(again[0], decoys.decoy(5)[0])  # seeded per library spectrum


def test_competition_qvalues():
    # five queries: targets 0.9, 0.8, 0.5 (decoy 0.6 wins there), 0.3, none
    comp = Competition(target=np.array([0.9, 0.8, 0.5, 0.3, 0.0]),
                       decoy=np.array([0.1, 0.2, 0.6, 0.0, 0.0]))
    th, fdr, q = comp.qvalue_table()
    assert list(th) == [0.3, 0.6, 0.8, 0.9]
    assert np.allclose(fdr, [1 / 3, 1 / 2, 0, 0])
    assert np.allclose(q, [1 / 3, 1 / 3, 0, 0])
    qs = comp.qvalues([0.95, 0.85, 0.5, 0.3, 0.1, 0.0])
    assert np.allclose(qs[:5], [0, 0, 1 / 3, 1 / 3, 1.0]) and np.isnan(qs[5])


def test_fdr_curve_leave_one_out(pesticides_store):
    table, summary = fdr_curve(pesticides_store, fold="train", max_queries=0)
    assert summary["queries"] > 20
    assert summary["target_winners"] + summary["decoy_winners"] + summary["no_hit"] == (
        summary["queries"])
    assert (np.diff(table["q_value"]) >= -1e-12).all()  # q rises with the threshold
    assert table["true_fdr"].between(0, 1).all() and table["q_value"].between(0, 1).all()
    assert (table["n_target"].diff().dropna() <= 0).all()
