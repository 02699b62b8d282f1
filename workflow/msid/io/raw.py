"""Read spectra from raw runs (mzML, mzXML; pyOpenMS) and libraries (MGF: pyteomics; MSP: matchms).

Every reader yields, in file order, either a :class:`RawSpectrum` (peaks as found, metadata keys
lower-cased) or a :class:`~msid.store.QuarantineRecord` for a record it could not parse. A file that
cannot be opened at all raises :class:`InputFileError` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from msid.io.errors import InputFileError
from msid.io.gz import open_binary
from msid.io.mgf import MgfChunk, mgf_chunks, read_mgf
from msid.parallel import chunks
from msid.store import FILE_DAMAGE, FILE_ENDS_EARLY, QuarantineRecord

FORMATS = ("mzml", "mzxml", "mgf", "msp")
#: a format's usual file suffix
FORMAT_SUFFIX = {"mzml": "mzML", "mzxml": "mzXML", "mgf": "mgf", "msp": "msp"}


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
    what = f"unknown spectrum file type '.{suffix}'" if suffix else "no file type in the name"
    raise InputFileError(path, f"{what} (expected one of "
                               f"{', '.join('.' + f for f in FORMATS)}, optionally .gz)")


def read_spectra(path: str | os.PathLike) -> Iterator[RawSpectrum | QuarantineRecord]:
    """Every record of ``path`` in file order: a :class:`RawSpectrum` or a named reject.

    A damaged file (cut anywhere, gzip stream cut or corrupt) yields every record before the
    damage and a :class:`QuarantineRecord` saying where it stopped. Only a file that cannot be
    read at all raises, and then always :class:`InputFileError` naming the file.
    """
    path = Path(path)
    fmt = _check_file(path)
    reader = {"mzml": _read_openms, "mzxml": _read_openms, "mgf": read_mgf, "msp": _read_msp}
    yield from _named_errors(path, fmt, reader[fmt](path))


def content_format(path: str | os.PathLike) -> str:
    """The format the start of a file's text looks like ('' when none or unreadable): for a
    file whose name promises another, so that the error can say what it is."""
    try:
        fh, _ = open_binary(Path(path))
        with fh:
            head = fh.read(8192).decode("utf-8", "replace")
    except Exception:  # a hint only: a file that cannot be read has its own error
        return ""
    if "<mzML" in head or "<indexedmzML" in head:
        return "mzml"
    if "<mzXML" in head:
        return "mzxml"
    if re.search(r"(?m)^BEGIN IONS", head):
        return "mgf"
    return "msp" if _MSP_NAME.search(head) and re.search(r"(?im)^num peaks", head) else ""


def _named_errors(path: Path, fmt: str, items: Iterator) -> Iterator:
    """``items``, with any failure a reader library raises turned into InputFileError; a file
    that is not what its name says is told what it looks like."""
    try:
        yield from items
    except InputFileError as e:
        looks = content_format(path) if f"not an {fmt.upper()} file" in e.problem else ""
        if looks and looks != fmt:
            name = FORMAT_SUFFIX[looks] if looks.startswith("mz") else looks.upper()
            suffix = FORMAT_SUFFIX[looks] + (".gz" if path.name.lower().endswith(".gz") else "")
            raise InputFileError(path, f"{e.problem}; its content looks like {name}: name it "
                                       f".{suffix}") from e
        raise
    except Exception as e:  # a reader library failed in a way no salvage path foresaw
        raise InputFileError(path, f"cannot read this {fmt} file ({type(e).__name__}: {e})") from e


def read_chunks(path: str | os.PathLike, size: int = 2000) -> Iterator[list | MgfChunk]:
    """The records of ``path`` in chunks: lists of what :func:`read_spectra` yields, except that
    MGF comes as unparsed :class:`~msid.io.mgf.MgfChunk` (parse with
    :func:`~msid.io.mgf.parse_mgf_chunk`), so that worker processes can parse it."""
    path = Path(path)
    fmt = _check_file(path)
    if fmt != "mgf":
        yield from chunks(read_spectra(path), size)
        return
    yield from _named_errors(path, fmt, (item if isinstance(item, MgfChunk) else [item]
                                         for item in mgf_chunks(path)))


def _check_file(path: Path) -> str:
    """The file's format, or InputFileError for a file that cannot be read at all."""
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a spectrum file")
    fmt = sniff_format(path)
    if not os.access(path, os.R_OK):
        raise InputFileError(path, "file is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty (no spectra)")
    return fmt


def _read_text(path: Path) -> tuple[str, str]:
    """(the file's text, problem): for a damaged gzip the text before the damage."""
    fh, gz = open_binary(path)
    with fh:
        data = fh.read()
    problem = gz.problem if gz else ""
    if problem and not data:
        raise InputFileError(path, f"not a readable gzip file ({problem})")
    # undecodable bytes and NUL (never text; a store cannot hold it) become U+FFFD
    # utf-8-sig: a byte-order mark would hide the first record's first line
    text = data.decode("utf-8-sig", errors="replace").replace("\x00", "\ufffd")
    if not text.strip():
        raise InputFileError(path, "file is empty (no spectra)")
    return text, problem


# -- mzML / mzXML -----------------------------------------------------------------------------
#: MS2 records parsed ahead of the caller; with pyOpenMS's own pool of spectra being decoded
#: (PeakFileOptions' max data pool size, 100) this bounds the memory of reading a run of any size
STREAM_QUEUE = 64


class _ParseFailed(Exception):
    """pyOpenMS stopped on the file itself (damage, not a callback of ours); ``__cause__``."""


class _Cancelled(Exception):
    """Raised in the parser thread when the caller stopped reading."""


class _MS2Consumer:
    """pyOpenMS ``MSDataConsumer``: each MS2 spectrum, as it is parsed, becomes a
    :class:`RawSpectrum` (profile spectra centroided by PeakPickerHiRes) handed to ``emit``."""

    def __init__(self, emit: Callable[[RawSpectrum], None]) -> None:
        import pyopenms as oms

        self._oms = oms
        self._emit = emit
        self._picker = oms.PeakPickerHiRes()
        self.instrument = ""
        self.levels: Counter[int] = Counter()  # MS level -> spectra seen (only 2 is decoded)
        self.error: BaseException | None = None  # what a callback of ours raised

    def setExpectedSize(self, n_spectra: int, n_chromatograms: int) -> None:
        pass

    def setExperimentalSettings(self, settings: object) -> None:
        self.instrument = settings.getInstrument().getName() or ""  # type: ignore[attr-defined]

    def consumeChromatogram(self, chromatogram: object) -> None:
        pass

    def consumeSpectrum(self, spec: object) -> None:
        try:
            k = sum(self.levels.values())
            self.levels[spec.getMSLevel()] += 1  # type: ignore[attr-defined]
            if spec.getMSLevel() == 2:  # type: ignore[attr-defined]
                self._emit(self._record(spec, k))
        except BaseException as e:  # pyOpenMS turns it into a generic RuntimeError: keep it
            self.error = e
            raise

    def _record(self, spec, k: int) -> RawSpectrum:  # spec: a pyopenms.MSSpectrum
        oms = self._oms
        native_id = spec.getNativeID() or f"index={k}"
        if spec.getType() == oms.SpectrumSettings.SpectrumType.PROFILE:
            picked = oms.MSSpectrum()
            self._picker.pick(spec, picked)
            spec_peaks = picked.get_peaks()
            centroided = "PeakPickerHiRes"
        else:
            spec_peaks = spec.get_peaks()
            centroided = "as acquired"
        mz, inten = (np.asarray(a) for a in spec_peaks)
        params: dict[str, object] = {
            "native_id": native_id,
            "ms_level": 2,
            "retention_time": spec.getRT(),
            "instrument_type": self.instrument,
            "centroiding": centroided,
        }
        polarity = spec.getInstrumentSettings().getPolarity()
        if polarity == oms.IonSource.Polarity.POSITIVE:
            params["ionmode"] = "positive"
        elif polarity == oms.IonSource.Polarity.NEGATIVE:
            params["ionmode"] = "negative"
        precursors = spec.getPrecursors()
        if precursors:
            p = precursors[0]
            params["precursor_mz"] = p.getMZ() or None
            if p.getCharge():
                params["charge"] = int(p.getCharge())
            if energy := _activation_energy(p):
                params["collision_energy"] = f"{energy:g}"
        return RawSpectrum(native_id, mz.astype(np.float64), inten.astype(np.float32), params)


def _activation_energy(precursor) -> float:  # precursor: a pyopenms.Precursor
    """The collision energy of a precursor: pyOpenMS fills ``getActivationEnergy`` for some
    writers and keeps the mzML term 'collision energy' (MS:1000045) as a meta value for
    others (ProteoWizard, OpenMS' own files), where the getter reads 0."""
    if precursor.getActivationEnergy():
        return float(precursor.getActivationEnergy())
    if precursor.metaValueExists("collision energy"):
        try:
            return float(precursor.getMetaValue("collision energy"))
        except (TypeError, ValueError):
            return 0.0
    return 0.0


def _transform(path: Path, fmt: str, consumer: _MS2Consumer) -> None:
    """Parse ``path`` spectrum by spectrum into ``consumer``; only MS2 peaks are decoded."""
    import pyopenms as oms

    reader = oms.MzMLFile() if fmt == "mzml" else oms.MzXMLFile()
    opts = reader.getOptions()
    opts.setMSLevels([2])  # MS1 spectra are skipped by the parser, their peaks never decoded
    reader.setOptions(opts)
    # skip_full_count: no counting pass over the file; the metadata pass that remains (mzML)
    # reads the instrument before the first spectrum
    if fmt == "mzml":
        reader.transform(str(path), consumer, True, False)
    else:
        reader.transform(str(path), consumer, True)


def stream_openms(path: str | os.PathLike, fmt: str | None = None,
                  consumer: Callable[[Callable[[RawSpectrum], None]], _MS2Consumer] = _MS2Consumer,
                  ) -> Iterator[RawSpectrum]:
    """The MS2 spectra of an mzML/mzXML (gz allowed) in file order, parsed on a background
    thread and handed over through a queue of :data:`STREAM_QUEUE` records, so memory stays
    bounded whatever the size of the run.

    An exception of the parser thread is raised here: the original one for a failure in the
    record code, :class:`_ParseFailed` (cause: pyOpenMS' error) when pyOpenMS stopped on the
    file. Stopping early (``close()``, ``break``) stops the parser thread.
    """
    path = Path(path)
    fmt = fmt or sniff_format(path)
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=STREAM_QUEUE)
    stop = threading.Event()

    def put(item: tuple[str, object]) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        raise _Cancelled

    cons = consumer(lambda rec: put(("record", rec)))

    def work() -> None:
        try:
            _transform(path, fmt, cons)
            end: tuple[str, object] = ("end", None)
        except BaseException as e:
            if cons.error is not None:
                err: BaseException = cons.error
            else:
                err = _ParseFailed(str(e))
                err.__cause__ = e
            end = ("error", err)
        with contextlib.suppress(_Cancelled):
            put(end)

    thread = threading.Thread(target=work, name=f"msid-read {path.name}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = q.get(timeout=1.0)
            except queue.Empty:
                if thread.is_alive():
                    continue
                raise RuntimeError(f"reader thread for {path} ended without a result") from None
            if kind == "record":
                yield value  # type: ignore[misc]
            elif kind == "end":
                return
            else:
                if isinstance(value, _Cancelled):
                    raise RuntimeError(f"reading {path} was cancelled") from value
                raise value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def xml_problem(path: Path, scan_energies: dict[str, str] | None = None) -> str:
    """'' when ``path`` (gz allowed) is well-formed XML, else the parser's message. One
    streaming pass of lxml (~0.03 s a 1.3 MB gzipped run): pyOpenMS's parser crashes the whole
    process on some malformed files (an element name garbled inside a binaryDataArrayList
    gave SIGSEGV), so a malformed file never reaches it. ``scan_energies`` (mzXML): filled
    with each scan's ``collisionEnergy`` by its pyOpenMS native id (``scan=N``), which
    pyOpenMS' mzXML reader does not keep."""
    from lxml import etree

    fh, gz = open_binary(path)
    try:
        with fh:
            for _, el in etree.iterparse(fh, events=("end",), huge_tree=True,
                                         resolve_entities=False, no_network=True):
                if scan_energies is not None and (energy := el.get("collisionEnergy")) \
                        and _local_name(el.tag) == "scan":
                    scan_energies[f"scan={el.get('num')}"] = energy
                el.clear()  # bounded memory: drop what was read
                while el.getprevious() is not None:
                    del el.getparent()[0]
    except etree.XMLSyntaxError as e:
        return str(e)
    return gz.problem if gz and gz.problem else ""


def _read_openms(path: Path) -> Iterator[RawSpectrum | QuarantineRecord]:
    """mzML/mzXML, streamed (:func:`stream_openms`). A file pyOpenMS cannot finish reading goes
    on through :func:`_salvage_xml`, which yields the spectra before the damage; the ones already
    yielded are not yielded again."""
    fmt = sniff_format(path)
    done: set[str] = set()
    energies: dict[str, str] | None = {} if fmt == "mzxml" else None
    problem = xml_problem(path, energies)
    if problem:  # pyOpenMS can crash (SIGSEGV) on malformed XML: pyteomics salvages it
        error = _ParseFailed(problem)
        yield from _salvage_rest(path, fmt, error, done)
        return
    try:
        for rec in stream_openms(path, fmt):
            done.add(rec.record_id)
            if energies and "collision_energy" not in rec.params:
                with contextlib.suppress(ValueError):
                    if energy := float(energies.get(rec.record_id, 0) or 0):
                        rec.params["collision_energy"] = f"{energy:g}"
            yield rec
    except _ParseFailed as e:
        yield from _salvage_rest(path, fmt, e.__cause__ or e, done)


def _salvage_rest(path: Path, fmt: str, error: BaseException,
                  done: set[str]) -> Iterator[RawSpectrum | QuarantineRecord]:
    try:
        for rec in _salvage_xml(path, fmt, error):  # type: ignore[arg-type]
            if rec.record_id not in done:
                yield rec
    except InputFileError:
        if not done:
            raise
        label = {"mzml": "mzML", "mzxml": "mzXML"}[fmt]
        yield QuarantineRecord(str(path), f"after {len(done)} MS2 spectra",
                               f"{label} damaged or truncated after {len(done)} MS2 spectra; "
                               f"{FILE_DAMAGE}: {error}")


def _mzml_params(spec: dict, rid: str) -> dict[str, object]:
    """pyteomics mzML spectrum -> params; precursor from the selected ion, else the isolation
    window target m/z (runs that record only the window, e.g. SCIEX DDA)."""
    params: dict[str, object] = {"native_id": rid, "ms_level": 2}
    try:
        precursor = spec["precursorList"]["precursor"][0]
    except (KeyError, IndexError, TypeError):
        precursor = {}
    try:
        ion = precursor["selectedIonList"]["selectedIon"][0]
        if ion.get("selected ion m/z"):
            params["precursor_mz"] = float(ion["selected ion m/z"])
        if ion.get("charge state"):
            params["charge"] = int(ion["charge state"])
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    if "precursor_mz" not in params:
        target = (precursor.get("isolationWindow") or {}).get("isolation window target m/z")
        if target:
            params["precursor_mz"] = float(target)
    energy = (precursor.get("activation") or {}).get("collision energy")
    if energy:
        params["collision_energy"] = f"{float(energy):g}"
    try:
        rt = spec["scanList"]["scan"][0]["scan start time"]
        unit = getattr(rt, "unit_info", "minute")
        params["retention_time"] = float(rt) * (60.0 if unit == "minute" else 1.0)
    except (KeyError, IndexError, TypeError):
        pass
    if "positive scan" in spec:
        params["ionmode"] = "positive"
    elif "negative scan" in spec:
        params["ionmode"] = "negative"
    params["centroiding"] = "as acquired"
    return params


def _mzxml_params(spec: dict, rid: str) -> dict[str, object]:
    params: dict[str, object] = {"native_id": rid, "ms_level": 2, "centroiding": "as acquired"}
    prec = (spec.get("precursorMz") or [{}])[0]
    if prec.get("precursorMz"):
        params["precursor_mz"] = float(prec["precursorMz"])
    if prec.get("precursorCharge"):
        params["charge"] = int(prec["precursorCharge"])
    if spec.get("collisionEnergy"):
        params["collision_energy"] = f"{float(spec['collisionEnergy']):g}"
    if spec.get("retentionTime") is not None:
        params["retention_time"] = float(spec["retentionTime"]) * 60.0  # pyteomics: minutes
    polarity = spec.get("polarity")
    if polarity in ("+", "-"):
        params["ionmode"] = "positive" if polarity == "+" else "negative"
    return params


def _local_name(tag: str) -> str:
    """An element's name without its namespace, as written: lxml's QName refuses the names a
    damaged file can give an element (``cvPara--------:``), which are no spectrum either."""
    return tag.rsplit("}", 1)[-1]


def xml_fence(data: bytes, fmt: str) -> tuple[bytes, str]:
    """(a well-formed document, the damage): ``data`` up to the end of its last complete
    top-level spectrum before the first XML error, with its open elements closed.

    An XML parser given damaged data loses the spectra it had parsed in the same buffer as the
    error, so the damage is located first, line by line, and the reader then gets only the part
    before it. Returns ``(data, "")`` for well-formed data.
    """
    from lxml import etree

    tag = "spectrum" if fmt == "mzml" else "scan"  # mzXML nests MS2 scans in their MS1 scan
    close = "</" + tag + ">"
    # no external entity, no network: a run file is data, never a reference to fetch
    parser = etree.XMLPullParser(events=("start", "end"), huge_tree=True,
                                 resolve_entities=False, no_network=True)
    depth = pos = fence = 0
    closers, problem = "", ""
    for line in io.BytesIO(data):
        try:
            parser.feed(line)
        except etree.XMLSyntaxError as e:
            problem = str(e)
            break
        for event, el in parser.read_events():
            if not isinstance(el.tag, str) or _local_name(el.tag) != tag:
                continue
            depth += 1 if event == "start" else -1
            if event == "end" and depth == 0:
                fence = pos + line.rfind(close.encode()) + len(close)
                closers = "".join(f"</{_local_name(a.tag)}>" for a in el.iterancestors())
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
        pos += len(line)
    else:
        try:
            parser.close()
        except etree.XMLSyntaxError as e:
            problem = str(e) or "document ends early"
    if not problem:
        return data, ""
    return data[:fence] + closers.encode(), problem


def decoded_peaks(spec: dict) -> tuple[np.ndarray, np.ndarray] | str:
    """A pyteomics spectrum's (m/z, intensity) arrays, decoded here (``decode_binary=False``) so
    that one spectrum's bad binary data is that spectrum's problem; else the reason."""
    arrays = []
    for key, dtype in (("m/z array", np.float64), ("intensity array", np.float32)):
        raw = spec.get(key)
        if raw is None:
            return f"has no {key}"
        try:
            arrays.append(np.asarray(raw.decode() if hasattr(raw, "decode") else raw,
                                     dtype=dtype).ravel())
        except Exception as e:  # base64, zlib, numpress: whatever the codec raises
            return f"binary data cannot be decoded ({key}): {e}"
    if len(arrays[0]) != len(arrays[1]):
        return (f"m/z and intensity arrays differ in length ({len(arrays[0])} vs "
                f"{len(arrays[1])} values)")
    return arrays[0], arrays[1]


#: PSI-MS "instrument model": an instrument configuration's model is a term below it
INSTRUMENT_MODEL = "MS:1000031"


@lru_cache(maxsize=1)
def _psi_ms():  # -> pyopenms.ControlledVocabulary: the PSI-MS terms pyOpenMS ships
    import pyopenms as oms

    cv = oms.ControlledVocabulary()
    cv.loadFromOBO("MS", str(Path(oms.__file__).parent / "share/OpenMS/CV/psi-ms.obo"))
    return cv


def header_instrument(data: bytes, fmt: str) -> str:
    """The instrument model a file's header names, as pyOpenMS reads it from an intact file:
    mzXML's ``msModel`` value; in mzML, the first term of the first instrument configuration
    (its parameter groups resolved by pyteomics) that PSI-MS files under "instrument model"
    (``Q Exactive``, ``TripleTOF 6600``). '' when there is none or the header is unreadable."""
    from pyteomics import mzml, mzxml

    reader, path = ((mzml.MzML, "instrumentConfigurationList/instrumentConfiguration")
                    if fmt == "mzml" else (mzxml.MzXML, "msRun/msInstrument"))
    try:
        with io.BytesIO(data) as src, reader(src, use_index=False, decode_binary=False) as r:
            config = next(r.iterfind(path), None) or {}
    except Exception:  # a damaged header: the spectra are still read, without an instrument
        return ""
    if fmt == "mzxml":
        return str((config.get("msModel") or {}).get("value", "")).strip()
    cv = _psi_ms()
    for key in config:  # pyteomics keeps a cvParam's accession on its name
        acc = str(getattr(key, "accession", "") or "")
        if acc.startswith("MS:") and cv.exists(acc) and cv.isChildOf(acc, INSTRUMENT_MODEL):
            return str(key)
    return ""


def _salvage_xml(path: Path, fmt: str,
                 error: Exception) -> Iterator[RawSpectrum | QuarantineRecord]:
    """Read a damaged mzML/mzXML with pyteomics: every spectrum before the damage is kept, the
    point where reading stopped is reported. A spectrum whose binary arrays do not decode (bad
    base64 or compression) or differ in length is quarantined by its id and reading goes on.
    Profile spectra cannot be centroided on this path, so they are quarantined."""
    from pyteomics import mzml, mzxml

    n = 0
    label = {"mzml": "mzML", "mzxml": "mzXML"}[fmt]
    fh, gz = open_binary(path)
    with fh:
        data = fh.read()
    data, problem = xml_fence(data, fmt)
    if gz and gz.problem:  # the XML error is only the cut seen from inside
        problem = gz.problem
    instrument = header_instrument(data, fmt)
    try:
        with io.BytesIO(data) as src:
            if fmt == "mzml":
                reader = mzml.MzML(src, use_index=False, decode_binary=False)
            else:
                reader = mzxml.MzXML(src, use_index=False, decode_binary=False)
            with reader:
                for spec in reader:
                    n += 1
                    if fmt == "mzml":
                        level, rid = spec.get("ms level"), str(spec.get("id", f"index={n - 1}"))
                        profile = "profile spectrum" in spec
                    else:
                        level, rid = spec.get("msLevel"), f"scan={spec.get('num', n)}"
                        profile = str(spec.get("centroided", "1")) == "0"
                    if level != 2:
                        continue
                    if profile:
                        yield QuarantineRecord(str(path), rid, f"profile spectrum in a damaged "
                                               f"{label} (cannot centroid without pyOpenMS)")
                        continue
                    peaks = decoded_peaks(spec)
                    if isinstance(peaks, str):
                        yield QuarantineRecord(str(path), rid, f"{label} spectrum {peaks}")
                        continue
                    params = _mzml_params(spec, rid) if fmt == "mzml" else _mzxml_params(spec, rid)
                    params["instrument_type"] = instrument
                    yield RawSpectrum(rid, peaks[0], peaks[1], params)
    except Exception as e:
        if n == 0:
            why = f"; {problem}" if problem else ""
            raise InputFileError(path, f"not a readable {label} file ({error}; {e}{why})") from e
        problem = problem or str(e)
    if n == 0:
        raise InputFileError(path, f"not a readable {label} file: {problem or error}")
    if problem:
        yield QuarantineRecord(str(path), f"after index={n - 1}",
                               f"{label} damaged or truncated after {n} spectra (all MS levels); "
                               f"{FILE_DAMAGE}: "
                               f"{problem}")


# -- MSP ----------------------------------------------------------------------------------------
_CUT = " (record cut short?)"
_MSP_NAME = re.compile(r"^[ \t]*name[ \t]*:", re.IGNORECASE | re.MULTILINE)
#: a minus sign starting a number in a peak line (not an exponent's: 1e-3)
_NEGATIVE = re.compile(r"(?:^|[\s,;:(\[])-\s*\.?\d")
_NOT_A_NUMBER = re.compile(r"\b(?:nan|inf|infinity)\b", re.IGNORECASE)
#: a word of a peak line that is a number ("85 x": x is not, a non-numeric value)
_NUMBER_WORD = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: a peak line starts with two numbers (an annotation after them may hold a colon, which
#: matchms would otherwise take for a 'key: value' line)
_PEAK_LINE = re.compile(r"^\d*\.?\d+(?:[eE][-+]?\d+)?[\s,;]+[-+]?\d")


def _peak_text(rline: str) -> str:
    """The numbers of a peak line, its annotation dropped: matchms' get_peak_comment, which
    fails on a single-quoted annotation (100 50 'y-ion'); that one is cut at its quote."""
    from matchms.importing.load_from_msp import get_peak_comment

    try:
        return get_peak_comment(rline)[1]
    except ValueError:
        return re.split(r"['\"]", rline, maxsplit=1)[0]


#: the key msid's MSP export writes a record's id under, in its COMMENT (``msid_id=ID; scan=N``)
MSP_ID_KEY = "msid_id"
_EXPORTED_ID = re.compile(rf"^\s*{MSP_ID_KEY}=(.*?)(?:; scan=([^;]+?))?\s*$")


def _exported_id(params: dict) -> str:
    """The record id msid's MSP export kept in COMMENT ('' for other MSP files); its scan
    number, when it kept one, goes back to ``params['scans']`` as an MGF's SCANS would."""
    m = _EXPORTED_ID.match(str(params.get("comment") or ""))
    if not m:
        return ""
    if m.group(2) and not params.get("scans"):
        params["scans"] = m.group(2)
    return m.group(1).strip()


def _msp_record(block: str, index: int) -> list[RawSpectrum | tuple[str, str]]:
    """One MSP record (from its ``Name:`` line to the next) -> [spectrum] or [(id, reason)],
    plus an (id, reason) for text after its last peak that starts no record.

    Lines are read with matchms' MSP line parsers; unlike matchms' file reader, a record whose
    peaks do not match its ``Num Peaks`` is rejected on its own instead of ending the file.
    """
    from matchms.importing.load_from_msp import (
        contains_metadata,
        get_peak_values,
        parse_metadata,
    )

    params: dict = {}
    mz: list[float] = []
    inten: list[float] = []
    bad = trailing = ""
    complete = False
    extra = 0  # peaks after the declared number: the record's Num Peaks is wrong
    for line in block.splitlines():
        rline = line.strip()
        if not rline:
            continue
        if complete:  # the record's peaks are all read: what follows belongs to no record
            n_more = 0
            if not trailing and (_PEAK_LINE.match(rline) or not contains_metadata(rline)):
                with contextlib.suppress(RuntimeError):
                    n_more = len(get_peak_values(_peak_text(rline))[0])
            extra += n_more
            trailing = trailing or ("" if n_more else rline)
            continue
        if contains_metadata(rline) and not _PEAK_LINE.match(rline):
            parse_metadata(rline, params)
            continue
        if bad:
            continue
        values = _peak_text(rline)
        if _NEGATIVE.search(values):  # matchms' number pattern reads "-29" as 29
            bad = f"negative m/z or intensity: '{rline[:40]}'"
            continue
        try:
            m, i = get_peak_values(values)
        except RuntimeError:
            words = re.split(r"[\s,;]+", values.strip())
            word_not_number = any(_NUMBER_WORD.fullmatch(w) is None for w in words if w)
            bad = (f"peak line with a non-finite or non-numeric value: '{rline[:40]}'"
                   if word_not_number or _NOT_A_NUMBER.search(values) else
                   f"peak line without intensity: '{rline[:40]}'")
            continue
        if not m:
            bad = f"line is neither 'key: value' nor peaks: '{rline[:40]}'"
            continue
        mz += m
        inten += i
        declared = str(params.get("num peaks", params.get("Num Peaks", ""))).strip()
        complete = declared.isdigit() and len(mz) >= int(declared)
    params = {str(k).lower(): v for k, v in params.items()}
    rid = str(params.get("spectrum_id") or params.get("db#") or _exported_id(params)
              or params.get("name") or f"index={index}")
    if bad:
        return [(rid, bad)]
    declared = params.get("num peaks")
    if declared is None:
        return [(rid, f"missing 'Num Peaks' line ({len(mz)} peak(s) found)")]
    try:
        n_declared = int(str(declared).strip())
    except ValueError:
        return [(rid, f"invalid 'Num Peaks: {str(declared)[:20]}' (not a whole number)")]
    if n_declared != len(mz) + extra:
        cut = _CUT if len(mz) < n_declared else ""
        return [(rid, f"'Num Peaks: {n_declared}' but the record has {len(mz) + extra} "
                      f"peak(s){cut}")]
    if isinstance(params.get("mw"), str):  # GOLM writes the nominal mass with a comma
        params["mw"] = params["mw"].replace(",", ".")
    _msp_rt_minutes(params)
    spectrum = RawSpectrum(rid, np.asarray(mz, dtype=np.float64),
                           np.asarray(inten, dtype=np.float32), params)
    if trailing:
        return [spectrum, (f"after {rid}", "text after the record's last peak that starts no "
                           f"record (no 'Name:' line): '{trailing[:40]}'")]
    return [spectrum]


def _msp_rt_minutes(params: dict) -> None:
    """MS-DIAL's MSP export (the usual source of deconvoluted GC-MS and LC-MS run spectra)
    writes ``RETENTIONTIME`` as a bare number of minutes; msid's stores keep seconds, and
    matchms reads a bare number as seconds. Such a value becomes ``retention_time`` in
    seconds; a value with its unit ("5.2 min"), and the other keys (``retention_time``,
    ``rt``, ``rtinseconds``: seconds, as matchms' own MSP export writes them), are left to
    matchms. A record with both keeps the other key's value."""
    from msid.convert import harmonised_key  # matchms' key names (convert imports this module)

    value = params.get("retentiontime")
    if value is None:
        return
    if any(k != "retentiontime" and harmonised_key(str(k)) == "retention_time" for k in params):
        del params["retentiontime"]  # stated another way too (RTINSECONDS...): that one wins
        return
    try:
        minutes = float(str(value).strip().replace(",", "."))
    except ValueError:
        return
    if minutes >= 0:
        del params["retentiontime"]
        params["retention_time"] = minutes * 60.0


def msp_records(text: str) -> Iterator[tuple[RawSpectrum | tuple[str, str], bool]]:
    """Every record of MSP ``text`` (a spectrum, or (id, reason) for one that cannot be read,
    text before the first ``Name:`` line included), each with whether its block ends the text.
    :func:`_read_msp` reads files with it, the GUI its uploads."""
    starts = [m.start() for m in _MSP_NAME.finditer(text)]
    if not starts:
        if text.strip():
            yield ("index=0", "no 'Name:' line: not an MSP record"), True
        return
    if text[:starts[0]].strip():
        head = text[:starts[0]].strip().splitlines()[0]
        yield ("before index=0", "text before the first 'Name:' line belongs to no record: "
               f"'{head[:40]}'"), False
    for i, (a, b) in enumerate(zip(starts, [*starts[1:], len(text)], strict=True)):
        for rec in _msp_record(text[a:b], i):
            yield rec, b == len(text)


def _read_msp(path: Path) -> Iterator[RawSpectrum | QuarantineRecord]:
    text, problem = _read_text(path)
    if not _MSP_NAME.search(text):
        raise InputFileError(path, "no 'Name:' line: not an MSP file"
                             + (f" ({problem})" if problem else ""))
    cut_end = bool(problem) or not text.endswith("\n")
    last_cut = False  # the damage fell inside the last record (it is counted as lost)
    for rec, at_end in msp_records(text):
        if isinstance(rec, RawSpectrum):
            yield rec
        elif at_end and (cut_end or _CUT in rec[1]):
            last_cut = True
            yield QuarantineRecord(str(path), rec[0], "MSP record cut short at the end of "
                                   f"the file: {FILE_ENDS_EARLY}: {rec[1].replace(_CUT, '')}")
        else:
            yield QuarantineRecord(str(path), rec[0], f"bad MSP record: {rec[1]}")
    if problem:  # a note on the file, no record: the records before the damage were read
        n_whole = len(_MSP_NAME.findall(text)) - last_cut
        yield QuarantineRecord(str(path), f"after index={n_whole - 1}",
                               f"MSP damaged after {n_whole} whole records; {FILE_DAMAGE}: "
                               f"{problem}")
