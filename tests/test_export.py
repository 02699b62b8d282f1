"""Standard outputs: mzTab-M read back by pyteomics, MGF/MSP read back by matchms."""

from __future__ import annotations

import numpy as np
import pytest
from matchms.importing import load_from_mgf, load_from_msp

from msid.cli import main
from msid.export.mztab import read_back, write_mztab_m
from msid.rankings import read_rankings
from msid.store import SpectrumStore


def test_mztab_m_reads_back(data_dir, tmp_path, pesticides_store):
    ids = tmp_path / "ids.tsv"
    q = data_dir / "gnps_pesticides_matchms_train.mgf.gz"
    assert main(["identify", str(q), "--library", str(pesticides_store), "--out",
                 str(ids)]) == 0
    out = write_mztab_m(ids, pesticides_store, tmp_path / "run.mztab", sample="pest", top_k=3)
    tables = read_back(out)  # pyteomics' mzTab reader, not ours
    assert tables["version"].startswith("2.0")
    r = read_rankings(ids)
    ranked = r[(r["rank"] > 0) & (r["rank"] <= 3)]
    sme, smf, sml = tables["SME"], tables["SMF"], tables["SML"]
    assert len(sme) == len(ranked)
    assert len(smf) == len(sml) == ranked["query_id"].nunique()
    top = ranked[ranked["rank"] == 1].set_index("query_id")
    best = sme[sme["rank"] == 1].set_index("evidence_input_id")
    assert set(best.index) == set(top.index)
    assert (best.loc[top.index, "smiles"] == top["smiles"]).all()
    # theoretical m/z of the (correct) best candidate under the query's adduct: within 10 ppm,
    # except for the GNPS records whose annotated adduct does not fit (dimers as [M-H]-, ...)
    ppm = (best["exp_mass_to_charge"] - best["theoretical_mass_to_charge"]).abs() / (
        best["theoretical_mass_to_charge"]) * 1e6
    assert (ppm.dropna() < 10).mean() > 0.8


@pytest.mark.parametrize("fmt", ["mgf", "msp"])
def test_export_cleaned_spectra(pesticides_store, tmp_path, fmt):
    out = tmp_path / f"clean.{fmt}"
    assert main(["export", str(pesticides_store), "--out", str(out)]) == 0
    loaded = list((load_from_mgf if fmt == "mgf" else load_from_msp)(str(out)))
    with SpectrumStore(pesticides_store) as st:
        assert len(loaded) == len(st)
        for k in (0, len(st) - 1):
            mz, inten = st.peaks(k)
            assert np.allclose(loaded[k].peaks.mz, mz)
            assert np.allclose(loaded[k].peaks.intensities / loaded[k].peaks.intensities.max(),
                               inten / inten.max())
            assert abs(loaded[k].get("precursor_mz") - st.metadata["precursor_mz"].iat[k]) < 1e-4


def test_mztab_summary_prefers_spectral_matches_and_never_the_random_baseline():
    """The SML (summary) answer of a spectrum: an unrejected library spectral match first, a
    learned method's candidate next, a rejected or precursor-only library match after it, the
    random baseline last; reliability says which kind of evidence it is."""
    import pandas as pd

    from msid.export.mztab import _reliability, _summary_order
    from msid.rankings import PRECURSOR_ONLY

    def rows(*specs):
        return pd.DataFrame([{"method": m, "rank": k, "library_id": lib, "note": note,
                              "q_value": q, "smiles": "C"} for m, k, lib, note, q in specs])

    nan = float("nan")
    g = rows(("random", 1, "", "", nan), ("ranker", 1, "", "", nan),
             ("library", 1, "MSBNK-1", PRECURSOR_ONLY, nan), ("ranker", 2, "", "", nan))
    order = _summary_order(g)
    assert list(order["method"]) == ["ranker", "ranker", "library", "random"]
    assert list(order["rank"][:2]) == [1, 2]
    assert _reliability(order.iloc[0]) == 3 and _reliability(order.iloc[2]) == 4
    g = rows(("ranker", 1, "", "", nan), ("library", 1, "MSBNK-2", "", 0.01),
             ("library", 2, "MSBNK-3", "", nan))
    best = _summary_order(g).iloc[0]
    assert best["library_id"] == "MSBNK-2" and _reliability(best) == 2
    rejected = rows(("library", 1, "MSBNK-2", "", 1.0), ("ranker", 1, "", "", nan))
    assert _summary_order(rejected).iloc[0]["method"] == "ranker"
