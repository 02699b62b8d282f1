"""Read spectra from raw runs (mzML, mzXML; pyOpenMS) and libraries (MGF: pyteomics; MSP: matchms).

Every reader yields, in file order, either a :class:`RawSpectrum` (peaks as found, metadata keys
lower-cased) or a :class:`~msid.store.QuarantineRecord` for a record it could not parse. A file that
cannot be opened at all raises :class:`InputFileError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msid.io.errors import InputFileError
from msid.store import QuarantineRecord

FORMATS = ("mzml", "mzxml", "mgf", "msp")


@dataclass
class RawSpectrum:
    """A spectrum as read, before any filtering."""

    record_id: str
    mz: np.ndarray
    intensity: np.ndarray
    params: dict[str, object] = field(default_factory=dict)


def sniff_format(path: str | os.PathLike) -> str:
    """File format from the name (``.gz`` allowed): one of :data:`FORMATS`."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in FORMATS:
        return suffix
    raise InputFileError(path, f"unknown spectrum file type '.{suffix}' "
                               f"(expected one of {', '.join('.' + f for f in FORMATS)}, "
                               "optionally .gz)")


def read_spectra(path: str | os.PathLike) -> Iterator[RawSpectrum | QuarantineRecord]:
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    fmt = sniff_format(path)
    reader = {"mzml": _read_openms, "mzxml": _read_openms, "mgf": _read_mgf, "msp": _read_msp}
    yield from reader[fmt](path)


# -- mzML / mzXML -----------------------------------------------------------------------------
def _read_openms(path: Path) -> Iterator[RawSpectrum | QuarantineRecord]:
    import pyopenms as oms

    exp = oms.MSExperiment()
    fmt = sniff_format(path)
    loader = oms.MzMLFile() if fmt == "mzml" else oms.MzXMLFile()
    try:
        loader.load(str(path), exp)
    except Exception as e:  # pyOpenMS raises its own RuntimeError subclasses
        if fmt == "mzml":  # a truncated/damaged mzML: keep every spectrum before the damage
            yield from _salvage_mzml(path, e)
            return
        raise InputFileError(path, f"pyOpenMS cannot read this {fmt} file: {e}") from e
    instrument = exp.getInstrument().getName() or ""
    picker = oms.PeakPickerHiRes()
    for k, spec in enumerate(exp.getSpectra()):
        native_id = spec.getNativeID() or f"index={k}"
        if spec.getMSLevel() != 2:
            continue
        if spec.getType() == oms.SpectrumSettings.SpectrumType.PROFILE:
            picked = oms.MSSpectrum()
            picker.pick(spec, picked)
            spec_peaks = picked.get_peaks()
            centroided = "PeakPickerHiRes"
        else:
            spec_peaks = spec.get_peaks()
            centroided = "as acquired"
        mz, inten = (np.asarray(a) for a in spec_peaks)
        precursors = spec.getPrecursors()
        params: dict[str, object] = {
            "native_id": native_id,
            "ms_level": 2,
            "retention_time": spec.getRT(),
            "instrument_type": instrument,
            "centroiding": centroided,
        }
        polarity = spec.getInstrumentSettings().getPolarity()
        if polarity == oms.IonSource.Polarity.POSITIVE:
            params["ionmode"] = "positive"
        elif polarity == oms.IonSource.Polarity.NEGATIVE:
            params["ionmode"] = "negative"
        if precursors:
            p = precursors[0]
            params["precursor_mz"] = p.getMZ() or None
            if p.getCharge():
                params["charge"] = int(p.getCharge())
            if p.getActivationEnergy():
                params["collision_energy"] = f"{p.getActivationEnergy():g}"
        yield RawSpectrum(native_id, mz.astype(np.float64), inten.astype(np.float32), params)


def _salvage_mzml(path: Path, error: Exception) -> Iterator[RawSpectrum | QuarantineRecord]:
    """Stream a damaged mzML with pyteomics; spectra up to the damage are kept, the rest reported.

    Profile spectra cannot be centroided on this path, so they are quarantined.
    """
    from pyteomics import mzml

    n = 0
    try:
        with mzml.MzML(_open_binary(path), use_index=False, decode_binary=True) as reader:
            for spec in reader:
                n += 1
                if spec.get("ms level") != 2:
                    continue
                rid = str(spec.get("id", f"index={n - 1}"))
                if "profile spectrum" in spec:
                    yield QuarantineRecord(str(path), rid, "profile spectrum in a damaged mzML "
                                           "(cannot centroid without pyOpenMS)")
                    continue
                params: dict[str, object] = {"native_id": rid, "ms_level": 2}
                try:
                    ion = spec["precursorList"]["precursor"][0]["selectedIonList"]["selectedIon"][0]
                    params["precursor_mz"] = float(ion["selected ion m/z"])
                    if ion.get("charge state"):
                        params["charge"] = int(ion["charge state"])
                except (KeyError, IndexError, TypeError):
                    pass
                try:
                    scan = spec["scanList"]["scan"][0]
                    rt = scan["scan start time"]
                    unit = getattr(rt, "unit_info", "minute")
                    params["retention_time"] = float(rt) * (60.0 if unit == "minute" else 1.0)
                except (KeyError, IndexError, TypeError):
                    pass
                if "positive scan" in spec:
                    params["ionmode"] = "positive"
                elif "negative scan" in spec:
                    params["ionmode"] = "negative"
                yield RawSpectrum(rid, np.asarray(spec["m/z array"], dtype=np.float64),
                                  np.asarray(spec["intensity array"], dtype=np.float32), params)
    except Exception as e:
        if n == 0:
            raise InputFileError(path, f"not a readable mzML file ({error}; {e})") from e
        yield QuarantineRecord(str(path), f"after index={n - 1}",
                               f"mzML damaged or truncated after {n} spectra: {e}")
        return
    if n == 0:
        raise InputFileError(path, f"pyOpenMS cannot read this mzML file: {error}")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


# -- MGF ----------------------------------------------------------------------------------------
_BLOCK = re.compile(r"^BEGIN IONS\s*$(.*?)^END IONS\s*$", re.MULTILINE | re.DOTALL)


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _mgf_record(entry: dict, index: int) -> RawSpectrum:
    params = {str(k).lower(): v for k, v in entry.get("params", {}).items()}
    rid = str(params.get("spectrum_id") or params.get("spectrumid") or params.get("title")
              or params.get("identifier") or f"index={index}")
    mz = np.asarray(entry.get("m/z array", []), dtype=np.float64)
    inten = np.asarray(entry.get("intensity array", []), dtype=np.float32)
    return RawSpectrum(rid, mz, inten, params)


def _read_mgf(path: Path) -> Iterator[RawSpectrum | QuarantineRecord]:
    from pyteomics import mgf

    try:
        with _open_text(path) as fh:
            text = fh.read()
    except (OSError, EOFError) as e:
        raise InputFileError(path, f"cannot read file ({e})") from e
    blocks = _BLOCK.findall(text)
    if not blocks:
        raise InputFileError(path, "no 'BEGIN IONS ... END IONS' block: not an MGF file")
    n_open = len(re.findall(r"^BEGIN IONS\s*$", text, re.MULTILINE))
    try:  # fast path: pyteomics over the whole file
        entries = list(mgf.read(io.StringIO(text), convert_arrays=1, read_charges=False,
                                read_ions=False, use_index=False))
        if len(entries) != len(blocks):
            raise ValueError("block count mismatch")
        for i, entry in enumerate(entries):
            yield _mgf_record(entry, i)
    except Exception:  # slow path: one pyteomics reader per block, so one bad block is one record
        for i, block in enumerate(blocks):
            try:
                (entry,) = list(mgf.read(io.StringIO(f"BEGIN IONS{block}END IONS\n"),
                                         convert_arrays=1, read_charges=False,
                                         read_ions=False, use_index=False))
                yield _mgf_record(entry, i)
            except Exception as e:
                title = re.search(r"^TITLE=(.*)$", block, re.MULTILINE)
                rid = title.group(1).strip() if title else f"index={i}"
                yield QuarantineRecord(str(path), rid, f"unparsable MGF record: {e}")
    if n_open > len(blocks):
        yield QuarantineRecord(str(path), f"index={len(blocks)}",
                               f"{n_open - len(blocks)} MGF block(s) without END IONS "
                               "(truncated file?)")


# -- MSP ----------------------------------------------------------------------------------------
def _read_msp(path: Path) -> Iterator[RawSpectrum | QuarantineRecord]:
    from matchms.importing.load_from_msp import parse_msp_file

    tmp = None
    src = path
    try:
        if path.name.lower().endswith(".gz"):  # matchms reads plain text files only
            fd, tmp = tempfile.mkstemp(suffix=".msp")
            with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as fin:
                shutil.copyfileobj(fin, out)
            src = Path(tmp)
        try:
            for i, entry in enumerate(parse_msp_file(str(src))):
                params = {str(k).lower(): v for k, v in entry.get("params", {}).items()}
                rid = str(params.get("spectrum_id") or params.get("db#") or params.get("name")
                          or f"index={i}")
                yield RawSpectrum(rid, np.asarray(entry["m/z array"], dtype=np.float64),
                                  np.asarray(entry["intensity array"], dtype=np.float32), params)
        except (OSError, EOFError, ValueError) as e:
            raise InputFileError(path, f"cannot parse MSP file ({e})") from e
    finally:
        if tmp:
            os.unlink(tmp)
