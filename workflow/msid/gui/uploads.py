"""Query spectra from what a GUI user sends: pasted peaks or an MSP/MGF/mzML upload.

Everything is parsed in memory (never written to disk, never executed) by msid's own record
readers (MSP: :func:`msid.io.raw.msp_records`; MGF: :func:`msid.io.mgf.parse_mgf_chunk`), so
a bad record costs only itself and is named on the page, and pyteomics' mzML reader on msid's
salvage path (a damaged spectrum or a cut file costs only what is damaged). Only
centroided peak lists are taken (m/z, intensity); an upload holding no usable spectrum raises
:class:`UploadError` with a message meant for the user.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np

MAX_SPECTRA = 50  # spectra taken from one upload (the rest are ignored, and the page says so)
#: the most a gzipped upload may expand to (a small file that unpacks to gigabytes is refused)
MAX_UNPACKED = 50_000_000


class UploadError(ValueError):
    """The upload or the pasted text cannot be used; the message is shown to the user."""


@dataclass
class UploadedSpectrum:
    title: str
    mz: np.ndarray
    intensity: np.ndarray


#: the largest m/z a peak may have (no mass spectrometer records more; far larger values
#: would overflow the nominal-mass bins)
MAX_MZ = 100_000.0


def _clean(title: str, mz, inten) -> UploadedSpectrum | None:
    mz = np.asarray(mz, dtype=np.float64)
    inten = np.asarray(inten, dtype=np.float64)
    keep = (np.isfinite(mz) & np.isfinite(inten) & (mz > 0) & (inten > 0)
            & (mz <= MAX_MZ))
    if not keep.any():
        return None
    order = np.argsort(mz[keep])
    return UploadedSpectrum(title, mz[keep][order], inten[keep][order])


def _number(token: str, line: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise UploadError(f"pasted peaks: '{token}' is not a number (line '{line[:40]}')") from None
    if not np.isfinite(value) or value < 0:
        raise UploadError(f"pasted peaks: {token} is not a finite non-negative number "
                          f"(line '{line[:40]}')")
    return value


def parse_pasted(text: str) -> tuple[list[UploadedSpectrum], list[str]]:
    """Peaks as ``m/z intensity`` pairs: one per line, or ``mz:int`` / ``mz int;`` lists. Every
    value must be a finite non-negative number and every line hold whole pairs; the first line
    that does not is named (a pasted sign or NaN is never dropped or shifted silently)."""
    mz: list[float] = []
    inten: list[float] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        tokens = line.replace(":", " ").replace(";", " ").replace(",", " ").split()
        if not tokens:
            continue
        values = [_number(t, line) for t in tokens]
        if len(values) % 2:
            raise UploadError(f"pasted peaks must be pairs 'm/z intensity': line '{line[:40]}' "
                              f"holds {len(values)} value(s)")
        if any(v > MAX_MZ for v in values[0::2]):
            raise UploadError(f"pasted peaks: an m/z above {MAX_MZ:,.0f} (line '{line[:40]}')")
        mz += values[0::2]
        inten += values[1::2]
    spec = _clean("pasted spectrum", mz, inten)
    if spec is None:
        raise UploadError("no peaks found in the pasted text (expected lines 'm/z intensity')")
    return [spec], []


def _msp(text: str) -> tuple[list[UploadedSpectrum], list[str]]:
    """Records read by msid's MSP record reader (a bad record costs only itself and is named
    in the notes)."""
    from msid.io.raw import RawSpectrum, msp_records

    records = [rec for rec, _ in msp_records(text)]
    notes = [f"record {r[0]} skipped: {r[1]}" for r in records
             if not isinstance(r, RawSpectrum)]
    out, more = _collect((str(r.params.get("name") or r.record_id), r.mz, r.intensity)
                         for r in records if isinstance(r, RawSpectrum))
    return out, notes + more


def _collect(entries) -> tuple[list[UploadedSpectrum], list[str]]:
    """(title, m/z, intensity) entries -> cleaned spectra (and notes of those skipped)."""
    out, notes = [], []
    for title, mz, intensity in entries:
        spec = _clean(title, mz, intensity)
        if spec is not None:
            out.append(spec)
        else:
            notes.append(f"{title} skipped: no peak above zero")
    return out, notes


def _mgf(text: str) -> tuple[list[UploadedSpectrum], list[str]]:
    """Records read by msid's MGF chunk reader (a bad record costs only itself and is named)."""
    from msid.io.mgf import MgfChunk, count_blocks, normalise_markers, parse_mgf_chunk
    from msid.io.raw import RawSpectrum
    from msid.store import VALUE_LEFT_OUT

    text = normalise_markers(text.lstrip("\ufeff"))
    n, opened = count_blocks(text)
    records = parse_mgf_chunk(MgfChunk("upload", text, 0, n)) if n else []
    notes = [f"record {r.record_id}: {r.reason}" if r.reason.endswith(VALUE_LEFT_OUT)
             else f"record {r.record_id} skipped: {r.reason}" for r in records
             if not isinstance(r, RawSpectrum)]  # a kept record's note says so itself
    if opened > n:
        notes.append(f"{opened - n} record(s) without END IONS at the end (file cut short?)")
    out, more = _collect((str(r.params.get("title") or r.record_id), r.mz, r.intensity)
                         for r in records if isinstance(r, RawSpectrum))
    return out, notes + more


def _mzml(data: bytes) -> tuple[list[UploadedSpectrum], list[str]]:
    """Spectra of every MS level (a GC-EI run's spectra are MS1), read as msid's salvage path
    reads a damaged run: the document up to its damage (:func:`msid.io.raw.xml_fence`), each
    spectrum's arrays decoded on their own (:func:`msid.io.raw.decoded_peaks`), so that bad
    binary data costs only its spectrum and a cut file keeps what came before the cut."""
    from pyteomics import mzml

    from msid.io.raw import decoded_peaks, xml_fence

    data, problem = xml_fence(data, "mzml")
    entries, notes = [], []
    try:
        with mzml.MzML(io.BytesIO(data), use_index=False, decode_binary=False) as reader:
            for k, spec in enumerate(reader):
                title = str(spec.get("id", f"spectrum {k + 1}"))
                peaks = decoded_peaks(spec)
                if isinstance(peaks, str):
                    notes.append(f"{title} skipped: {peaks}")
                else:
                    entries.append((title, *peaks))
    except Exception as e:
        if not entries and not notes:
            raise UploadError(f"not a readable mzML file: {problem or e}") from e
        problem = problem or str(e)
    if problem:
        notes.append(f"the file is damaged after {len(entries) + len(notes)} spectra; the rest "
                     f"was not read: {problem}")
    out, more = _collect(entries)
    return out, notes + more


def gunzip(data: bytes, limit: int = MAX_UNPACKED) -> bytes:
    """A gzipped upload's content, in memory, refused past ``limit`` bytes or when cut."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise UploadError(f"not a readable gzip file ({e})") from None
    if len(out) > limit:
        raise UploadError(f"unpacks to more than {limit / 1e6:.0f} MB; upload fewer spectra")
    if not d.eof:
        raise UploadError("the gzip file is cut short (incomplete upload?)")
    return out


def parse_upload(filename: str, data: bytes) -> tuple[list[UploadedSpectrum], list[str]]:
    """Spectra of an uploaded file, by its extension (.msp, .mgf, .mzML, each optionally .gz,
    unpacked in memory up to :data:`MAX_UNPACKED`; no other archives), at most
    :data:`MAX_SPECTRA`, and notes for the page: records skipped (and why), spectra left out
    beyond the limit."""
    name = filename.lower()
    if not data:
        raise UploadError(f"'{filename}' is empty")
    try:
        if name.endswith(".gz"):
            data, name = gunzip(data), name[:-3]
        if name.endswith(".mzml"):
            spectra, notes = _mzml(data)
        else:
            text = data.decode("utf-8", errors="replace")
            if name.endswith(".mgf"):
                spectra, notes = _mgf(text)
            elif name.endswith(".msp") or name.endswith(".txt"):
                spectra, notes = _msp(text)
            else:
                raise UploadError(f"'{filename}': unsupported file type (upload .msp, .mgf or "
                                  f".mzML, optionally .gz)")
    except UploadError as e:
        if filename not in str(e):  # every message names the file it is about
            raise UploadError(f"'{filename}': {e}") from e
        raise
    except Exception as e:  # a malformed file from a user: say so, never crash the server
        raise UploadError(f"'{filename}' could not be read: {type(e).__name__}: {e}") from e
    if not spectra:
        why = f" ({'; '.join(notes[:3])})" if notes else ""
        raise UploadError(f"'{filename}' holds no spectrum with peaks{why}")
    if len(spectra) > MAX_SPECTRA:
        notes.append(f"only the first {MAX_SPECTRA} of {len(spectra)} spectra were searched")
        spectra = spectra[:MAX_SPECTRA]
    return spectra, notes
