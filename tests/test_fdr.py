"""Target-decoy FDR for library search: decoys, q-values, the estimated-vs-true curve."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from decoy_reference import reference_decoy

from conftest import RESOURCES
from msid.fdr import (
    MAX_SHARED,
    PICK,
    Competition,
    DecoyLibrary,
    compete,
    fdr_curve,
    max_shared,
)
from msid.search.library import LibrarySearchConfig, SpectralLibrary, clean_for_entropy
from msid.store import SpectrumStore


@pytest.fixture(scope="module")
def massbank_subset(tmp_path_factory):
    """The first 600 spectra of the shipped MassBank library, converted + preprocessed."""
    from msid.convert import convert_file
    from msid.preprocess import PreprocessConfig, preprocess_store

    d = tmp_path_factory.mktemp("massbank_subset")
    records, lines = 0, []
    with gzip.open(RESOURCES / "massbank_esi" / "massbank_esi_msms.mgf.gz", "rt") as f:
        for line in f:
            lines.append(line)
            records += line.startswith("END IONS")
            if records == 600:
                break
    (d / "sub.mgf").write_text("".join(lines))
    convert_file(d / "sub.mgf", d / "raw.h5", progress=False)
    preprocess_store(d / "raw.h5", d / "lib.h5", PreprocessConfig(require_structure=True),
                     progress=False)
    return d / "lib.h5"


def _reference_competition(lib: SpectralLibrary, seed: int, precursors, peaks, exclude_rows):
    """Targets by SpectralLibrary.identity_scores, decoys by the plain-Python generator scored
    one by one over all peak pairs: the competition computed the straightforward way."""
    cfg = lib.cfg
    by_mz = np.argsort(lib.peak_mz, kind="stable")
    sorted_mz, sorted_owner = lib.peak_mz[by_mz], lib.peak_owner[by_mz]
    made: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    t, d = np.zeros(len(precursors)), np.zeros(len(precursors))
    rows = np.full(len(precursors), -1)
    for i, (p, (mz, inten), ex) in enumerate(zip(precursors, peaks, exclude_rows, strict=True)):
        q = clean_for_entropy(p, mz, inten, cfg)
        r, sc, _ = lib.identity_scores(p, q)
        sc = np.where(r == ex, 0.0, sc)
        if len(sc) and sc.max() > 0:
            t[i], rows[i] = sc.max(), r[np.argmax(sc)]
        lo, hi = lib._window(p)
        for pos in range(lo, hi):
            if lib.order[pos] == ex or not len(q):
                continue
            if pos not in made:
                n = int(lib.offsets[pos + 1] - lib.offsets[pos])
                made[pos] = reference_decoy(
                    pos, seed, lib.offsets, lib.peak_mz, lib.peak_int, lib.precursor, sorted_mz,
                    sorted_owner, cfg.fragment_tol_da, cfg.min_peak_separation_da,
                    cfg.precursor_ions_removal_da, PICK, int(max_shared(np.array([n]))[0]))
            dmz, dint = made[pos]
            qi, li = np.nonzero(np.abs(q[:, 0, None] - dmz[None, :]) <= cfg.fragment_tol_da)
            a, b = q[qi, 1].astype(np.float64), dint[li]
            x = a + b
            d[i] = max(d[i], float((x * np.log2(x) - a * np.log2(a) - b * np.log2(b)).sum()))
    return Competition(t, d), rows, made


@pytest.mark.parametrize("seed", [0, 7])
def test_fast_competition_matches_reference(massbank_subset, seed):
    lib = SpectralLibrary(massbank_subset)
    rows = np.arange(0, len(lib), 3)  # leave-one-out queries, as fdr_curve
    with SpectrumStore(massbank_subset) as st:
        peaks = st.peaks_many([int(r) for r in rows])
    precursors = lib.metadata["precursor_mz"].to_numpy(dtype=np.float64)[rows]
    decoys = DecoyLibrary(lib, seed)
    comp, best_row = compete(lib, decoys, precursors, peaks, exclude_rows=rows)
    ref, ref_rows, made = _reference_competition(lib, seed, precursors, peaks, rows)
    assert len(made) > 100 and (ref.decoy > 0).sum() > 50
    for pos, (mz, inten) in made.items():  # the same decoys, peak for peak
        fast_mz, fast_int = decoys.decoy(pos)
        assert np.array_equal(fast_mz, mz) and np.array_equal(fast_int, inten)
    assert np.allclose(comp.target, ref.target, rtol=0, atol=1e-12)
    assert np.array_equal(best_row, ref_rows)
    assert np.allclose(comp.decoy, ref.decoy, rtol=0, atol=1e-12)
    for fast, slow in zip(comp.qvalue_table(), ref.qvalue_table(), strict=True):
        assert np.allclose(fast, slow, rtol=0, atol=1e-12)
    assert np.allclose(comp.qvalues(ref.target), ref.qvalues(ref.target), equal_nan=True)
    # without leaving anything out, targets equal the library search's own best hits
    full, _ = compete(lib, decoys, precursors, peaks)
    best = [max((h.score for h in lib.search(p, mz, i)), default=0.0)
            for p, (mz, i) in zip(precursors, peaks, strict=True)]
    assert np.allclose(full.target, best, rtol=0, atol=1e-12)


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
            assert shared.sum() < len(own)  # never a copy of its target
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
    # nothing competed (no query had a target or decoy): no estimate, nothing confident
    empty = Competition(target=np.zeros(0), decoy=np.zeros(0)).qvalues([0.5, 0.0])
    assert empty[0] == 1.0 and np.isnan(empty[1])


def test_fdr_curve_leave_one_out(pesticides_store):
    table, summary = fdr_curve(pesticides_store, fold="train", max_queries=0)
    assert summary["queries"] > 20
    assert summary["target_winners"] + summary["decoy_winners"] + summary["no_hit"] == (
        summary["queries"])
    assert (np.diff(table["q_value"]) <= 1e-12).all()  # q falls as the threshold rises
    assert table["true_fdr"].between(0, 1).all() and table["q_value"].between(0, 1).all()
    assert (table["n_target"].diff().dropna() <= 0).all()
    # the unambiguous hits (delta_score >= 0.1) are a subset of the accepted ones
    assert (table["n_target_clear"] <= table["n_target"]).all()
    assert table["true_fdr_clear"].between(0, 1).all()
    assert summary["target_winners_clear"] <= summary["target_winners"]


def test_delta_score_is_the_margin_over_another_structure(massbank_subset):
    """Library rows are one per structure, so a top row's delta_score is rank 1 minus rank 2,
    measured before the top-k cut; the confidence rule turns an ambiguous hit tentative."""
    import pandas as pd

    from msid.methods import LibrarySearch, rank_queries
    from msid.rankings import RankedCandidate, confident_top, top_delta_score

    library = SpectralLibrary(massbank_subset)
    with SpectrumStore(massbank_subset) as st:
        full = rank_queries(LibrarySearch(library), st, list(range(60)), progress=False)
        cut = rank_queries(LibrarySearch(library), st, list(range(60)), top_k=1,
                           progress=False)
    by_query: dict[str, list[dict]] = {}
    for r in full:
        by_query.setdefault(r["query_id"], []).append(r)
    n_two = 0
    for r in (r for r in cut if r["rank"] == 1):
        ranked = by_query[r["query_id"]]
        second = ranked[1]["score"] if len(ranked) > 1 else 0.0
        n_two += len(ranked) > 1
        assert r["delta_score"] == pytest.approx(ranked[0]["score"] - second)
        assert ranked[0]["delta_score"] == pytest.approx(r["delta_score"])
        assert all(math.isnan(x["delta_score"]) for x in ranked[1:])
    assert n_two > 0
    # a library searched for one hit a query (msid identify --top-k 1 sets the library's
    # top_k) still measures the margin over the runner-up structure
    one = SpectralLibrary(massbank_subset, LibrarySearchConfig(top_k=1))
    with SpectrumStore(massbank_subset) as st:
        cut1 = rank_queries(LibrarySearch(one), st, list(range(60)), top_k=1, progress=False)
    assert [r["delta_score"] for r in cut1] == pytest.approx([r["delta_score"] for r in cut],
                                                             nan_ok=True)
    a = RankedCandidate("CCO", "LFQSCWFLJHTTHZ-UHFFFAOYSA-N", 0.9)
    b = RankedCandidate("CCO", "LFQSCWFLJHTTHZ-UHFFFAOYSA-O", 0.88)  # same first block
    c = RankedCandidate("COC", "LCGLNKUTAGEVQW-UHFFFAOYSA-N", 0.85)
    assert top_delta_score([a, b, c]) == pytest.approx(0.05)
    assert top_delta_score([a]) == pytest.approx(0.9) and math.isnan(top_delta_score([]))
    top = pd.DataFrame({"q_value": [0.0, 0.0, 0.2], "delta_score": [0.5, 0.02, 0.5],
                        "score": [0.9, 0.9, 0.9]})
    ok, rule = confident_top(top, 0.05, min_delta=0.1)
    assert list(ok) == [True, False, False] and "0.1" in rule
    ok, rule = confident_top(top.assign(q_value=float("nan")), 0.05)
    assert not ok.any() and "no q-values" in rule  # no FDR estimate: nothing called confident
    ok, rule = confident_top(top.iloc[:0], 0.05)  # no hit at all: 0 by the q-value rule
    assert ok.empty and "q-value" in rule and "no q-values" not in rule


def test_only_top_rows_get_q_values(massbank_subset):
    """The competition holds each query's best target: its top row gets a q-value, the rows
    below it none (they were never in the competition)."""
    from msid.fdr import add_qvalues
    from msid.methods import LibrarySearch, rank_queries

    library = SpectralLibrary(massbank_subset)
    with SpectrumStore(massbank_subset) as st:
        rows = rank_queries(LibrarySearch(library), st, list(range(120)), progress=False)
        add_qvalues(rows, library, st)
    top = [r for r in rows if r["rank"] == 1 and not r["note"]]
    below = [r for r in rows if r["rank"] > 1]
    assert top and all(0 <= r["q_value"] <= 1 for r in top)
    assert below and all(math.isnan(r["q_value"]) for r in below)
