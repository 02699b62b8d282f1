"""msid's fast conversion and cleaning equal matchms' own per-spectrum chains on real data.

Conversion memoises matchms' ``default_filters`` on the metadata they read, and cleaning runs
the peak filters over the flat peak arrays of a whole batch; both must give exactly what
matchms gives spectrum by spectrum, record for record (peaks, metadata and reject reasons).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from matchms import Spectrum
from matchms.filtering import default_filters, derive_inchikey_from_inchi, derive_smiles_from_inchi

from msid.convert import check_peaks, check_record, harmonise, peaks_in_order, store_fields
from msid.io import RawSpectrum, read_spectra
from msid.preprocess import PreprocessConfig, apply_chain, build_chain, clean_batch
from msid.spectrum import matchms_to_record
from msid.store import SpectrumRecord

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "resources/massbank_esi/massbank_esi_msms.mgf.gz"
FILES = [ROOT / "resources/runs/pestmix_dda.mzML.gz", ROOT / "resources/runs/peptide_qc1.mzML.gz",
         ROOT / "resources/runs/gcms_ei_demo.msp", ROOT / "tests/data/matchms_testdata.mzML.gz",
         ROOT / "tests/data/gnps_pesticides_matchms_train.mgf.gz",
         ROOT / "tests/data/massbank_ei_5.msp"]


def matchms_harmonise(raw: RawSpectrum, source_file: str) -> SpectrumRecord | str:
    """The reference: one matchms Spectrum per record through ``default_filters``."""
    checked, reason = check_record(raw)
    if checked is None:
        return reason
    try:
        spectrum = Spectrum(checked.mz, checked.intensity, metadata=dict(checked.params),
                            metadata_harmonization=True)
        spectrum = default_filters(spectrum)
        if not spectrum.get("smiles") and spectrum.get("inchi"):
            spectrum = derive_inchikey_from_inchi(derive_smiles_from_inchi(spectrum))
        extra = store_fields(checked, source_file)
    except Exception as e:
        return f"matchms rejected the record: {e}"
    return matchms_to_record(spectrum, extra=extra)


def same_record(a: SpectrumRecord | str, b: SpectrumRecord | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return (a.meta == b.meta and np.array_equal(a.mz, b.mz)
            and np.array_equal(a.intensity, b.intensity)
            and a.intensity.dtype == b.intensity.dtype)


def raw_records(path: Path, n: int | None = None) -> list[RawSpectrum]:
    return [r for r in itertools.islice(read_spectra(path), n) if isinstance(r, RawSpectrum)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_harmonise_equals_matchms_on_runs_and_fixtures(path: Path) -> None:
    recs = raw_records(path)
    assert recs
    for r in recs:
        assert same_record(harmonise(r, path.name), matchms_harmonise(r, path.name)), r.record_id


def test_harmonise_equals_matchms_on_the_library_sample() -> None:
    """Every 8th record of the shipped MassBank library (8k records, ~600 compounds' worth of
    repeated metadata), plus records whose metadata are edited the ways users' files differ."""
    recs = raw_records(LIBRARY)[::8]
    edits = []
    for k, r in enumerate(recs[:300]):
        p = dict(r.params)
        match k % 6:
            case 0:
                p.pop("compound_name", None)  # the name comes from the title
            case 1:
                p["compound_name"] = f"{p.get('compound_name', 'x')} [M+Na]+"  # adduct in name
            case 2:
                p.pop("ionmode", None)  # ion mode from the adduct / charge
            case 3:
                p["charge"] = "0"
            case 4:
                p.pop("smiles", None)  # SMILES repaired from the InChI
            case 5:
                p["precursormz"] = p.pop("pepmass", "")  # another spelling of the precursor
        edits.append(RawSpectrum(r.record_id + "-edited", r.mz, r.intensity, p))
    for r in recs + edits:
        assert same_record(harmonise(r, "lib"), matchms_harmonise(r, "lib")), r.record_id


def test_clean_batch_equals_matchms_chain() -> None:
    """The vectorised filter chain keeps exactly the peaks matchms keeps, and rejects exactly
    the spectra it rejects, with the same reason."""
    recs = []
    for path in [LIBRARY, *FILES[:2], FILES[4]]:
        for r in raw_records(path, 3000):
            rec = harmonise(r, path.name)
            if not isinstance(rec, str):
                recs.append(rec)
    # the edge cases the chain has to get right, on real peaks
    base = recs[0]
    odd = [
        SpectrumRecord(base.mz, np.zeros_like(base.intensity), dict(base.meta)),  # all zero
        SpectrumRecord(base.mz + 5000, base.intensity, dict(base.meta)),  # no peak in range
        SpectrumRecord(base.mz, base.intensity, {**base.meta, "precursor_mz": 5.0}),
        SpectrumRecord(base.mz, base.intensity, {**base.meta, "precursor_mz": float("nan")}),
        SpectrumRecord(np.linspace(50, 900, 700), np.random.default_rng(0).random(700)
                       .astype(np.float32), dict(base.meta)),  # more peaks than max_peaks
        SpectrumRecord(np.linspace(50, 900, 512), np.ones(512, np.float32), dict(base.meta)),
    ]
    for cfg in [PreprocessConfig(), PreprocessConfig(max_peaks=20, min_peaks=5,
                                                     min_relative_intensity=0.05)]:
        chain = build_chain(cfg)
        got = clean_batch(recs + odd, cfg)
        for rec, g in zip(recs + odd, got, strict=True):
            s, reason = apply_chain(chain, rec)
            if s is None:
                assert g == reason
            else:
                assert not isinstance(g, str), g
                assert np.array_equal(g[0], s.peaks.mz)
                assert np.array_equal(g[1], s.peaks.intensities.astype(np.float32))


def test_mgf_marker_scan_counts_records_as_a_line_reader_does() -> None:
    """The str.find scan that cuts streamed MGF into chunks counts what a line-by-line reader
    counts, on intact and on mangled marker sequences: every BEGIN IONS line starts a record
    (one whose END IONS is missing ends at the next BEGIN IONS), except a last one never
    closed; intact text counts as the block regex does."""
    from msid.io.mgf import BLOCK, count_blocks, split_blocks

    def by_lines(text: str) -> tuple[int, int, list[bool]]:
        closed: list[bool] = []
        for line in text.split("\n"):
            if line.startswith("BEGIN IONS") and not line[10:].strip():
                closed.append(False)
            elif line.startswith("END IONS") and not line[8:].strip() and closed:
                closed[-1] = True
        n = len(closed) - (1 if closed and not closed[-1] else 0)
        return n, len(closed), closed

    lines = ["BEGIN IONS", "END IONS", "BEGIN IONS  ", "END IONS\r", "PEPMASS=100", "101 5",
             "xBEGIN IONS", "END IONSx", ""]
    rng = np.random.default_rng(0)
    for _ in range(2000):
        text = "\n".join(rng.choice(lines, size=int(rng.integers(0, 12)))) + "\n"
        n, begins, closed = by_lines(text)
        assert count_blocks(text) == (n, begins)
        assert [c for _, c in split_blocks(text)] == closed
    intact = "".join(f"BEGIN IONS\nTITLE=r{i}\n100 {i + 1}\nEND IONS\n\n" for i in range(5))
    assert count_blocks(intact) == (len(BLOCK.findall(intact)), 5)


def test_chunk_peak_screen_agrees_with_check_peaks():
    """``peaks_in_order`` passes exactly the records ``check_peaks`` leaves as they are."""
    real = [r for r in itertools.islice(read_spectra(FILES[4]), 40) if isinstance(r, RawSpectrum)]
    assert len(real) >= 20
    base = real[0]
    nan = base.intensity.copy()
    nan[1] = np.nan
    neg = base.intensity.copy()
    neg[-1] = -1.0
    zero_mz = base.mz.copy()
    zero_mz[0] = 0.0
    shuffled = base.mz[::-1].copy()
    broken = [RawSpectrum("nan", base.mz, nan, base.params),
              RawSpectrum("negative", base.mz, neg, base.params),
              RawSpectrum("zero m/z", zero_mz, base.intensity, base.params),
              RawSpectrum("unsorted", shuffled, base.intensity, base.params),
              RawSpectrum("empty", base.mz[:0], base.intensity[:0], base.params),
              RawSpectrum("lengths", base.mz, base.intensity[:-1], base.params)]
    items = real[:10] + broken + real[10:]  # defects between good records, not at the ends
    passed = peaks_in_order(items)
    for item, ok in zip(items, passed, strict=True):
        checked, reason = check_peaks(item)
        assert ok == (checked is item and reason == ""), item.record_id
    assert passed.sum() == len(real)
