import numpy as np
import pyopenms as oms
import pytest

from msid.convert import convert_file
from msid.io import InputFileError, read_spectra, sniff_format
from msid.store import SpectrumStore

RUNS = __import__("conftest").RESOURCES / "runs"


def test_mzml_gz_via_pyopenms(tmp_path):
    stats = convert_file(RUNS / "pestmix_dda.mzML.gz", tmp_path / "s.h5", progress=False)
    assert stats.read == stats.stored == 213  # every MS2 spectrum of the run
    with SpectrumStore(tmp_path / "s.h5") as st:
        md = st.metadata
        assert (md["precursor_mz"] > 50).all()
        assert md["rt"].between(430, 471).all()  # RT window of this run, seconds
        assert md["native_id"].str.startswith("sample=1 period=1").all()
        assert set(md["ion_mode"]) == {"positive"}


def test_mzxml_written_by_pyopenms(tmp_path, data_dir):
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(data_dir / "matchms_testdata.mzML.gz"), exp)
    oms.MzXMLFile().store(str(tmp_path / "run.mzXML"), exp)
    n_ms2 = sum(s.getMSLevel() == 2 for s in exp.getSpectra())
    recs = list(read_spectra(tmp_path / "run.mzXML"))
    assert len(recs) == n_ms2 == 10
    assert all(r.params["precursor_mz"] > 0 for r in recs)


def test_profile_spectra_are_centroided(tmp_path):
    """A profile-mode spectrum goes through PeakPickerHiRes on the way in."""
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUNS / "peptide_qc1.mzML.gz"), exp)
    ms2 = next(s for s in exp.getSpectra() if s.getMSLevel() == 2)
    mz, inten = ms2.get_peaks()
    # make a profile spectrum from real peaks: each centroid becomes a Gaussian of 7 points
    grid = (mz[:, None] + np.linspace(-0.006, 0.006, 7)[None, :]).ravel()
    prof = (inten[:, None] * np.exp(-np.linspace(-2, 2, 7) ** 2)[None, :]).ravel()
    profile = oms.MSSpectrum(ms2)
    profile.set_peaks((grid, prof.astype(np.float32)))
    profile.setType(oms.SpectrumSettings.SpectrumType.PROFILE)
    out = oms.MSExperiment()
    out.addSpectrum(profile)
    oms.MzMLFile().store(str(tmp_path / "profile.mzML"), out)
    (rec,) = list(read_spectra(tmp_path / "profile.mzML"))
    assert rec.params["centroiding"] == "PeakPickerHiRes"
    assert len(rec.mz) < len(grid)
    assert np.min(np.abs(rec.mz[:, None] - mz[None, :]), axis=1).max() < 0.01


def test_mgf_gnps_and_massspecgym_dialects(data_dir):
    gnps = list(read_spectra(data_dir / "gnps_pesticides_matchms_train.mgf.gz"))
    assert len(gnps) == 64 and gnps[0].record_id.startswith("CCMSLIB")
    msg = list(read_spectra(data_dir / "massspecgym_debug_5_train.mgf.gz"))
    assert len(msg) == 4 and all(r.params["smiles"] for r in msg)


def test_msp_via_matchms(data_dir, tmp_path):
    recs = list(read_spectra(data_dir / "massbank_ei_5.msp"))
    assert len(recs) == 5
    assert recs[0].record_id == "MSBNK-GL_Sciences_Inc-GLS00001"
    assert len(recs[0].mz) == 340


@pytest.mark.parametrize("name", ["run.mzML.gz", "x.MGF", "lib.msp", "a.mzXML"])
def test_sniff_format(name):
    assert sniff_format(name) in {"mzml", "mgf", "msp", "mzxml"}


def test_unknown_and_missing_files(tmp_path):
    with pytest.raises(InputFileError, match=r"unknown spectrum file type '\.raw'"):
        sniff_format("run.raw")
    with pytest.raises(InputFileError, match="does not exist"):
        list(read_spectra(tmp_path / "missing.mzML"))


def test_missing_smiles_repaired_from_inchi(data_dir, tmp_path):
    """A record with an InChI but no SMILES gets its SMILES (and InChIKey) from the InChI."""
    text = (data_dir / "massbank_ei_5.msp").read_text()
    first = text.split("\n\n")[0]
    broken = "\n".join(ln for ln in first.splitlines() if not ln.startswith(("SMILES", "INCHIKEY")))
    (tmp_path / "one.msp").write_text(broken + "\n\n")
    convert_file(tmp_path / "one.msp", tmp_path / "one.h5", progress=False)
    with SpectrumStore(tmp_path / "one.h5") as st:
        md = st.metadata.iloc[0]
    assert md["smiles"] and md["inchikey"] == "RQEUFEKYXDPUSK-UHFFFAOYSA-N"


@pytest.mark.parametrize(("line", "seconds"), [
    ("RETENTIONTIME: 6.70", 402.0),  # MS-DIAL's MSP export: a bare number of minutes
    ("RETENTIONTIME: 5.2 min", 312.0),  # a unit given: matchms reads it
    ("RETENTION_TIME: 430.14", 430.14),  # matchms' own MSP export: seconds
    ("RTINSECONDS: 75", 75.0),
    ("RTINSECONDS: 100\nRETENTIONTIME: 6.70", 100.0),  # stated in seconds too: never minutes
])
def test_msp_retention_time_units(tmp_path, line, seconds):
    """The demo GC-MS run's first record (a real MassBank EI spectrum) under each way MSP
    files write a retention time; the store keeps seconds."""
    text = (RUNS / "gcms_ei_demo.msp").read_text()
    first = text.split("\n\n")[0].replace("RETENTIONTIME: 6.70", line)
    (tmp_path / "run.msp").write_text(first + "\n\n")
    convert_file(tmp_path / "run.msp", tmp_path / "run.h5", progress=False)
    with SpectrumStore(tmp_path / "run.h5") as st:
        assert st.metadata["rt"].iat[0] == pytest.approx(seconds)


def test_mgf_exports_of_feature_finders(tmp_path):
    """SIRIUS / MZmine / FBMN-style MGF: an MS1 record before each MS2 record under the same
    title, FEATURE_ID as the only id, retention time in minutes. The MS2 spectrum is the query
    and keeps the title; the MS1 record is quarantined as such; ids and times come through."""
    from msid.identify import load_queries

    text = (__import__("conftest").DATA / "bad" / "pesticides_first3.mgf").read_text()
    first = text[:text.index("END IONS") + len("END IONS")] + "\n"
    body = "\n".join(ln for ln in first.splitlines()
                     if not ln.startswith(("SPECTRUMID=", "SCANS=", "MSLEVEL=")))
    ms1 = body.replace("BEGIN IONS", "BEGIN IONS\nTITLE=feature 7\nMSLEVEL=1", 1)
    ms2 = body.replace("BEGIN IONS", "BEGIN IONS\nTITLE=feature 7\nMSLEVEL=2", 1)
    fbmn = body.replace("BEGIN IONS", "BEGIN IONS\nFEATURE_ID=1000\nRTINMINUTES=2.5", 1)
    again = body.replace("BEGIN IONS", "BEGIN IONS\nFEATURE_ID=1000", 1)
    (tmp_path / "f.mgf").write_text("\n".join([ms1, ms2, fbmn, again]) + "\n")
    with load_queries(tmp_path / "f.mgf", tmp_path) as q:
        md = q.metadata.set_index("id")
        lost = dict(zip(q.quarantine["record_id"], q.quarantine["reason"], strict=True))
    assert list(md.index) == ["feature 7", "1000", "1000#2"]  # no spectrum lost to its id
    assert md.loc["feature 7", "ms_level"] == 2 and "MS1 spectrum" in lost["feature 7"]
    assert md.loc["1000", "rt"] == 150.0
    assert md.loc["1000", "native_id"] == "index=2" and md.loc["1000#2", "native_id"] == "index=3"
    # the DAG's way (convert the run MS2-only, then the runs' filter chain): the same ids
    import yaml

    from msid.convert import convert_file
    from msid.preprocess import PreprocessConfig, preprocess_store

    runs = yaml.safe_load((RUNS.parents[1] / "config" / "config.yaml").read_text())
    convert_file(tmp_path / "f.mgf", tmp_path / "raw.h5", progress=False, ms2_only=True)
    preprocess_store(tmp_path / "raw.h5", tmp_path / "run.h5",
                     PreprocessConfig.from_dict(runs["preprocess"]["runs"]), progress=False)
    with SpectrumStore(tmp_path / "run.h5") as st:
        assert list(st.metadata["id"]) == ["feature 7", "1000", "1000#2"]


def test_repeated_ids_numbered_in_one_pass(tmp_path):
    """MS-DIAL MSP exports name every unidentified feature 'Unknown': each record is kept,
    numbered past the ids already taken (a record literally named 'Unknown#2' included), and
    an MSP record's native id (its name) follows its new id."""
    from msid.convert import convert_file, unique_id

    rec = "Name: {}\nPrecursorMZ: 300.1\nNum Peaks: 2\n100.0 10\n200.0 50\n\n"
    (tmp_path / "u.msp").write_text("".join(rec.format(n) for n in
                                            ["Unknown", "Unknown#2", "Unknown", "Unknown"]))
    stats = convert_file(tmp_path / "u.msp", tmp_path / "u.h5", progress=False)
    with SpectrumStore(tmp_path / "u.h5") as st:
        assert list(st.metadata["id"]) == ["Unknown", "Unknown#2", "Unknown#3", "Unknown#4"]
        assert list(st.metadata["native_id"]) == list(st.metadata["id"])
    assert stats.renamed == 2 and stats.stored == 4
    taken, counts = {"x"}, {}
    for _ in range(2, 5002):  # linear: the count is remembered, not searched from #2
        taken.add(unique_id("x", taken, counts))
    assert counts["x"] == 5002 and "x#5001" in taken


def test_ion_mode_and_precursor_as_files_write_them(tmp_path):
    """IONMODE=neg, NIST's 'Ion_mode: N', POLARITY=Negative and 'Precursor m/z:' are read as
    what they say: a negative-mode record is never stored as positive or without its
    precursor (matchms maps none of these spellings)."""
    from msid.convert import convert_file
    from msid.store import SpectrumStore

    lines = [("IONMODE", "neg"), ("IONMODE", "N"), ("POLARITY", "Negative"),
             ("POLARITY", "negative"), ("IONMODE", "Positive")]
    (tmp_path / "a.mgf").write_text("".join(
        f"BEGIN IONS\nTITLE=r{i}\n{k}={v}\nPEPMASS=179.0561\nCHARGE=1\n50 10\n60 20\nEND IONS\n"
        for i, (k, v) in enumerate(lines)))
    (tmp_path / "b.msp").write_text("Name: x\nPrecursor m/z: 179.0561\nIon_mode: N\n"
                                    "Num Peaks: 2\n50 10\n60 20\n\n")
    for name in ("a.mgf", "b.msp"):
        convert_file(tmp_path / name, tmp_path / f"{name}.h5", progress=False)
    with SpectrumStore(tmp_path / "a.mgf.h5") as st:
        assert list(st.metadata["ion_mode"]) == ["negative"] * 4 + ["positive"]
        assert list(st.metadata["charge"]) == [-1] * 4 + [1]
    with SpectrumStore(tmp_path / "b.msp.h5") as st:
        m = st.metadata.iloc[0]
        assert m["ion_mode"] == "negative" and m["precursor_mz"] == 179.0561


def test_msp_peak_annotations_in_single_quotes_or_with_colons(tmp_path):
    """'100 50 \\'y-ion\\'' (single quotes) and '101 20 "b2: 1ppm"' (a colon) are peaks with an
    annotation: neither ends the file nor is taken for metadata."""
    from msid.io.raw import read_spectra
    from msid.store import QuarantineRecord

    rec = "Name: {n}\nPrecursorMZ: 300\nNum Peaks: 3\n{peaks}\n\n"
    (tmp_path / "a.msp").write_text(
        rec.format(n="ok1", peaks="50 1\n60 2\n70 3")
        + rec.format(n="A", peaks="99 5\n100 50 'y-ion'\n101 20 \"b2: 1ppm\"")
        + rec.format(n="ok2", peaks="50 1\n60 2\n70 3"))
    got = list(read_spectra(tmp_path / "a.msp"))
    assert not [r for r in got if isinstance(r, QuarantineRecord)]
    assert [r.record_id for r in got] == ["ok1", "A", "ok2"]
    assert got[1].mz.tolist() == [99.0, 100.0, 101.0] and got[1].intensity.tolist() == [5, 50, 20]
