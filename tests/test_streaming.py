"""mzML/mzXML are read spectrum by spectrum, MS2 only, with the records of a whole-file load."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import pyopenms as oms
import pytest

from msid.io import raw as raw_io
from msid.io import read_spectra
from msid.io.memory_bench import bench_memory, build_run
from msid.io.raw import RawSpectrum, stream_openms
from msid.store import QuarantineRecord

RUNS = __import__("conftest").RESOURCES / "runs"
DATA = __import__("conftest").DATA


def whole_file_records(path: Path) -> list[RawSpectrum]:
    """The reader as it was before streaming: load the whole run (MS1 included), then walk it."""
    exp = oms.MSExperiment()
    (oms.MzMLFile() if raw_io.sniff_format(path) == "mzml" else oms.MzXMLFile()).load(str(path),
                                                                                     exp)
    instrument = exp.getInstrument().getName() or ""
    picker = oms.PeakPickerHiRes()
    out = []
    for k, spec in enumerate(exp.getSpectra()):
        native_id = spec.getNativeID() or f"index={k}"
        if spec.getMSLevel() != 2:
            continue
        if spec.getType() == oms.SpectrumSettings.SpectrumType.PROFILE:
            picked = oms.MSSpectrum()
            picker.pick(spec, picked)
            peaks, centroided = picked.get_peaks(), "PeakPickerHiRes"
        else:
            peaks, centroided = spec.get_peaks(), "as acquired"
        mz, inten = (np.asarray(a) for a in peaks)
        params: dict[str, object] = {"native_id": native_id, "ms_level": 2,
                                     "retention_time": spec.getRT(),
                                     "instrument_type": instrument, "centroiding": centroided}
        polarity = spec.getInstrumentSettings().getPolarity()
        if polarity == oms.IonSource.Polarity.POSITIVE:
            params["ionmode"] = "positive"
        elif polarity == oms.IonSource.Polarity.NEGATIVE:
            params["ionmode"] = "negative"
        if spec.getPrecursors():
            p = spec.getPrecursors()[0]
            params["precursor_mz"] = p.getMZ() or None
            if p.getCharge():
                params["charge"] = int(p.getCharge())
            energy = p.getActivationEnergy() or (p.getMetaValue("collision energy")
                                                 if p.metaValueExists("collision energy") else 0)
            if energy:
                params["collision_energy"] = f"{float(energy):g}"
        out.append(RawSpectrum(native_id, mz.astype(np.float64), inten.astype(np.float32),
                               params))
    return out


def _assert_same(got: list, want: list[RawSpectrum]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, RawSpectrum)
        assert g.record_id == w.record_id and g.params == w.params
        assert g.mz.dtype == w.mz.dtype and g.intensity.dtype == w.intensity.dtype
        assert np.array_equal(g.mz, w.mz) and np.array_equal(g.intensity, w.intensity)


def _plain(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / src.name.removesuffix(".gz")
    out.write_bytes(gzip.decompress(src.read_bytes()))
    return out


def _profile_run(tmp_path: Path) -> Path:
    """Some MS2 spectra of peptide_qc1 turned into profile spectra, next to centroided ones."""
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUNS / "peptide_qc1.mzML.gz"), exp)
    out = oms.MSExperiment()
    out.setInstrument(exp.getInstrument())
    for i, spec in enumerate(list(exp.getSpectra())[:40]):
        if spec.getMSLevel() == 2 and i % 2:
            mz, inten = spec.get_peaks()
            grid = (mz[:, None] + np.linspace(-0.006, 0.006, 7)[None, :]).ravel()
            prof = (inten[:, None] * np.exp(-np.linspace(-2, 2, 7) ** 2)[None, :]).ravel()
            spec = oms.MSSpectrum(spec)
            spec.set_peaks((grid, prof.astype(np.float32)))
            spec.setType(oms.SpectrumSettings.SpectrumType.PROFILE)
        out.addSpectrum(spec)
    oms.MzMLFile().store(str(tmp_path / "profile.mzML"), out)
    return tmp_path / "profile.mzML"


@pytest.mark.parametrize("name", ["pestmix_dda.mzML.gz", "peptide_qc1.mzML.gz"])
def test_streamed_records_equal_whole_file_load(name, tmp_path):
    gz = RUNS / name
    want = whole_file_records(gz)
    _assert_same(list(read_spectra(gz)), want)  # gzipped, as shipped
    _assert_same(list(read_spectra(_plain(gz, tmp_path))), want)


def test_streamed_mzxml_and_profile_spectra_equal_whole_file_load(tmp_path, data_dir):
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUNS / "pestmix_dda.mzML.gz"), exp)
    oms.MzXMLFile().store(str(tmp_path / "run.mzXML"), exp)
    _assert_same(list(read_spectra(tmp_path / "run.mzXML")),
                 whole_file_records(tmp_path / "run.mzXML"))
    _assert_same(list(read_spectra(data_dir / "matchms_testdata.mzML.gz")),
                 whole_file_records(data_dir / "matchms_testdata.mzML.gz"))
    profile = _profile_run(tmp_path)
    got = list(read_spectra(profile))
    assert {r.params["centroiding"] for r in got} == {"PeakPickerHiRes", "as acquired"}
    _assert_same(got, whole_file_records(profile))


@pytest.mark.parametrize("name", ["pestmix_dda.mzML.gz", "peptide_qc1.mzML.gz"])
def test_ms1_spectra_are_never_materialised(name, monkeypatch):
    seen: list[raw_io._MS2Consumer] = []

    def spy(emit):
        seen.append(raw_io._MS2Consumer(emit))
        return seen[-1]

    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUNS / name), exp)
    levels = [s.getMSLevel() for s in exp.getSpectra()]
    assert levels.count(1) > 0  # the run has MS1 spectra ...
    n = sum(1 for _ in stream_openms(RUNS / name, consumer=spy))
    assert n == levels.count(2)
    assert dict(seen[0].levels) == {2: n}  # ... the parser never hands one over


def test_stopping_early_stops_the_parser_thread():
    before = threading.active_count()
    it = stream_openms(RUNS / "pestmix_dda.mzML.gz")
    first = [next(it) for _ in range(3)]
    assert len(first) == 3 and threading.active_count() == before + 1
    it.close()
    assert threading.active_count() == before
    for rec in stream_openms(RUNS / "pestmix_dda.mzML.gz"):  # and a break does the same
        first_again = rec
        break
    assert first_again.record_id == first[0].record_id and threading.active_count() == before


def test_queue_bounds_records_parsed_ahead(monkeypatch):
    """The parser runs at most STREAM_QUEUE records ahead of a slow reader."""
    monkeypatch.setattr(raw_io, "STREAM_QUEUE", 4)
    made: list[int] = []

    class Counting(raw_io._MS2Consumer):
        def _record(self, spec, k):
            made.append(k)
            return super()._record(spec, k)

    it = stream_openms(RUNS / "pestmix_dda.mzML.gz", consumer=Counting)
    next(it)
    threading.Event().wait(0.5)  # give the parser time to run ahead as far as it can
    assert 1 <= len(made) <= 1 + 4 + 1  # taken + queued + one blocked in put
    it.close()


def test_errors_in_the_parser_thread_reach_the_reader(monkeypatch):
    class Boom(raw_io._MS2Consumer):
        def _record(self, spec, k):
            if k == 5:
                raise ValueError("bad spectrum 5")
            return super()._record(spec, k)

    got = []
    with pytest.raises(ValueError, match="bad spectrum 5"):
        got.extend(stream_openms(RUNS / "pestmix_dda.mzML.gz", consumer=Boom))
    assert len(got) == 5


def test_cut_run_streams_then_salvages_without_repeats(tmp_path):
    """Cut mid-file: pyOpenMS hands over what it parsed, the salvage path the rest before the
    cut; together the intact file's first spectra, once each, then where reading stopped."""
    plain = gzip.decompress((RUNS / "pestmix_dda.mzML.gz").read_bytes())
    (tmp_path / "cut.mzML").write_bytes(plain[: len(plain) // 2])
    whole = {r.record_id: r for r in whole_file_records(RUNS / "pestmix_dda.mzML.gz")}
    recs = list(read_spectra(tmp_path / "cut.mzML"))
    spectra = [r for r in recs if isinstance(r, RawSpectrum)]
    ids = [r.record_id for r in spectra]
    assert len(ids) == len(set(ids)) == 108 and ids == list(whole)[:108]
    assert isinstance(recs[-1], QuarantineRecord) and "truncated" in recs[-1].reason
    for r in spectra:
        assert np.array_equal(r.mz, whole[r.record_id].mz)


def test_memory_bench_runs_and_reports(tmp_path, data_dir):
    src = data_dir / "matchms_testdata.mzML.gz"
    assert build_run([src], 2, tmp_path / "x2.mzML") == 2 * sum(
        1 for _ in _levels(src))
    lines: list[str] = []
    res = bench_memory(tmp_path / "work", n=2, sources=[src], log=lines.append)
    assert {"n", "spectra_1x", "spectra_nx", "seconds_1x", "seconds_nx", "peak_rss_1x_mb",
            "peak_rss_nx_mb", "ratio"} <= set(res)
    assert res["spectra_nx"] == 2 * res["spectra_1x"] == 20
    assert res["peak_rss_nx_mb"] > 0 and res["ratio"] > 0
    assert any("peak RSS 2x / 1x" in line for line in lines)
    ids = [r.record_id for r in read_spectra(tmp_path / "work" / "run_x2.mzML")]
    assert len(ids) == len(set(ids)) == 20


def _levels(path: Path) -> list[int]:
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    return [s.getMSLevel() for s in exp.getSpectra()]


@pytest.mark.parametrize(("name", "has_energy", "fmt"), [
    ("pestmix_dda.mzML.gz", False, "mzml"), ("peptide_qc1.mzML.gz", True, "mzml"),
    ("peptide_qc1.mzML.gz", True, "mzxml")])
def test_pyopenms_and_damaged_file_paths_read_the_same_fields(name, has_energy, fmt, tmp_path):
    """Both readers of an mzML or mzXML (pyOpenMS streaming; pyteomics for a damaged file) give
    a record the same precursor, charge, retention time, collision energy and instrument, the
    energy included where pyOpenMS keeps it as a meta value (mzML) or drops it (mzXML)."""
    gz = RUNS / name
    if fmt == "mzxml":  # the same run as mzXML, as pyOpenMS writes it (collisionEnergy="25.0")
        exp = oms.MSExperiment()
        oms.MzMLFile().load(str(gz), exp)
        gz = tmp_path / "run.mzXML"
        oms.MzXMLFile().store(str(gz), exp)
    fast = [r for r in read_spectra(gz) if isinstance(r, RawSpectrum)]
    salvaged = [r for r in raw_io._salvage_xml(gz, fmt, RuntimeError("test"))
                if isinstance(r, RawSpectrum)]
    assert len(fast) == len(salvaged) > 0
    assert all(("collision_energy" in r.params) == has_energy for r in fast)
    assert fmt == "mzxml" or fast[0].params["instrument_type"]  # mzML: Q Exactive, TripleTOF
    for a, b in zip(fast, salvaged, strict=True):
        assert a.record_id == b.record_id
        for key in ("precursor_mz", "charge", "collision_energy", "ionmode", "instrument_type"):
            assert a.params.get(key) == b.params.get(key), (a.record_id, key)
        assert a.params["retention_time"] == pytest.approx(b.params["retention_time"])


def test_damaged_file_path_finds_the_instrument_model_in_a_parameter_group(tmp_path):
    """The instrument model as ProteoWizard often writes it (in a referenceableParamGroup the
    instrument configuration refers to) is found by its PSI-MS parent term, never a
    component's or the serial number's term; a header without a model gives ''."""
    import gzip

    with gzip.open(RUNS / "pestmix_dda.mzML.gz") as fh:
        data = fh.read()
    model = b'<cvParam cvRef="MS" accession="MS:1002533" name="TripleTOF 6600" />'
    assert model in data
    group = (b'<referenceableParamGroupList count="1"><referenceableParamGroup id="CommonIC">'
             b'<cvParam cvRef="MS" accession="MS:1000529" name="instrument serial number" '
             b'value="123"/>' + model + b"</referenceableParamGroup>"
             b"</referenceableParamGroupList>\n")
    grouped = data.replace(model, b'<referenceableParamGroupRef ref="CommonIC"/>').replace(
        b"<softwareList", group + b"<softwareList", 1)
    assert raw_io.header_instrument(grouped, "mzml") == "TripleTOF 6600"
    assert raw_io.header_instrument(data.replace(model, b""), "mzml") == ""

