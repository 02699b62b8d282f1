"""Standard outputs: mzTab-M read back by pyteomics, MGF/MSP read back by matchms."""

from __future__ import annotations

import math
from pathlib import Path

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
    # an MGF spectrum is referenced by its 0-based position in the file (mzTab's index=N)
    import gzip

    from pyteomics import mgf

    with gzip.open(q, "rt") as fh, mgf.read(fh, use_index=False) as reader:
        position = {str(r["params"]["spectrumid"]).upper(): k for k, r in enumerate(reader)}
    assert (best["spectra_ref"] == [f"ms_run[1]:index={position[str(i).upper()]}"
                                     for i in best.index]).all()


def test_identify_writes_mztab_m_when_asked(data_dir, tmp_path, pesticides_store):
    """msid identify --out X.mztab: the same identifications as the TSV, as mzTab-M."""
    q = data_dir / "gnps_pesticides_matchms_train.mgf.gz"
    for out in ("ids.tsv", "ids.mztab"):
        assert main(["identify", str(q), "--library", str(pesticides_store), "--top-k", "3",
                     "--out", str(tmp_path / out)]) == 0
    tables = read_back(tmp_path / "ids.mztab")
    r = read_rankings(tmp_path / "ids.tsv")
    ranked = r[r["rank"] > 0]
    assert len(tables["SME"]) == len(ranked)
    assert sorted(tables["SME"]["smiles"]) == sorted(ranked["smiles"])
    text = (tmp_path / "ids.mztab").read_text()
    assert f"MTD\tms_run[1]-location\t{q.resolve().as_uri()}\n" in text
    # the library searched, by its file and content digest (provenance a reader can check: the
    # store's content, the same for every build of the same library)
    from msid.store import SpectrumStore

    with SpectrumStore(pesticides_store) as st:
        digest = st.content_sha256
    assert f"MTD\tdatabase[1]-version\tsha256:{digest[:16]}\n" in text
    assert f"MTD\tdatabase[1]-uri\t{Path(pesticides_store).resolve().as_uri()}\n" in text


def test_library_hits_take_the_matched_spectrums_adduct(tmp_path):
    """Queries that state no ion, matched to MassBank [M+Na]+ / [M+NH4]+ / [M+HCOO]- spectra:
    the identification table and the mzTab-M give each hit the library spectrum's adduct, and
    the theoretical m/z of that ion (not of an assumed [M+H]+ / [M-H]-, tens of thousands of
    ppm off)."""
    import gzip
    import re

    from msid.rankings import ADDUCT_OF_MATCH
    from msid.resources import resource

    wanted = {"[M+Na]+": 3, "[M+NH4]+": 3, "[M+HCOO]-": 3, "[M+H]+": 3}
    records = []
    with gzip.open(resource("massbank_esi", "massbank_esi_msms.mgf.gz"), "rt") as fh:
        for block in fh.read().split("END IONS\n"):
            m = re.search(r"(?m)^ADDUCT=(.*)$", block)
            if m and wanted.get(m.group(1), 0) > 0 and "SMILES=" in block:
                wanted[m.group(1)] -= 1
                records.append(block + "END IONS\n")
            if not any(wanted.values()):
                break
    (tmp_path / "lib.mgf").write_text("".join(records))
    # the same spectra as queries, without their ion or structure
    (tmp_path / "q.mgf").write_text(re.sub(r"(?m)^(ADDUCT|SMILES|INCHI|INCHIKEY|FORMULA)=.*\n",
                                           "", "".join(records)))
    args = ["identify", str(tmp_path / "q.mgf"), "--library", str(tmp_path / "lib.mgf"),
            "--top-k", "1"]
    assert main([*args, "--out", str(tmp_path / "ids.tsv")]) == 0
    assert main([*args, "--out", str(tmp_path / "ids.mztab")]) == 0
    r = read_rankings(tmp_path / "ids.tsv").query("rank == 1").set_index("query_id")
    truth = {re.search(r"(?m)^SPECTRUM_ID=(.*)$", b).group(1):
             re.search(r"(?m)^ADDUCT=(.*)$", b).group(1) for b in records}
    assert set(r.index) == set(truth)
    assert (r["library_id"] == r.index).all()  # each finds its own spectrum
    assert (r["adduct"] == [truth[q] for q in r.index]).all()
    assert r["note"].str.contains(ADDUCT_OF_MATCH).all()
    sme = read_back(tmp_path / "ids.mztab")["SME"].set_index("evidence_input_id")
    assert (sme.loc[r.index, "adduct_ion"] == [truth[q] for q in r.index]).all()
    ppm = ((sme["exp_mass_to_charge"] - sme["theoretical_mass_to_charge"])
           / sme["theoretical_mass_to_charge"] * 1e6)
    assert (ppm.abs() < 20).all(), ppm.to_dict()
    # the table's and mzTab's ppm error are the one these two m/z values give (observed
    # against the structure's ion, not against the library spectrum's stated precursor)
    # (mzTab's m/z values are written to 6 decimals)
    np.testing.assert_allclose(sme["opt_global_ppm_error"].astype(float), ppm, atol=0.01)
    np.testing.assert_allclose(r["ppm_error"], ppm.loc[r.index], atol=0.01)


def test_a_precursor_only_hit_of_a_query_without_an_ion_stays_one(tmp_path):
    """A query that states no ion and has no fragment peak below its precursor: its library
    match by precursor mass alone, noted with the library spectrum's adduct too, is still a
    precursor-only match: no q-value, MSI level 4 in mzTab-M."""
    import gzip
    import re

    from msid.rankings import PRECURSOR_ONLY
    from msid.resources import resource

    with gzip.open(resource("massbank_esi", "massbank_esi_msms.mgf.gz"), "rt") as fh:
        blocks = fh.read().split("END IONS\n")[:30]
    (tmp_path / "lib.mgf").write_text("END IONS\n".join(blocks) + "END IONS\n")
    head = re.sub(r"(?m)^(ADDUCT|SMILES|INCHI|INCHIKEY|FORMULA)=.*\n", "",
                  blocks[0].split("\n1")[0].split("\n2")[0])  # the header, no peak lines
    precursor = float(re.search(r"(?m)^PEPMASS=(\S+)", head).group(1))
    head = "\n".join(ln for ln in head.splitlines() if not re.match(r"^\d", ln))
    (tmp_path / "q.mgf").write_text(f"{head}\n{precursor + 5:.4f} 100\nEND IONS\n")
    args = ["identify", str(tmp_path / "q.mgf"), "--library", str(tmp_path / "lib.mgf")]
    assert main([*args, "--out", str(tmp_path / "ids.tsv")]) == 0
    assert main([*args, "--out", str(tmp_path / "ids.mztab")]) == 0
    top = read_rankings(tmp_path / "ids.tsv").query("rank == 1").iloc[0]
    assert PRECURSOR_ONLY in top["note"] and top["adduct"] == "[M+H]+"
    assert math.isnan(top["q_value"])  # never in the target-decoy competition
    sml = read_back(tmp_path / "ids.mztab")["SML"]
    assert str(sml["reliability"].iat[0]) == "4"


def test_a_library_without_structures_names_its_records(data_dir, tmp_path, capsys):
    """A library store whose records carry no structure: identify says so, its matches keep
    their library record in the mzTab-M, and the compound table never lumps them together."""
    import re

    import pandas as pd

    text = (data_dir / "bad" / "pesticides_first3.mgf").read_text()
    (tmp_path / "lib.mgf").write_text(re.sub(r"(?m)^(SMILES|INCHI|INCHIAUX)=.*\n", "", text))
    assert main(["convert", str(tmp_path / "lib.mgf"), "--out", str(tmp_path / "lib.h5")]) == 0
    q = data_dir / "bad" / "pesticides_first3.mgf"
    args = ["identify", str(q), "--library", str(tmp_path / "lib.h5"), "--top-k", "2"]
    assert main([*args, "--out", str(tmp_path / "ids.tsv"),
                 "--compounds", str(tmp_path / "compounds.tsv")]) == 0
    err = capsys.readouterr().err
    assert "3 of 3 record(s) have no structure" in err
    assert "3 compounds (" in err and "confident: q-value" in err  # the rule that judged
    ranked = read_rankings(tmp_path / "ids.tsv").query("rank == 1")
    assert len(ranked) == 3 and (ranked["smiles"] == "").all()
    compounds = pd.read_csv(tmp_path / "compounds.tsv", sep="\t")
    assert len(compounds) == 3 and set(compounds["spectra"]) == {1}
    assert main([*args, "--out", str(tmp_path / "ids.mztab")]) == 0
    sml = read_back(tmp_path / "ids.mztab")["SML"]
    assert sorted(sml["database_identifier"]) == sorted(ranked["library_id"])


@pytest.mark.parametrize("fmt", ["mgf", "msp"])
def test_export_to_standard_output_writes_clean_peak_lines(pesticides_store, tmp_path, capsys,
                                                           fmt):
    """``--out -`` writes the export to stdout (MGF unless --format msp), messages to stderr;
    peak lines carry no trailing blank and no float32-to-float64 noise."""
    import re

    assert main(["export", str(pesticides_store), "--out", "-", "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert "spectra -> -" in err and ("BEGIN IONS" in out if fmt == "mgf" else "NAME: " in out)
    peak_lines = [ln for ln in out.splitlines() if re.match(r"^\d+\.\d+\s", ln)]
    assert peak_lines and not [ln for ln in peak_lines if ln != ln.rstrip()]
    intensities = [ln.split()[1] for ln in peak_lines]  # the stored float32's shortest decimal
    assert all(t == str(np.float32(t)) for t in intensities), peak_lines[:3]
    (tmp_path / f"x.{fmt}").write_text(out)
    loaded = list((load_from_mgf if fmt == "mgf" else load_from_msp)(str(tmp_path / f"x.{fmt}")))
    with SpectrumStore(pesticides_store) as st:
        assert len(loaded) == len(st)
        mz, inten = st.peaks(0)
        assert np.allclose(loaded[0].peaks.mz, mz)
        assert (loaded[0].peaks.intensities.astype(np.float32) == inten).all()  # exactly


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
    # the standard keys other tools read, and msid reads its own export back unchanged
    text = out.read_text()
    keys = (("TITLE=", "PEPMASS=") if fmt == "mgf"
            else ("NAME: ", "PRECURSORMZ: ", "PRECURSORTYPE: "))
    assert all(text.count(k) == len(loaded) for k in keys)
    assert main(["convert", str(out), "--out", str(tmp_path / "back.h5")]) == 0
    same = ["id", "adduct", "ion_mode"] + (["charge"] if fmt == "mgf" else [])  # MSP: COMMENT
    with SpectrumStore(pesticides_store) as a, SpectrumStore(tmp_path / "back.h5") as b:
        assert len(b) == len(a) and len(b.quarantine) == 0
        x, y = a.metadata, b.metadata
        assert (x[same] == y[same]).all().all()
        assert np.allclose(x["precursor_mz"], y["precursor_mz"])
        assert np.allclose(x["rt"], y["rt"], equal_nan=True)
        for k in range(len(a)):
            assert np.allclose(a.peaks(k)[0], b.peaks(k)[0])


@pytest.mark.parametrize("fmt", ["mgf", "msp"])
def test_exported_run_keeps_retention_times_and_names_every_record(tmp_path, fmt):
    """A run's spectra (no compound names, retention times in seconds) exported and read
    back: every MSP record gets a NAME (its id), RTINSECONDS / RETENTIONTIME (minutes) give
    the same times."""
    run = __import__("conftest").RESOURCES / "runs" / "pestmix_dda.mzML.gz"
    assert main(["convert", str(run), "--out", str(tmp_path / "run.h5")]) == 0
    out = tmp_path / f"run.{fmt}"
    assert main(["export", str(tmp_path / "run.h5"), "--out", str(out)]) == 0
    assert main(["convert", str(out), "--out", str(tmp_path / "back.h5")]) == 0
    with SpectrumStore(tmp_path / "run.h5") as a, SpectrumStore(tmp_path / "back.h5") as b:
        assert len(b) == len(a) == 213 and len(b.quarantine) == 0
        assert np.allclose(a.metadata["rt"], b.metadata["rt"], atol=1e-6)
        assert (a.metadata["id"] == b.metadata["id"]).all()  # MSP: kept in COMMENT
        assert (a.metadata["scan"] == b.metadata["scan"]).all()


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
    # a rejected top match takes the library's lower ranks (no q-value of their own) with it
    rejected = rows(("library", 1, "MSBNK-2", "", 1.0), ("library", 2, "MSBNK-3", "", nan),
                    ("ranker", 1, "", "", nan))
    assert list(_summary_order(rejected)["method"]) == ["ranker", "library", "library"]
    alone = rows(("library", 1, "MSBNK-2", "", 1.0), ("library", 2, "MSBNK-3", "", nan))
    assert _summary_order(alone).iloc[0]["library_id"] == "MSBNK-2"  # still its best guess


def test_ei_run_mztab_m_has_no_precursor_and_levels_predicted_matches(tmp_path):
    """A GC-MS run (the demo's eight real EI spectra) searched against the shipped MassBank
    EI records, with predicted spectra of two of its structures in place of their measured
    ones: the mzTab-M reads back with
    pyteomics, its evidence is MS level 1 with no precursor m/z, and a match to a predicted
    spectrum is MSI level 3 where a measured one is level 2."""
    from msid.ei.predicted import predicted_ids
    from msid.ei.search import identify_ei_run
    from msid.ei.spectra import merge_ei_files, read_record_ids

    runs = __import__("conftest").RESOURCES / "runs"
    smiles = tmp_path / "two.tsv"
    smiles.write_text("smiles\nc1cnc2c(c1)ccc1cccnc12\nNc1ncnc2[nH]cnc12\n")
    assert main(["predict-ei", str(smiles), "--out", str(tmp_path / "pred.msp")]) == 0
    measured = __import__("conftest").RESOURCES / "massbank_ei" / "massbank_ei.msp.gz"
    merge_ei_files([measured], tmp_path / "measured.h5")
    with SpectrumStore(tmp_path / "measured.h5") as st:  # their measured spectra left out
        md = st.metadata
        two = set(md.loc[md["inchikey"].str[:14].isin(["DGEZNRSVGBDHLK", "GFFGJBXGBJISGV"]),
                         "id"])
    assert len(two) >= 4
    lib = tmp_path / "lib.h5"
    merge_ei_files([measured, tmp_path / "pred.msp"], lib,
                   exclude=read_record_ids(runs / "gcms_ei_demo.library_exclude.txt") | two)
    predicted = predicted_ids(lib)
    assert len(predicted) == 2
    ids, spectra = tmp_path / "ei.tsv", tmp_path / "ei.h5"
    identify_ei_run(runs / "gcms_ei_demo.msp", lib, spectra, ids,
                    method="ei-weighted-cosine", top_k=5)
    out = write_mztab_m(ids, spectra, tmp_path / "ei.mztab", sample="gcms", top_k=5,
                        predicted=predicted)
    tables = read_back(out)
    sme, smf, sml = tables["SME"], tables["SMF"], tables["SML"]
    assert len(smf) == len(sml) == 8 and len(sme) == 40
    assert sme["exp_mass_to_charge"].isna().all() and smf["exp_mass_to_charge"].isna().all()
    assert all(tuple(p) == ("ms level", "1") for p in sme["ms_level"])  # pyteomics: (name, v)
    assert smf["retention_time_in_seconds"].between(400, 1200).all()  # MSP minutes -> s
    top = read_rankings(ids).query("rank == 1").set_index("query_id")
    level = sml.set_index("database_identifier")["reliability"].astype(int)
    for lib_id in top["library_id"]:
        assert level[lib_id] == (3 if lib_id in predicted else 2)
    assert set(top["library_id"]) & predicted, "no predicted spectrum among the top hits"
    # msid identify --out X.mztab levels them the same way
    assert main(["identify", str(runs / "gcms_ei_demo.msp"), "--method", "ei-weighted-cosine",
                 "--library", str(lib), "--top-k", "5", "--out", str(tmp_path / "cli.mztab")]) == 0
    cli = read_back(tmp_path / "cli.mztab")["SML"].set_index("database_identifier")
    assert set(cli.index) == set(level.index)
    assert (cli["reliability"].astype(int) == level.loc[cli.index]).all()


def test_ei_mztab_m_never_writes_a_precursor_even_when_records_carry_one(tmp_path):
    """An EI run whose MSP records state a PRECURSORMZ and PRECURSORTYPE (some exporters
    write the molecular ion there): written as EI (``ei=True``, as the rule does), no feature
    or evidence gets an m/z, a charge or an adduct."""
    from msid.ei.search import identify_ei_run
    from msid.ei.spectra import merge_ei_files

    runs = __import__("conftest").RESOURCES / "runs"
    text = (runs / "gcms_ei_demo.msp").read_text()
    text = text.replace("Num Peaks:", "PRECURSORMZ: 180.07\nPRECURSORTYPE: [M]+\nNum Peaks:")
    (tmp_path / "run.msp").write_text(text)
    lib = tmp_path / "lib.h5"
    merge_ei_files([__import__("conftest").RESOURCES / "massbank_ei" / "massbank_ei.msp.gz"],
                   lib)
    ids, spectra = tmp_path / "ei.tsv", tmp_path / "ei.h5"
    identify_ei_run(tmp_path / "run.msp", lib, spectra, ids, method="ei-weighted-cosine",
                    top_k=2)
    with SpectrumStore(spectra) as st:
        carried = st.metadata["adduct"].astype(str).eq("[M]+").any() or \
            st.metadata["precursor_mz"].notna().any()
    tables = read_back(write_mztab_m(ids, spectra, tmp_path / "ei.mztab", sample="gcms",
                                     top_k=2, ei=True))
    for name in ("SMF", "SME"):
        t = tables[name]
        assert len(t) and t["exp_mass_to_charge"].isna().all()
        assert t["adduct_ion"].isna().all() or (t["adduct_ion"].astype(str) == "null").all()
    assert carried, "the test's records lost their precursor before the writer saw them"


def test_msp_export_keeps_a_multiply_charged_precursor(tmp_path):
    """The MS-DIAL dialect has no charge field: a 2+ precursor without an adduct is written
    as [M+2H]2+, so its neutral mass survives the round trip."""
    from msid.chem.adducts import neutral_mass

    (tmp_path / "z2.mgf").write_text("BEGIN IONS\nTITLE=z2\nPEPMASS=400.2\nCHARGE=2+\n"
                                     "IONMODE=positive\n100.0 10\n200.0 50\nEND IONS\n")
    assert main(["convert", str(tmp_path / "z2.mgf"), "--out", str(tmp_path / "a.h5")]) == 0
    assert main(["export", str(tmp_path / "a.h5"), "--out", str(tmp_path / "z2.msp")]) == 0
    assert main(["convert", str(tmp_path / "z2.msp"), "--out", str(tmp_path / "b.h5")]) == 0
    masses = []
    for store in ("a.h5", "b.h5"):
        with SpectrumStore(tmp_path / store) as st:
            m = st.metadata.iloc[0]
            masses.append(neutral_mass(m["precursor_mz"], m["adduct"], m["ion_mode"],
                                       int(m["charge"])))
    assert masses[0] == pytest.approx(masses[1]) and masses[0] > 790


def test_scan_numbers_survive_conversion_and_mgf_export(tmp_path):
    """The scan number links a spectrum to its feature (GNPS FBMN, MZmine quant tables): an
    MZmine-style MGF's SCANS and an mzML's scan=N are kept in the store and written back as
    SCANS; an MGF without one gets none (its position is no scan)."""
    (tmp_path / "fbmn.mgf").write_text(
        "BEGIN IONS\nFEATURE_ID=12\nPEPMASS=301.1\nSCANS=12\nRTINSECONDS=61.2\nCHARGE=1+\n"
        "MSLEVEL=2\n100.0 10\n200.0 50\nEND IONS\n"
        "BEGIN IONS\nFEATURE_ID=40\nPEPMASS=401.2\nSCANS=40\nCHARGE=1+\nMSLEVEL=2\n"
        "120.0 5\n220.0 30\nEND IONS\n"
        "BEGIN IONS\nTITLE=no scan\nPEPMASS=250.0\n90.0 3\n110.0 9\nEND IONS\n")
    assert main(["convert", str(tmp_path / "fbmn.mgf"), "--out", str(tmp_path / "a.h5")]) == 0
    with SpectrumStore(tmp_path / "a.h5") as st:
        assert list(st.metadata["scan"]) == ["12", "40", ""]
        assert list(st.metadata["native_id"]) == ["index=0", "index=1", "index=2"]
    assert main(["export", str(tmp_path / "a.h5"), "--out", str(tmp_path / "b.mgf")]) == 0
    back = list(load_from_mgf(str(tmp_path / "b.mgf")))
    assert [s.get("scans") for s in back] == ["12", "40", None]
    # through MSP too (COMMENT: msid_id=ID; scan=N), and an id holding '; ' comes back whole,
    # as does a scan that is not one number (merged scans)
    (tmp_path / "odd.mgf").write_text((tmp_path / "fbmn.mgf").read_text()
                                      .replace("TITLE=no scan", "TITLE=a; b=c")
                                      .replace("SCANS=40", "SCANS=40, 41"))
    assert main(["convert", str(tmp_path / "odd.mgf"), "--out", str(tmp_path / "o.h5")]) == 0
    assert main(["export", str(tmp_path / "o.h5"), "--out", str(tmp_path / "o.msp")]) == 0
    assert main(["convert", str(tmp_path / "o.msp"), "--out", str(tmp_path / "o2.h5")]) == 0
    with SpectrumStore(tmp_path / "o.h5") as a, SpectrumStore(tmp_path / "o2.h5") as b:
        assert list(b.metadata["id"]) == list(a.metadata["id"])
        assert list(b.metadata["scan"]) == list(a.metadata["scan"]) == ["12", "40, 41", ""]
        assert "a; b=c" in set(b.metadata["id"])
    # mzML native ids: Thermo's carry the scan number; SCIEX's (the pesticide run) and
    # "spectrum=N" ids (the peptide run) carry none, and no number is made up for them
    from msid.convert import scan_number

    assert scan_number({"native_id": "controllerType=0 controllerNumber=1 scan=7731"}) == "7731"
    assert scan_number({"native_id": "index=3"}) == ""
    assert scan_number({"native_id": "512"}) == "512"  # a bare number (mzXML num)
    run = __import__("conftest").RESOURCES / "runs" / "pestmix_dda.mzML.gz"
    assert main(["convert", str(run), "--out", str(tmp_path / "run.h5")]) == 0
    with SpectrumStore(tmp_path / "run.h5") as st:
        assert st.metadata["native_id"].iat[0].startswith("sample=1 period=1 cycle=")
        assert (st.metadata["scan"] == "").all()


def test_a_store_without_the_scan_column_still_reads(tmp_path, pesticides_store):
    """Stores written before the scan column existed read as having no scan numbers."""
    import shutil

    import h5py

    old = tmp_path / "old.h5"
    shutil.copy(pesticides_store, old)
    with h5py.File(old, "a") as h5:
        del h5["metadata/scan"]
    with SpectrumStore(old) as st:
        assert len(st) and (st.metadata["scan"] == "").all()
    assert main(["export", str(old), "--out", str(tmp_path / "old.mgf")]) == 0


def test_theoretical_mz_is_the_candidates_ion_for_multimers_and_charges():
    """The m/z a candidate would have as the query's ion ([2M+H]+, [M+2H]2+, [M-H]-): the
    inverse of the neutral mass msid derives from the precursor."""
    from msid.chem.adducts import ion_mz, neutral_mass

    for adduct, z, step in (("[M+H]+", 1, 1.0), ("[2M+H]+", 1, 2.0), ("[M+2H]2+", 2, 0.5),
                            ("[M-H]-", -1, 1.0), ("[2M+Na]+", 1, 2.0)):
        mass = neutral_mass(500.0, adduct, "", z)
        assert ion_mz(mass, 500.0, adduct, "", z) == pytest.approx(500.0)
        assert ion_mz(mass + 1.0, 500.0, adduct, "", z) == pytest.approx(500.0 + step)
    assert math.isnan(ion_mz(100.0, 500.0, "", "", 0))


def test_msp_export_keeps_a_multiple_charge_through_the_adduct(tmp_path):
    """MSP has no charge field: a 3+ peptide precursor leaves as PRECURSORTYPE [M+3H]3+ and
    comes back with charge 3 (it came back 1, a third of its mass)."""
    from msid.convert import convert_file
    from msid.export.spectra import export_spectra
    from msid.store import SpectrumStore

    run = Path(__file__).resolve().parents[1] / "resources" / "runs" / "peptide_qc1.mzML.gz"
    convert_file(run, tmp_path / "a.h5", progress=False)
    export_spectra(tmp_path / "a.h5", tmp_path / "a.msp")
    convert_file(tmp_path / "a.msp", tmp_path / "b.h5", progress=False)
    with SpectrumStore(tmp_path / "a.h5") as a, SpectrumStore(tmp_path / "b.h5") as b:
        before, after = a.metadata["charge"].astype(int), b.metadata["charge"].astype(int)
    assert (before > 1).sum() > 100
    assert before.tolist() == after.tolist()


def test_export_says_what_the_format_cannot_carry(tmp_path, capsys):
    """A spectrum without a precursor m/z (a converted, not preprocessed, store) and a charge
    MS-DIAL's MSP cannot state are said on stderr, not lost in silence."""
    mgf_in = tmp_path / "x.mgf"
    mgf_in.write_text("BEGIN IONS\nTITLE=a\nPEPMASS=500.25\nCHARGE=2+\n100.1 10\n200.2 20\n"
                      "END IONS\nBEGIN IONS\nTITLE=b\nCHARGE=1+\n100.1 10\n200.2 20\nEND IONS\n")
    assert main(["convert", str(mgf_in), "--out", str(tmp_path / "x.h5")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "x.h5"), "--out", str(tmp_path / "o.mgf")]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 spectra have no precursor m/z" in err and "PEPMASS" in err, err
    assert main(["export", str(tmp_path / "x.h5"), "--out", str(tmp_path / "o.msp")]) == 0
    err = capsys.readouterr().err
    assert "1 spectra of charge 2 or more" in err and "PRECURSORMZ" in err, err
