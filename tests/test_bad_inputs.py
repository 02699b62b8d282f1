"""The bad-input corpus (tests/data/bad, made from real spectra by make_bad_inputs.py)."""

import subprocess
import sys

import pytest

from msid.convert import convert_file
from msid.io import InputFileError
from msid.preprocess import PreprocessConfig, preprocess_store
from msid.store import SpectrumStore


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
    assert len(kept) == 4 and len(q) == 6  # 10 records in, nothing lost
    assert any(r.startswith("require_precursor_mz") for r in reasons)
    assert "spectrum has no peaks" in reasons
    assert "non-finite (NaN/inf) m/z or intensity" in reasons
    assert "negative intensity" in reasons
    assert "duplicate spectrum id" in reasons
    assert "structure" in reasons and "invalid SMILES" in q["reason"].str.cat()
    # the duplicate's first occurrence is kept, the second quarantined
    assert reasons["duplicate spectrum id"] in kept


def test_truncated_mgf_keeps_complete_records(data_dir, tmp_path):
    with _run(data_dir / "bad" / "truncated.mgf", tmp_path) as st:
        assert len(st) == 3
        assert "without END IONS" in st.quarantine["reason"].iat[0]


def test_truncated_mzml_keeps_spectra_before_the_damage(data_dir, tmp_path):
    with _run(data_dir / "bad" / "truncated.mzML", tmp_path) as st:
        assert len(st) == 6 and (st.metadata["precursor_mz"] > 0).all()
        assert st.quarantine["reason"].str.contains("damaged or truncated").any()


def test_unreadable_file_fails_with_file_and_problem(data_dir, tmp_path):
    bad = data_dir / "bad" / "not_spectra.mgf"
    with pytest.raises(InputFileError) as err:
        convert_file(bad, tmp_path / "x.h5", progress=False)
    assert str(bad) in str(err.value) and "not an MGF file" in str(err.value)
    assert not (tmp_path / "x.h5").exists()


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
