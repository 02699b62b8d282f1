"""The bad-input corpus (tests/data/bad, made from real spectra by make_bad_inputs.py)."""

import gzip
import subprocess
import sys

import numpy as np
import pyopenms as oms
import pytest

from msid.convert import convert_file
from msid.io import InputFileError, read_spectra
from msid.preprocess import PreprocessConfig, preprocess_store
from msid.store import QuarantineRecord, SpectrumStore


def _run(path, tmp_path, **cfg):
    convert_file(path, tmp_path / "raw.h5", progress=False)
    preprocess_store(tmp_path / "raw.h5", tmp_path / "clean.h5", PreprocessConfig(**cfg),
                     progress=False)
    return SpectrumStore(tmp_path / "clean.h5")


def test_every_bad_record_is_quarantined_with_its_reason(data_dir, tmp_path):
    with _run(data_dir / "bad" / "mixed_bad_records.mgf", tmp_path) as st:
        q = st.quarantine
        reasons = dict(zip(q["reason"].str.split(":").str[0], q["record_id"], strict=False))
        kept = set(st.metadata["id"])
    assert len(kept) == 5 and len(q) == 5  # 10 records in, nothing lost
    assert any(r.startswith("require_precursor_mz") for r in reasons)
    assert "spectrum has no peaks" in reasons
    assert "non-finite (NaN/inf) m/z or intensity" in reasons
    assert "negative intensity" in reasons
    assert "structure" in reasons and "invalid SMILES" in q["reason"].str.cat()
    # a repeated id is no reason to lose a spectrum: the second record is kept as "<id>#2"
    (dup,) = [k for k in kept if k.endswith("#2")]
    assert dup[:-2] in kept


def test_a_query_is_never_dropped_for_its_structure_annotation(data_dir, tmp_path):
    """Queries (``msid identify``, the runs' config) keep an annotation as written: the record
    whose SMILES RDKit cannot parse is quarantined from a library, never from the queries."""
    from msid.identify import load_queries

    path = data_dir / "bad" / "mixed_bad_records.mgf"
    with _run(path, tmp_path / "lib", standardise_structures=True) as lib:
        lost = set(lib.quarantine["record_id"])
    with load_queries(path, tmp_path / "q") as q:
        kept = dict(zip(q.metadata["id"], q.metadata["smiles"], strict=True))
        q_lost = set(q.quarantine["record_id"])
        q_reasons = list(q.quarantine["reason"])
    bad_smiles = {"C1CC(=O"}
    assert bad_smiles & set(kept.values())  # searched, its label untouched
    assert q_lost < lost and len(lost - q_lost) == 1  # the structure reason only
    assert not any("structure" in r for r in q_reasons)


def test_truncated_mgf_keeps_complete_records(data_dir, tmp_path):
    """A plain MGF or MSP cut off in a record: the complete records are kept, the cut one is a
    lost record, and the file is named as damaged (the reports say its results are partial)."""
    from msid.report.quarantine import quarantine_summary

    with _run(data_dir / "bad" / "truncated.mgf", tmp_path) as st:
        assert len(st) == 3
        assert "without END IONS" in st.quarantine["reason"].iat[0]
        lost = quarantine_summary(st.quarantine)
    assert lost["n_records"] == 1 and "ends in the middle" in lost["damaged"]
    stats = convert_file(data_dir / "bad" / "truncated.mgf", tmp_path / "c.h5", progress=False)
    assert "ends in the middle" in stats.damaged  # the CLI's JSON and the rule log say so
    assert stats.read == stats.stored + sum(stats.quarantined.values())
    msp = (data_dir / "bad" / "bad_records.msp").read_text()
    (tmp_path / "cut.msp").write_text(msp[:msp.index("Num Peaks") + 40])  # in a peak list
    with _run(tmp_path / "cut.msp", tmp_path / "m") as st:
        lost = quarantine_summary(st.quarantine)
    assert "ends in the middle" in lost["damaged"] and lost["unreadable"] == ""
    assert any("cut short" in r["reason"] for r in lost["reasons"])


def test_report_reasons_group_records_by_check_and_what_failed(tmp_path):
    """A reason is counted by its check and what failed (its first two ': ' parts), as
    conversion and preprocessing count it; a record's own value after them is listed record by
    record. A file with no record listed is never called clean."""
    import pandas as pd

    from msid.report.quarantine import file_note, quarantine_summary

    q = pd.DataFrame({"source_file": ["r.mgf"] * 3, "record_id": ["a", "b", "c"], "reason": [
        "structure: invalid SMILES (RDKit cannot parse): C1CC",
        "structure: invalid SMILES (RDKit cannot parse): XX",
        "require_precursor_mz: missing or invalid precursor m/z"]})
    reasons = {r["reason"]: r["spectra"] for r in quarantine_summary(q)["reasons"]}
    assert reasons == {"structure: invalid SMILES (RDKit cannot parse)": 2,
                       "require_precursor_mz: missing or invalid precursor m/z": 1}
    # pyteomics' message for a bad peak line: the check, what failed, then the line
    from msid.io.mgf import read_mgf

    bad = tmp_path / "g.mgf"
    bad.write_text("BEGIN IONS\nTITLE=garbage\nPEPMASS=100.0\n12 abc\nEND IONS\n")
    (why,) = [r.reason for r in read_mgf(bad)]
    assert why == "unparsable MGF record: a line it cannot read: '12 abc'"
    assert file_note("", "", 0) == "No record was quarantined."
    assert "could not be read" in file_note("not an MGF file", "", 0)
    assert "lost" in file_note("", "ends in the middle of a record", 0)
    assert file_note("", "damaged", 2) == ""  # the records are listed


def test_truncated_mzml_keeps_spectra_before_the_damage(data_dir, tmp_path):
    """The spectra before the cut are kept; the cut is said once, as the file's damage (what
    the reports show as partial results), and is counted as no record read."""
    from msid.report.quarantine import quarantine_summary

    with _run(data_dir / "bad" / "truncated.mzML", tmp_path) as st:
        assert len(st) == 6 and (st.metadata["precursor_mz"] > 0).all()
        assert st.quarantine["reason"].str.contains("damaged or truncated").any()
        lost = quarantine_summary(st.quarantine)
        n_quarantined = len(st.quarantine)
    assert "damaged or truncated" in lost["damaged"] and lost["unreadable"] == ""
    assert lost["n_records"] == n_quarantined - 1  # the damage row is no record
    assert not any("damaged" in r["reason"] for r in lost["reasons"])
    stats = convert_file(data_dir / "bad" / "truncated.mzML", tmp_path / "c.h5", progress=False)
    assert stats.read == stats.stored + sum(stats.quarantined.values())
    assert "damaged or truncated" in stats.damaged


def test_unreadable_file_fails_with_file_and_problem(data_dir, tmp_path):
    bad = data_dir / "bad" / "not_spectra.mgf"
    with pytest.raises(InputFileError) as err:
        convert_file(bad, tmp_path / "x.h5", progress=False)
    assert str(bad) in str(err.value) and "not an MGF file" in str(err.value)
    assert "looks like" not in str(err.value)  # it looks like nothing
    assert not (tmp_path / "x.h5").exists()


def test_a_file_named_for_another_format_is_told_what_it_looks_like(data_dir, tmp_path):
    """An mzML run saved as .mgf, an MGF saved as .msp: the error says what the content looks
    like and which name to give it."""
    import gzip

    (tmp_path / "run.mgf").write_bytes(gzip.decompress(RUN.read_bytes()))
    (tmp_path / "lib.msp").write_bytes(
        gzip.decompress((data_dir / "gnps_pesticides_matchms_train.mgf.gz").read_bytes()))
    (tmp_path / "run.mgf.gz").write_bytes(RUN.read_bytes())
    for path, says in ((tmp_path / "run.mgf", "looks like mzML: name it .mzML"),
                       (tmp_path / "lib.msp", "looks like MGF: name it .mgf"),
                       (tmp_path / "run.mgf.gz", "looks like mzML: name it .mzML.gz")):
        with pytest.raises(InputFileError) as err:
            convert_file(path, tmp_path / "x.h5", progress=False)
        assert says in str(err.value), str(err.value)


def test_cli_reports_bad_file_cleanly(data_dir, tmp_path):
    bad = data_dir / "bad" / "not_spectra.mgf"
    res = subprocess.run([sys.executable, "-m", "msid.cli", "identify", str(bad),
                          "--out", str(tmp_path / "o.tsv")], capture_output=True, text=True)
    assert res.returncode == 2
    assert "not_spectra.mgf: no 'BEGIN IONS" in res.stderr and "Traceback" not in res.stderr


def test_corpus_generator_is_reproducible(data_dir, tmp_path):
    before = (data_dir / "bad" / "mixed_bad_records.mgf").read_bytes()
    subprocess.run([sys.executable, str(data_dir / "bad" / "make_bad_inputs.py")], check=True,
                   capture_output=True)
    assert (data_dir / "bad" / "mixed_bad_records.mgf").read_bytes() == before


# -- damaged files of every format keep the records before the damage ---------------------------
RUN = __import__("conftest").RESOURCES / "runs" / "pestmix_dda.mzML.gz"


def _convert(path, tmp_path):
    stats = convert_file(path, tmp_path / "raw.h5", progress=False)
    with SpectrumStore(tmp_path / "raw.h5") as st:
        return stats, st.metadata.copy(), st.quarantine.copy()


def test_a_peak_whose_intensity_is_no_number_is_told_so(data_dir, tmp_path):
    """'85 x' has an intensity that is not a number (not a missing one): the reason says so."""
    text = (data_dir / "bad" / "bad_records.msp").read_text()
    first = text.split("\n\n")[0]
    lines = first.splitlines()
    k = next(i for i, ln in enumerate(lines) if ln[:1].isdigit())
    lines[k] = lines[k].split()[0] + " x"
    (tmp_path / "x.msp").write_text("\n".join(lines) + "\n")
    _stats, _md, q = _convert(tmp_path / "x.msp", tmp_path)
    assert len(q) == 1
    assert q["reason"].str.contains("peak line with a non-finite or non-numeric value").all(), q
    # numbers only, the last intensity missing: that is a missing intensity
    lines[k] = "85 100 86"
    (tmp_path / "y.msp").write_text("\n".join(lines) + "\n")
    (tmp_path / "y").mkdir()
    _stats, _md, q = _convert(tmp_path / "y.msp", tmp_path / "y")
    assert len(q) == 1 and "peak line without intensity" in q["reason"].iat[0], q


def test_cut_run_keeps_isolation_window_precursors(tmp_path):
    """The SCIEX run gives precursors only as isolation window targets; cut at half its length,
    every MS2 spectrum before the cut keeps its precursor and survives preprocessing."""
    raw = gzip.decompress(RUN.read_bytes())
    (tmp_path / "cut.mzML").write_bytes(raw[: len(raw) // 2])
    whole = {r.record_id: r.params["precursor_mz"] for r in read_spectra(RUN)}
    with _run(tmp_path / "cut.mzML", tmp_path) as st:
        md, q = st.metadata, st.quarantine
    assert len(md) == 108 and len(q) == 1
    assert "damaged or truncated after 129 spectra" in q["reason"].iat[0]
    for rid, prec in zip(md["id"], md["precursor_mz"], strict=True):
        assert prec == pytest.approx(whole[rid])


def test_cut_gzip_run_yields_what_was_readable(tmp_path):
    gz = RUN.read_bytes()
    (tmp_path / "cut.mzML.gz").write_bytes(gz[: len(gz) // 2])
    whole = [r.record_id for r in read_spectra(RUN)]
    with _run(tmp_path / "cut.mzML.gz", tmp_path) as st:
        ids, q = list(st.metadata["id"]), st.quarantine
    assert len(ids) == 113 and ids == whole[:113]
    assert "compressed stream cut" in q["reason"].iat[0]


@pytest.mark.parametrize(("name", "kept"), [("truncated_isolation_window.mzML", 23),
                                            ("truncated.mzML.gz", 32), ("truncated.mzXML", 56)])
def test_corpus_runs_keep_spectra_with_precursor(data_dir, tmp_path, name, kept):
    with _run(data_dir / "bad" / name, tmp_path) as st:
        assert len(st) == kept and (st.metadata["precursor_mz"] > 50).all()
        (reason,) = st.quarantine["reason"]
    assert "damaged" in reason and "the rest of the file is lost" in reason


def test_cut_mzxml_matches_the_intact_file(data_dir, tmp_path):
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUN), exp)
    oms.MzXMLFile().store(str(tmp_path / "whole.mzXML"), exp)
    whole = {r.record_id: r for r in read_spectra(tmp_path / "whole.mzXML")}
    cut = [r for r in read_spectra(data_dir / "bad" / "truncated.mzXML")
           if not isinstance(r, QuarantineRecord)]
    assert len(cut) == 56
    for r in cut:
        w = whole[r.record_id]
        assert r.params["precursor_mz"] == pytest.approx(w.params["precursor_mz"])
        assert r.params["retention_time"] == pytest.approx(w.params["retention_time"], abs=0.01)
        assert np.allclose(r.mz, w.mz) and r.params["ionmode"] == "positive"


def test_cut_gzip_mgf_keeps_complete_records(data_dir, tmp_path):
    stats, _md, q = _convert(data_dir / "bad" / "truncated.mgf.gz", tmp_path)
    assert stats.stored == 4 and len(q) == 2
    assert q["reason"].str.contains("without END IONS").any()
    assert q["reason"].str.contains("compressed stream cut").any()


def test_one_bad_msp_record_costs_only_itself(data_dir, tmp_path):
    stats, md, q = _convert(data_dir / "bad" / "bad_records.msp", tmp_path)
    assert stats.stored == 2 and len(q) == 5
    reasons = dict(zip(q["record_id"], q["reason"], strict=True))
    assert "missing 'Num Peaks'" in reasons["MSBNK-GL_Sciences_Inc-GLS00002"]
    assert "'Num Peaks: many'" in reasons["MSBNK-GL_Sciences_Inc-GLS00003-x"]
    assert "peak line without intensity" in reasons["MSBNK-GL_Sciences_Inc-GLS00004"]
    assert "'Num Peaks: 367' but the record has 362" in reasons["MSBNK-GL_Sciences_Inc-GLS00005"]
    assert "cut short at the end of the file" in reasons["MSBNK-GL_Sciences_Inc-GLS00003-copy"]
    # EI spectra have no precursor: kept at read time (preprocessing decides)
    assert md["precursor_mz"].isna().all()
    assert list(md["id"]) == ["MSBNK-GL_Sciences_Inc-GLS00001",
                              "MSBNK-GL_Sciences_Inc-GLS00001-copy"]


def test_zero_padded_gzip_is_whole(data_dir, tmp_path):
    """Zero bytes after a gzip member (a padded transfer or tape copy) are padding, as gzip
    and Python's gzip read them: the file is whole, not damaged; members after them count."""
    import gzip

    text = (data_dir / "bad" / "pesticides_first3.mgf").read_bytes()
    (tmp_path / "pad.mgf.gz").write_bytes(gzip.compress(text) + b"\x00" * 1024)
    (tmp_path / "a").mkdir()
    stats, _md, q = _convert(tmp_path / "pad.mgf.gz", tmp_path / "a")
    assert stats.stored == 3 and len(q) == 0 and not stats.damaged
    first, second = text.split(b"END IONS\n", 1)
    (tmp_path / "two.mgf.gz").write_bytes(gzip.compress(first + b"END IONS\n") + b"\x00" * 9
                                          + gzip.compress(second))
    (tmp_path / "b").mkdir()
    stats, _md, q = _convert(tmp_path / "two.mgf.gz", tmp_path / "b")
    assert stats.stored == 3 and len(q) == 0


def test_cut_gzip_msp(data_dir, tmp_path):
    stats, _md, q = _convert(data_dir / "bad" / "truncated.msp.gz", tmp_path)
    assert stats.stored == 3 and len(q) == 2
    assert "cut short at the end of the file" in q["reason"].iat[0]
    assert "compressed stream cut" in q["reason"].iat[1]


@pytest.mark.parametrize("name", ["empty.msp", "empty.mgf", "blank.mgf"])
def test_empty_file_is_an_error_not_an_empty_result(data_dir, tmp_path, name):
    with pytest.raises(InputFileError, match="file is empty"):
        convert_file(data_dir / "bad" / name, tmp_path / "x.h5", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_metadata_values_are_named_rejects(data_dir, tmp_path):
    stats, md, q = _convert(data_dir / "bad" / "bad_metadata.mgf", tmp_path)
    assert stats.stored == 2 and len(q) == 3
    text = " | ".join(q["reason"])
    assert "invalid precursor m/z 'inf'" in text
    assert "unknown ion mode 'sideways'" in text
    assert "PEPMASS='abc' is not a number" in text  # the field named
    assert set(md["ion_mode"]) <= {"positive", "negative"}


def test_directory_and_gzip_that_is_not_gzip(tmp_path):
    with pytest.raises(InputFileError, match="is a directory"):
        list(read_spectra(tmp_path))
    (tmp_path / "x.mgf.gz").write_text("BEGIN IONS\nEND IONS\n")
    with pytest.raises(InputFileError, match="not a readable gzip file"):
        list(read_spectra(tmp_path / "x.mgf.gz"))


def test_malformed_mzml_never_reaches_pyopenms(tmp_path):
    """An element name garbled inside a binaryDataArrayList (found by the property tests) made
    pyOpenMS's parser crash the process (SIGSEGV). Malformed XML now goes to the pyteomics
    salvage path: the spectra before the damage are kept, the rest is reported. Run in a
    subprocess, so a crash fails this test, not the test session."""
    run = gzip.decompress((__import__("conftest").RESOURCES / "runs" /
                           "pestmix_dda.mzML.gz").read_bytes())
    at = run.index(b"<binaryDataArray encodedLength", 188_000)
    bad = tmp_path / "garbled.mzML"
    bad.write_bytes((run[:at] + b"<binaryDataArOaj" + run[at + 16:])[:200_000])
    res = subprocess.run([sys.executable, "-m", "msid.cli", "convert", str(bad), "--out",
                          str(tmp_path / "s.h5")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    with SpectrumStore(tmp_path / "s.h5") as st:
        assert len(st) > 30
        assert "tag mismatch" in st.quarantine["reason"].str.cat()


def _ms2_binaries(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of the first <binary> payload of each MS2 spectrum of an mzML."""
    import re

    out = []
    for m in re.finditer(rb"<spectrum .*?</spectrum>", raw, re.S):
        if b'name="ms level" value="2"' in m.group(0):
            b = re.search(rb"<binary>(.*?)</binary>", m.group(0), re.S)
            out.append((m.start() + b.start(1), m.start() + b.end(1)))
    return out


@pytest.mark.parametrize(("payload", "reason"), [(b"AAAAA", "cannot be decoded"),
                                                 (b"AAAA", "cannot be decoded")])
def test_one_undecodable_mzml_spectrum_costs_only_itself(tmp_path, payload, reason):
    """One MS2 spectrum of the real run with bad base64 (or a too-short array): that spectrum
    is quarantined by its id, every other one is read as from the intact file."""
    raw = gzip.decompress(RUN.read_bytes())
    spans = _ms2_binaries(raw)
    a, b = spans[len(spans) // 3]
    bad = tmp_path / "bad.mzML"
    bad.write_bytes(raw[:a] + payload + raw[b:])
    whole = {r.record_id: r for r in read_spectra(RUN)}
    got = list(read_spectra(bad))
    kept = {r.record_id: r for r in got if not isinstance(r, QuarantineRecord)}
    (q,) = [r for r in got if isinstance(r, QuarantineRecord)]
    assert reason in q.reason and q.record_id in whole
    assert set(kept) == set(whole) - {q.record_id}
    for rid, r in kept.items():
        assert np.allclose(r.mz, whole[rid].mz) and np.allclose(r.intensity, whole[rid].intensity)


def _mgf_records(data_dir, n=5) -> list[str]:
    text = gzip.decompress((data_dir / "gnps_pesticides_matchms_train.mgf.gz").read_bytes())
    blocks = text.decode().split("END IONS")
    return [b.strip() + "\nEND IONS\n" for b in blocks[:n]]


def test_mgf_byte_order_mark_and_loose_markers_lose_no_record(data_dir, tmp_path):
    """A UTF-8 byte-order mark, indented and lower-case BEGIN/END IONS lines: every record is
    read, the same as from the plain file."""
    recs = _mgf_records(data_dir)
    plain = tmp_path / "plain.mgf"
    plain.write_text("\n".join(recs))
    want = [(r.record_id, r.mz.tolist()) for r in read_spectra(plain)]
    loose = list(recs)
    loose[1] = loose[1].replace("BEGIN IONS", "  BEGIN IONS").replace("END IONS", "END IONS  ")
    loose[2] = loose[2].replace("BEGIN IONS", "begin ions").replace("END IONS", "end ions")
    for name, text in (("bom.mgf", "\ufeff" + "\n".join(recs)), ("loose.mgf", "\n".join(loose))):
        (tmp_path / name).write_bytes(text.encode())
        assert [(r.record_id, r.mz.tolist()) for r in read_spectra(tmp_path / name)] == want


def test_mgf_record_without_end_ions_costs_only_itself(data_dir, tmp_path):
    recs = _mgf_records(data_dir)
    ids = [r.record_id for r in read_spectra_text(tmp_path, "\n".join(recs))]
    recs[1] = recs[1].replace("END IONS", "")
    got = list(read_spectra_text(tmp_path, "\n".join(recs)))
    (q,) = [r for r in got if isinstance(r, QuarantineRecord)]
    assert q.record_id == ids[1] and "no END IONS" in q.reason
    assert [r.record_id for r in got if not isinstance(r, QuarantineRecord)] == \
        ids[:1] + ids[2:]


def read_spectra_text(tmp_path, text: str, name: str = "x.mgf"):
    (tmp_path / name).write_text(text)
    return read_spectra(tmp_path / name)


def test_msp_reader_names_what_matchms_line_parsers_would_let_through(data_dir, tmp_path):
    """Real EI records: a byte-order mark loses nothing; a negative intensity (matchms' number
    pattern reads "-29" as 29), a 'Num Peaks' below the peak lines (read as a cut spectrum plus
    stray text) and text before the first Name line are each named."""
    text = (data_dir / "massbank_ei_5.msp").read_text()
    whole = [r.record_id for r in read_spectra_text(tmp_path, text, "w.msp")]
    assert [r.record_id for r in read_spectra_text(tmp_path, "\ufeff" + text, "b.msp")] == whole
    records = [r for r in text.split("\n\n") if r.strip()]
    lines = records[1].splitlines()
    peak = next(i for i, ln in enumerate(lines) if ln[:1].isdigit())
    mz, inten = lines[peak].split()[:2]
    neg = "\n".join([*lines[:peak], f"{mz} -{inten}", *lines[peak + 1:]])
    few = "\n".join(ln if not ln.lower().startswith("num peaks") else "Num Peaks: 2"
                    for ln in records[2].splitlines())
    mangled = "\n\n".join(["stray header line", records[0], neg, few, *records[3:]]) + "\n"
    got = list(read_spectra_text(tmp_path, mangled, "m.msp"))
    reasons = {r.record_id: r.reason for r in got if isinstance(r, QuarantineRecord)}
    assert [r.record_id for r in got if not isinstance(r, QuarantineRecord)] == \
        [whole[0], *whole[3:]]
    assert "negative m/z or intensity" in reasons[whole[1]]
    assert "'Num Peaks: 2' but the record has" in reasons[whole[2]]
    assert "text before the first 'Name:' line" in reasons["before index=0"]


def test_an_unreadable_run_becomes_an_empty_store_that_says_why(data_dir, tmp_path):
    """What the DAG does with a run file that cannot be read at all: an empty store whose one
    quarantine row names the problem (the report counts no record read), and the EI run rule
    writes empty tables from it instead of failing; outside the DAG the error still stops."""
    from msid.convert import unreadable_run_store
    from msid.ei.search import identify_ei_run
    from msid.rankings import read_rankings
    from msid.report.quarantine import quarantine_summary
    from msid.store import WHOLE_FILE

    bad = data_dir / "bad" / "not_spectra.mgf"
    with pytest.raises(InputFileError) as err:
        convert_file(bad, tmp_path / "x.h5", progress=False)
    unreadable_run_store(bad, tmp_path / "x.h5", err.value)
    with SpectrumStore(tmp_path / "x.h5") as st:
        assert len(st) == 0 and list(st.quarantine["record_id"]) == [WHOLE_FILE]
        lost = quarantine_summary(st.quarantine)
    assert lost["n_records"] == 0 and "not an MGF file" in lost["unreadable"]
    lib = __import__("conftest").RESOURCES / "massbank_ei" / "massbank_ei.msp.gz"
    outs = [tmp_path / f for f in ("ei.h5", "ei.tsv", "matches.h5")]
    with pytest.raises(InputFileError):
        identify_ei_run(bad, lib, outs[0], outs[1], matches_out=outs[2],
                        method="ei-weighted-cosine")
    assert identify_ei_run(bad, lib, outs[0], outs[1], matches_out=outs[2],
                           method="ei-weighted-cosine", unreadable_ok=True) == 0
    assert len(read_rankings(outs[1])) == 0
    with SpectrumStore(outs[0]) as st:
        assert "not an MGF file" in quarantine_summary(st.quarantine)["unreadable"]


def test_a_cut_last_mgf_record_is_named_by_its_id(data_dir, tmp_path):
    """The unfinished last record of a cut MGF is quarantined under its own id (the TITLE /
    SPECTRUMID line it has), not only its position."""
    src = data_dir / "bad" / "pesticides_first3.mgf"
    text = src.read_text()
    last = text.rindex("BEGIN IONS")
    (tmp_path / "cut.mgf").write_text(text[:text.index("END IONS", last)])
    _stats, md, q = _convert(tmp_path / "cut.mgf", tmp_path)
    want = next(ln.split("=", 1)[1].strip() for ln in text[last:].splitlines()
                if ln.upper().startswith(("SPECTRUMID=", "TITLE=")))
    row = q[q["reason"].str.contains("without END IONS")]
    assert row["record_id"].tolist() == [want] and len(md) == 2
    # cut inside that id line: the id may be cut short, so the record's position names it
    at = text.index(want, last) + 3
    (tmp_path / "cut2.mgf").write_text(text[:at])
    (tmp_path / "c2").mkdir()
    _stats, md, q = _convert(tmp_path / "cut2.mgf", tmp_path / "c2")
    row = q[q["reason"].str.contains("without END IONS")]
    assert row["record_id"].tolist() == ["index=2"] and len(md) == 2
