"""Property: real files cut or corrupted at random points lose only what the damage touched.

For each format msid reads (mzML with isolation-window precursors, mzXML, MGF, MSP; plain and
gzip) hypothesis picks a damage point in a real file, then:
* the reader raises nothing but :class:`InputFileError` (and only when no record was complete
  before the damage);
* every record that ended before the damage is stored, with the same peaks as from the intact
  file;
* no partial output or temporary file remains, whether the conversion succeeds or fails.
Examples are bounded (a few dozen per case) to keep the whole module under two minutes.
"""

from __future__ import annotations

import functools
import gzip
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from msid.convert import convert_file
from msid.io import InputFileError
from msid.store import SpectrumStore

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
RUN = ROOT / "resources" / "runs" / "pestmix_dda.mzML.gz"
#: damaged mzML/mzXML are at most this long (every example is a cut file; keeps examples fast)
XML_LIMIT = 200_000
SETTINGS = settings(max_examples=12, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Source:
    """An intact real file: its bytes, and per stored record its end offset and peaks."""

    name: str
    data: bytes
    ends: dict[str, int]  # record id -> offset just past the record (and its line end)
    peaks: dict[str, np.ndarray]

    def __repr__(self) -> str:
        return f"Source({self.name}, {len(self.data)} bytes, {len(self.peaks)} records)"


def _store(path: Path, out: Path) -> dict[str, np.ndarray]:
    convert_file(path, out, progress=False)
    with SpectrumStore(out) as st:
        return {rid: st.peaks(i)[0].copy() for i, rid in enumerate(st.metadata["id"])}


def _source(name: str, data: bytes, ends: dict[str, int]) -> Source:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / name).write_bytes(data)
        peaks = _store(Path(d) / name, Path(d) / "s.h5")
    assert peaks and set(peaks) <= set(ends)
    return Source(name, data, ends, peaks)


@functools.cache
def sources() -> dict[str, Source]:
    out = {}
    mgf = gzip.decompress((DATA / "gnps_pesticides_matchms_train.mgf.gz").read_bytes())
    ends = {}
    for m in re.finditer(rb"BEGIN IONS\n.*?END IONS\n", mgf, re.S):
        rid = re.search(rb"^SPECTRUMID=(.*)$", m.group(0), re.M).group(1).decode()
        ends[rid] = m.end()
    out["mgf"] = _source("lib.mgf", mgf, ends)
    msp = (DATA / "massbank_ei_5.msp").read_bytes()
    ends = {}
    for m in re.finditer(rb"^NAME:.*?(?=^NAME:|\Z)", msp, re.S | re.M):
        rid = re.search(rb"^SPECTRUM_ID: (.*)$", m.group(0), re.M).group(1).decode()
        last = list(re.finditer(rb"^\d.*\n", m.group(0), re.M))[-1]
        ends[rid] = m.start() + last.end()
    out["msp"] = _source("lib.msp", msp, ends)
    run = gzip.decompress(RUN.read_bytes())
    ends = {m.group(1).decode(): m.end() + 1
            for m in re.finditer(rb'<spectrum [^>]*?id="([^"]*)".*?</spectrum>', run, re.S)}
    out["mzml"] = _source("run.mzML", run, ends)
    import pyopenms as oms

    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUN), exp)
    with tempfile.TemporaryDirectory() as d:
        oms.MzXMLFile().store(str(Path(d) / "run.mzXML"), exp)
        mzxml = (Path(d) / "run.mzXML").read_bytes()
    # MS2 scans are nested in their MS1 scan; a reader gets them when the outer scan closes
    ends, depth, group = {}, 0, []
    for m in re.finditer(rb'<scan num="(\d+)"|</scan>', mzxml):
        if m.group(1):
            depth += 1
            group.append(f"scan={m.group(1).decode()}")
            continue
        depth -= 1
        if depth == 0:
            ends.update(dict.fromkeys(group, m.end() + 1))
            group = []
    out["mzxml"] = _source("run.mzXML", mzxml, ends)
    return out


def _check(src: Source, damaged: bytes, suffix: str, intact_until: int) -> None:
    """Convert ``damaged``; records of ``src`` that end by ``intact_until`` must survive."""
    expected = {rid for rid in src.peaks if src.ends[rid] <= intact_until}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        path, out = d / (src.name + suffix), d / "out" / "s.h5"
        path.write_bytes(damaged)
        try:
            got = _store(path, out)
        except InputFileError:
            got = None
        left = sorted(p.name for p in (d / "out").iterdir()) if (d / "out").exists() else []
    if got is None:
        assert not expected, f"whole file rejected, but {len(expected)} records were intact"
        assert left == [], left
        return
    assert left == ["s.h5"], left  # the store and nothing else (no temporary)
    missing = expected - set(got)
    assert not missing, f"{len(missing)} intact records lost, e.g. {sorted(missing)[:3]}"
    for rid in expected:
        assert np.array_equal(got[rid], src.peaks[rid]), rid


def _corrupt(data: bytes, at: int, junk: bytes) -> bytes:
    return data[:at] + junk + data[at + len(junk):]


@pytest.mark.parametrize("fmt", ["mgf", "msp", "mzml", "mzxml"])
@SETTINGS
@given(frac=st.floats(0, 1))
def test_cut_anywhere(fmt, frac):
    src = sources()[fmt]
    n = min(len(src.data), XML_LIMIT) if fmt in ("mzml", "mzxml") else len(src.data)
    at = int(frac * n)
    _check(src, src.data[:at], "", at)


@pytest.mark.parametrize("fmt", ["mgf", "msp", "mzml"])
@SETTINGS
@given(frac=st.floats(0, 1), junk=st.binary(min_size=1, max_size=48))
@example(frac=0.7545789989841103, junk=b"--------:   ")  # a tag name lxml's QName refuses
def test_corrupt_anywhere(fmt, frac, junk):
    src = sources()[fmt]
    limit = XML_LIMIT if fmt == "mzml" else len(src.data)
    at = int(frac * (limit - 1))
    _check(src, _corrupt(src.data, at, junk)[:limit], "", min(at, limit))


@pytest.mark.parametrize("fmt", ["mgf", "msp", "mzml"])
@SETTINGS
@given(frac=st.floats(0, 1))
def test_gzip_cut_anywhere(fmt, frac):
    src = sources()[fmt]
    packed = gzip.compress(src.data, mtime=0)
    limit = 40_000 if fmt == "mzml" else len(packed)  # ~280 kB of mzML
    cut = packed[: int(frac * limit)]
    readable = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut))
    _check(src, cut, ".gz", readable)
