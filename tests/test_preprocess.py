import numpy as np

from msid.folds import FoldSpec, fold_of, peptide_key
from msid.preprocess import PreprocessConfig, preprocess_store
from msid.store import SpectrumStore


def test_filters_change_peaks_as_configured(pesticides_store, tmp_path):
    raw = pesticides_store.parent / "raw.h5"
    cfg = PreprocessConfig(mz_min=100, mz_max=300, min_relative_intensity=0.05, max_peaks=5,
                           min_peaks=3, require_structure=True)
    stats = preprocess_store(raw, tmp_path / "f.h5", cfg, progress=False)
    with SpectrumStore(tmp_path / "f.h5") as st:
        assert stats.kept == len(st) and stats.read == 64
        for k in range(len(st)):
            mz, inten = st.peaks(k)
            assert 3 <= len(mz) <= 5
            assert mz.min() >= 100 and mz.max() <= 300 and inten.min() >= 0.05
        q = st.quarantine
    assert len(q) == 64 - len(st) > 0
    assert q["reason"].str.startswith("require_minimum_number_of_peaks").all()


def test_parallel_and_serial_preprocessing_agree(pesticides_store, tmp_path):
    raw = pesticides_store.parent / "raw.h5"
    preprocess_store(raw, tmp_path / "a.h5", PreprocessConfig(), n_jobs=1, progress=False)
    preprocess_store(raw, tmp_path / "b.h5", PreprocessConfig(), n_jobs=2, progress=False)
    with SpectrumStore(tmp_path / "a.h5") as a, SpectrumStore(tmp_path / "b.h5") as b:
        assert list(a.metadata["id"]) == list(b.metadata["id"])
        np.testing.assert_array_equal(a.all_peaks()[0], b.all_peaks()[0])


def test_structures_normalised_and_folds_by_inchikey_block(pesticides_store):
    with SpectrumStore(pesticides_store) as st:
        md = st.metadata
    per_structure = md.groupby(md["inchikey"].str[:14])["fold"].nunique()
    assert (per_structure == 1).all()  # a structure never spans folds
    assert md["formula"].str.match(r"^C\d").all()


def test_fold_assignment_is_deterministic_and_balanced():
    keys = [f"KEY{i:08d}" for i in range(20000)]
    folds = [fold_of(k) for k in keys]
    assert folds == [fold_of(k) for k in keys]
    frac = {f: folds.count(f) / len(folds) for f in ("train", "val", "test")}
    assert abs(frac["train"] - 0.8) < 0.02 and abs(frac["test"] - 0.1) < 0.02
    assert fold_of("ABC", FoldSpec(salt="other")) in {"train", "val", "test"}
    assert peptide_key("PEPT[+79.966]IDEK") == peptide_key("PEPTLDEK")
