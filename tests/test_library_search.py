import numpy as np
import pytest
from ms_entropy import FlashEntropySearch, calculate_entropy_similarity, clean_spectrum

from msid.search.library import LibrarySearchConfig, SpectralLibrary, clean_for_entropy
from msid.store import SpectrumStore


@pytest.fixture(scope="module")
def library(pesticides_store):
    return SpectralLibrary(pesticides_store)


def test_scores_equal_ms_entropy(library, pesticides_store):
    with SpectrumStore(pesticides_store) as st:
        md = st.metadata
        for i in range(0, 64, 7):
            p = float(md["precursor_mz"][i])
            q = st.peaks(i)
            query = clean_for_entropy(p, *q, library.cfg)
            rows, scores, _ = library.identity_scores(p, query)
            assert len(rows) >= 1
            for r, s in zip(rows, scores, strict=True):
                lp = float(md["precursor_mz"][int(r)])
                a = clean_spectrum(np.column_stack(q).astype(np.float32), max_mz=p - 1.6)
                b = clean_spectrum(np.column_stack(st.peaks(int(r))).astype(np.float32),
                                   max_mz=lp - 1.6)
                ref = calculate_entropy_similarity(a, b, ms2_tolerance_in_da=0.02,
                                                   clean_spectra=False)
                assert s == pytest.approx(ref, abs=2e-4)


def test_top_hits_match_flash_entropy_search(library, pesticides_store):
    cfg = LibrarySearchConfig()
    with SpectrumStore(pesticides_store) as st:
        md = st.metadata
        spectra = [{"precursor_mz": float(md["precursor_mz"][i]), "row": i,
                    "peaks": np.column_stack(st.peaks(i)).astype(np.float32)}
                   for i in range(len(st))]
        fes = FlashEntropySearch()
        rows = np.array([s["row"] for s in fes.build_index(spectra)])
        for i in range(len(st)):
            p = float(md["precursor_mz"][i])
            hits = library.search(p, *st.peaks(i), top_k=5)
            pk = fes.clean_spectrum_for_search(p, np.column_stack(st.peaks(i)).astype(np.float32))
            ref = fes.identity_search(p, pk, cfg.precursor_tol_da, cfg.fragment_tol_da)
            assert hits[0].library_index == i  # every spectrum finds itself first
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert all(0 < h.score <= 1.0 for h in hits)  # never above 1 by rounding
            best = np.argsort(-ref)[:len(hits)]
            np.testing.assert_allclose([h.score for h in hits], ref[best], atol=2e-4)
            assert rows[best[0]] == i


def test_analog_search_finds_related_spectra(library, pesticides_store):
    with SpectrumStore(pesticides_store) as st:
        prec = st.metadata["precursor_mz"].to_numpy()
        hits = library.analog_search(float(prec[0]), *st.peaks(0), top_k=10)
    assert hits[0].library_index == 0 and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert all(0 < h.score <= 1.0 for h in hits)  # a similarity, never above 1
    # open search is not limited to the precursor window
    assert any(abs(prec[h.library_index] - prec[0]) > 1.0 for h in hits[1:])


def test_tolerance_guard():
    with pytest.raises(ValueError, match="min_peak_separation_da"):
        LibrarySearchConfig(fragment_tol_da=0.03)


def test_hits_keep_to_the_query_polarity(library, pesticides_store):
    """A library spectrum of the other ion mode is never a hit, in identity search, the
    precursor-only fallback, open search and the target-decoy competition alike."""
    from msid.fdr import DecoyLibrary, compete
    from msid.methods import LibrarySearch, Query, iter_queries

    with SpectrumStore(pesticides_store) as st:
        queries = list(iter_queries(st, list(range(len(st)))))
    modes = library.row_polarity
    assert (modes != 0).all()  # the fixture's spectra all state their ion mode
    method = LibrarySearch(library)
    flipped_any = 0
    for q in queries[:40]:
        other = "negative" if q.ion_mode == "positive" else "positive"
        code = 1 if other == "positive" else -1
        hits = library.search(q.precursor_mz, q.mz, q.intensity, top_k=0, ion_mode=other)
        assert all(modes[h.library_index] == code for h in hits)
        open_hits = library.analog_search(q.precursor_mz, q.mz, q.intensity, top_k=5,
                                          ion_mode=other)
        assert all(modes[h.library_index] == code for h in open_hits)
        flipped = Query(q.query_id, q.precursor_mz, q.adduct, other, q.charge, q.mz[:0],
                        q.intensity[:0])  # no fragments: the precursor-only fallback
        rows = [int(r) for r, _ in method._precursor_matches(flipped)]
        assert all(modes[r] == code for r in rows)
        flipped_any += not hits  # its own spectrum (the other polarity) no longer answers
    assert flipped_any > 20
    precursors = [q.precursor_mz for q in queries]
    peaks = [(q.mz, q.intensity) for q in queries]
    same, _ = compete(library, DecoyLibrary(library, 0), precursors, peaks,
                      ion_modes=[q.ion_mode for q in queries])
    other, _ = compete(library, DecoyLibrary(library, 0), precursors, peaks,
                       ion_modes=["negative" if q.ion_mode == "positive" else "positive"
                                  for q in queries])
    assert (same.target > 0.9).mean() > 0.9  # each finds itself
    assert (other.target < same.target).mean() > 0.5


def test_a_query_whose_window_holds_only_the_other_ion_mode_says_so(library, pesticides_store):
    from msid.methods import LibrarySearch, Query, iter_queries

    with SpectrumStore(pesticides_store) as st:
        queries = list(iter_queries(st, list(range(len(st)))))
    method = LibrarySearch(library)
    checked = 0
    for q in queries:
        other = "negative" if q.ion_mode == "positive" else "positive"
        lo, hi = library._window(q.precursor_mz)
        if not library.opposite(lo, hi, other).all():
            continue  # the window also holds spectra of the other mode
        flipped = Query(q.query_id, q.precursor_mz, q.adduct, other, q.charge, q.mz,
                        q.intensity)
        assert method.rank(flipped, None) == []
        assert "other ion mode" in method.why_empty(flipped, None)
        assert method.why_empty(q, None) == "no library entry within precursor tolerance"
        checked += 1
    assert checked > 10


def test_a_candidate_of_the_library_structure_scores_as_it_however_written(library,
                                                                         pesticides_store):
    """Hydramethylnon as the shipped pool writes it (another tautomer: Morgan Tanimoto 0.57 to
    the library's SMILES, same InChIKey first block) scores as its library identity hit and
    names that entry; other candidates keep the similarity-weighted score."""
    from msid.chem.structures import parse_structure
    from msid.methods import LibrarySearch, iter_queries

    pool_form = "CC1(C)CNC(=NN=C(/C=C/c2ccc(C(F)(F)F)cc2)/C=C/c2ccc(C(F)(F)F)cc2)NC1"
    with SpectrumStore(pesticides_store) as st:
        md = st.metadata
        rows = [i for i, k in enumerate(md["inchikey"]) if str(k).startswith("IQVNEKKDSLOHHK")]
        assert rows
        query = next(iter_queries(st, rows[:1]))
        others = [parse_structure(s) for s in dict.fromkeys(md["smiles"]) if s][:10]
    method = LibrarySearch(library)
    identity = method.rank(query, None)[0]
    assert identity.inchikey.startswith("IQVNEKKDSLOHHK")
    candidates = [s for s in others if s.inchikey14 != "IQVNEKKDSLOHHK"]
    candidates.append(parse_structure(pool_form))
    ranked = method.rank(query, candidates)
    assert ranked[0].inchikey.startswith("IQVNEKKDSLOHHK")
    assert ranked[0].score == pytest.approx(identity.score)
    assert ranked[0].library_id == identity.library_id and ranked[0].name == identity.name
    assert all(not r.library_id for r in ranked[1:])


def test_cached_index_follows_the_store_content_not_its_mtime(pesticides_store, tmp_path):
    """The index cached beside a store is named by the store's content digest: touching the
    store reuses it; the same file rewritten with 40 of its 64 spectra, given back its old
    mtime, gets an index of its own, which finds none of the spectra it lost."""
    import os
    import shutil

    from msid.store import subset_store

    path = tmp_path / "lib.h5"
    shutil.copy(pesticides_store, path)
    SpectralLibrary(path, cache=True)
    (sidecar,) = tmp_path.glob("lib.h5.search-*.npz")
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(1, 1))  # another mtime, same content: the same index
    SpectralLibrary(path, cache=True)
    assert list(tmp_path.glob("lib.h5.search-*.npz")) == [sidecar]
    subset_store(pesticides_store, tmp_path / "fewer.h5", range(40))
    os.replace(tmp_path / "fewer.h5", path)
    os.utime(path, ns=(stamp, stamp))
    fewer = SpectralLibrary(path, cache=True)
    assert len(list(tmp_path.glob("lib.h5.search-*.npz"))) == 2
    assert len(fewer.precursor) == 40
    with SpectrumStore(pesticides_store) as st:
        p = float(st.metadata["precursor_mz"][50])
        hits = fewer.search(p, *st.peaks(50), top_k=5)
    assert all(h.library_index < 40 for h in hits)
