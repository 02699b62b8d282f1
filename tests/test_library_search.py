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
            best = np.argsort(-ref)[:len(hits)]
            np.testing.assert_allclose([h.score for h in hits], ref[best], atol=2e-4)
            assert rows[best[0]] == i


def test_analog_search_finds_related_spectra(library, pesticides_store):
    with SpectrumStore(pesticides_store) as st:
        prec = st.metadata["precursor_mz"].to_numpy()
        hits = library.analog_search(float(prec[0]), *st.peaks(0), top_k=10)
    assert hits[0].library_index == 0 and hits[0].score == pytest.approx(1.0, abs=1e-3)
    # open search is not limited to the precursor window
    assert any(abs(prec[h.library_index] - prec[0]) > 1.0 for h in hits[1:])


def test_tolerance_guard():
    with pytest.raises(ValueError, match="min_peak_separation_da"):
        LibrarySearchConfig(fragment_tol_da=0.03)
