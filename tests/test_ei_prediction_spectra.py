"""EI ingestion: nominal binning, profile-like records, EI stores from the shipped MassBank EI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from msid.ei.spectra import (
    EI_LIBRARY_PREPROCESS,
    dense_nominal,
    ei_store,
    is_profile_like,
    nominal_record,
    to_nominal,
)
from msid.store import SpectrumStore

EI_DIR = Path(__file__).resolve().parents[1] / "resources" / "massbank_ei"
EI_MSP = EI_DIR / "massbank_ei.msp.gz"


def test_to_nominal_sums_and_respects_mass_defect() -> None:
    mz = np.array([91.05, 91.1, 253.81, 500.39, 0.2])
    inten = np.array([4.0, 5.0, 2.0, 1.0, 7.0])
    nmz, nint = to_nominal(mz, inten)
    assert nmz.tolist() == [91, 254, 500]  # m/z 0.2 bins to 0 and is dropped
    assert nint.tolist() == [9.0, 2.0, 1.0]
    nmz, nint = to_nominal(mz, inten, reduce="max")
    assert nint[0] == 5.0
    # a whole-number m/z (unit-mass data) is its own bin, at any mass: binned again it stays
    unit = np.array([1040.0, 1041.0, 1042.0, 1043.0, 1185.0])
    assert to_nominal(unit, np.ones(5))[0].tolist() == unit.astype(int).tolist()
    assert to_nominal(np.array([1185.5]), np.ones(1))[0].tolist() == [1185]


def test_dense_nominal_vector() -> None:
    v = dense_nominal(np.array([15.0, 43.0, 58.1, 700.0]), np.array([10.0, 100.0, 20.0, 5.0]), 500)
    assert v.dtype == np.float32 and v.shape == (501,)
    assert v[43] == 1.0 and v[15] == pytest.approx(0.1) and v[58] == pytest.approx(0.2)
    assert v.sum() == pytest.approx(1.3)


def test_profile_like_detection_and_handling() -> None:
    rng = np.random.default_rng(0)
    mz = np.round(np.arange(40, 400, 1.0) + rng.uniform(-0.3, 0.3, 360), 2)
    inten = rng.uniform(0, 5, 360)
    inten[[10, 50, 90]] = [1000, 400, 300]
    assert is_profile_like(mz)
    nmz, _nint, profile = nominal_record(mz, inten)
    assert profile and nmz.size == 3  # the noise under 1% of base is gone
    stick = np.array([41.0, 43.0, 58.0, 91.0])
    assert not is_profile_like(stick)


def test_ei_store_no_precursor_nominal_folds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MSID_CACHE", str(tmp_path / "cache"))
    # a 40-record slice of the shipped MSP keeps the test fast
    text = __import__("gzip").open(EI_MSP, "rt").read().split("\n\n")
    small = tmp_path / "ei.msp"
    small.write_text("\n\n".join(text[:40]) + "\n\n")
    out = ei_store(small)
    assert out.parent == tmp_path / "cache" and ei_store(small) == out  # cached by content
    with SpectrumStore(out) as s:
        assert len(s) == 40  # EI records are not quarantined for lacking a precursor
        md = s.metadata
        assert md.precursor_mz.isna().all()
        assert set(md.fold) <= {"train", "val", "test"} and md.inchikey.str.len().min() == 27
        for i in range(len(s)):
            mz, _ = s.peaks(i)
            assert np.array_equal(mz, np.rint(mz)) and (np.diff(mz) > 0).all()
    assert EI_LIBRARY_PREPROCESS.require_precursor_mz is False
