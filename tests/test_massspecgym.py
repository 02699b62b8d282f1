"""MassSpecGym TSV loader, on a TSV written from the 4 real MassSpecGym debug spectra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msid.io import InputFileError, read_spectra
from msid.io.massspecgym import COLUMNS, load_massspecgym
from msid.store import SpectrumStore


def _fmt(values) -> str:
    return ",".join(f"{v:.6f}" for v in values)


@pytest.fixture(scope="module")
def msg_rows(data_dir):
    """The real spectra as MassSpecGym TSV rows (peaks as comma-separated strings)."""
    rows = []
    for r in read_spectra(data_dir / "massspecgym_debug_5_train.mgf.gz"):
        p = r.params
        rows.append({
            "identifier": str(p["identifier"]), "mzs": _fmt(r.mz), "intensities": _fmt(r.intensity),
            "smiles": p["smiles"], "inchikey": p["inchi_aux"], "formula": p["formula"],
            "precursor_formula": "", "parent_mass": p["parent_mass"],
            "precursor_mz": p["precursor_mz"], "adduct": p["adduct"],
            "instrument_type": p["instrument_type"], "collision_energy": p["collision_energy"],
            "fold": "train",
        })
    assert len(rows) == 4
    return rows


def test_massspecgym_tsv_to_store(msg_rows, data_dir, tmp_path):
    good = msg_rows
    bad = [
        {**good[0], "identifier": "bad_len", "intensities": "1.0,2.0"},
        {**good[0], "identifier": "bad_smiles", "smiles": "C1CC(", "inchikey": ""},
        {**good[0], "identifier": "bad_ik", "inchikey": "AAAAAAAAAAAAAA-UHFFFAOYSA-N"},
        {**good[0], "identifier": "bad_num", "mzs": "100.0,abc", "intensities": "1,2"},
        {**good[0], "identifier": "bad_neg", "intensities": good[0]["intensities"]
         .replace(good[0]["intensities"].split(",")[0], "-1.0", 1)},
        {**good[0], "identifier": "no_peaks", "mzs": "", "intensities": ""},
        {**good[0], "identifier": "no_prec", "precursor_mz": ""},
        {**good[0], "identifier": "bad_fold", "fold": "holdout"},
        {**good[1]},  # duplicate identifier
    ]
    shuffled_peaks = dict(good[2])
    mz = np.array(good[2]["mzs"].split(","), float)[::-1]
    it = np.array(good[2]["intensities"].split(","), float)[::-1]
    shuffled_peaks.update(mzs=_fmt(mz), intensities=_fmt(it))
    df = pd.DataFrame([good[0], good[1], shuffled_peaks, good[3], *bad], columns=list(COLUMNS))
    tsv = tmp_path / "MassSpecGym.tsv"
    df.to_csv(tsv, sep="\t", index=False)
    out = tmp_path / "msg.h5"
    stats = load_massspecgym(tsv, out, split=data_dir / "massspecgym_debug_5_split_train.tsv")
    assert stats.read == 13 and stats.stored == 4 and sum(stats.quarantined.values()) == 9
    with SpectrumStore(out) as st:
        md = st.metadata
        assert md["id"].tolist() == ["1", "2", "3", "5"]
        # fold from the split table: identifier 5 is MassSpecGym test
        assert md.set_index("id")["fold"].to_dict() == {"1": "train", "2": "train",
                                                        "3": "train", "5": "test"}
        assert (md["adduct"] == "[M+H]+").all() and (md["ion_mode"] == "positive").all()
        assert (md["charge"] == 1).all()
        assert md["precursor_mz"].iloc[0] == pytest.approx(294.20637)
        assert md["inchikey"].iloc[0].startswith("UJNSFDHVIBGEJZ")
        assert md["collision_energy"].iloc[0] == "60.0"
        for i in range(4):
            mz_i, it_i = st.peaks(i)
            assert np.all(np.diff(mz_i) > 0) and it_i.max() == pytest.approx(1.0)
            assert len(mz_i) == len(good[i]["mzs"].split(","))
        q = st.quarantine.set_index("record_id")["reason"].to_dict()
    assert "differ in length" in q["bad_len"]
    assert "invalid SMILES" in q["bad_smiles"]
    assert "InChIKey does not match" in q["bad_ik"]
    assert "unparseable peak list" in q["bad_num"]
    assert "negative intensity" in q["bad_neg"]
    assert "no peaks" in q["no_peaks"]
    assert "precursor" in q["no_prec"]
    assert "unknown fold" in q["bad_fold"]
    assert q["2"] == "duplicate identifier"
    # the store feeds the training dataset directly
    from msid.spectra_dataset import SpectraDataset
    assert len(SpectraDataset(out, rows=[0, 1, 2])) == 3


def test_massspecgym_fold_column_without_split(msg_rows, tmp_path):
    rows = [dict(r) for r in msg_rows]
    rows[0]["fold"], rows[1]["fold"], rows[2]["fold"] = "val", "test", ""
    tsv = tmp_path / "m.tsv"
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(tsv, sep="\t", index=False)
    load_massspecgym(tsv, tmp_path / "m.h5")
    with SpectrumStore(tmp_path / "m.h5") as st:
        assert st.metadata["fold"].tolist() == ["val", "test", "", "train"]


def test_massspecgym_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_massspecgym(tmp_path / "missing.tsv", tmp_path / "x.h5")
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("a\tb\n1\t2\n")
    with pytest.raises(InputFileError, match=r"wrong\.tsv.*missing columns"):
        load_massspecgym(wrong, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
