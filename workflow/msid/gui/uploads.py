"""Query spectra from what a GUI user sends: pasted peaks or an MSP/MGF/mzML upload.

Everything is parsed in memory (never written to disk, never executed) by the libraries msid
reads these formats with: matchms' MSP line parsers, pyteomics' MGF and mzML readers. Only
centroided peak lists are taken (m/z, intensity); an upload holding no usable spectrum raises
:class:`UploadError` with a message meant for the user.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

MAX_SPECTRA = 50  # spectra taken from one upload (the rest are ignored, and the page says so)


class UploadError(ValueError):
    """The upload or the pasted text cannot be used; the message is shown to the user."""


@dataclass
class UploadedSpectrum:
    title: str
    mz: np.ndarray
    intensity: np.ndarray


def _clean(title: str, mz, inten) -> UploadedSpectrum | None:
    mz = np.asarray(mz, dtype=np.float64)
    inten = np.asarray(inten, dtype=np.float64)
    keep = np.isfinite(mz) & np.isfinite(inten) & (mz > 0) & (inten > 0)
    if not keep.any():
        return None
    order = np.argsort(mz[keep])
    return UploadedSpectrum(title, mz[keep][order], inten[keep][order])


def parse_pasted(text: str) -> list[UploadedSpectrum]:
    """Peaks as ``m/z intensity`` pairs: one per line, or ``mz:int`` / ``mz int;`` lists."""
    from matchms.importing.load_from_msp import get_peak_values

    body = " ".join(line.split("#", 1)[0] for line in text.splitlines())
    try:
        mz, inten = get_peak_values(body.replace(":", " ").replace(";", " ").replace(",", " "))
    except RuntimeError as e:
        raise UploadError("pasted peaks must be pairs of numbers: m/z intensity") from e
    spec = _clean("pasted spectrum", mz, inten)
    if spec is None:
        raise UploadError("no peaks found in the pasted text (expected lines 'm/z intensity')")
    return [spec]


def _msp(text: str) -> list[UploadedSpectrum]:
    from matchms.importing.load_from_msp import (
        _parse_line_with_peaks,
        contains_metadata,
        parse_metadata,
    )

    out: list[UploadedSpectrum] = []
    params: dict = {}
    mz: list[float] = []
    inten: list[float] = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        if contains_metadata(line):
            parse_metadata(line, params)
            continue
        try:
            m, i, _ = _parse_line_with_peaks(line)
        except RuntimeError as e:
            raise UploadError(f"MSP: cannot read peak line '{line[:40]}'") from e
        mz += m
        inten += i
        try:
            n_expected = int(params.get("num peaks", -1))
        except ValueError as e:
            raise UploadError("MSP: 'Num Peaks' is not a number") from e
        if n_expected == len(mz):
            spec = _clean(str(params.get("name", f"spectrum {len(out) + 1}")), mz, inten)
            if spec is not None:
                out.append(spec)
            params, mz, inten = {}, [], []
            if len(out) >= MAX_SPECTRA:
                break
    return out


def _collect(entries) -> list[UploadedSpectrum]:
    """(title, m/z, intensity) entries -> cleaned spectra, at most :data:`MAX_SPECTRA`."""
    out = []
    for title, mz, intensity in entries:
        spec = _clean(title, mz, intensity)
        if spec is not None:
            out.append(spec)
        if len(out) >= MAX_SPECTRA:
            break
    return out


def _mgf(text: str) -> list[UploadedSpectrum]:
    from pyteomics import mgf

    with mgf.read(io.StringIO(text), use_index=False, convert_arrays=1) as reader:
        return _collect((str(s.get("params", {}).get("title", f"spectrum {k + 1}")),
                         s["m/z array"], s["intensity array"]) for k, s in enumerate(reader))


def _mzml(data: bytes) -> list[UploadedSpectrum]:
    from pyteomics import mzml

    with mzml.read(io.BytesIO(data), use_index=False) as reader:
        return _collect((str(s.get("id", f"spectrum {k + 1}")), s["m/z array"],
                         s["intensity array"]) for k, s in enumerate(reader)
                        if "m/z array" in s)


def parse_upload(filename: str, data: bytes) -> list[UploadedSpectrum]:
    """Spectra of an uploaded file, by its extension (.msp, .mgf, .mzML; no archives)."""
    name = filename.lower()
    try:
        if name.endswith(".mzml"):
            spectra = _mzml(data)
        else:
            text = data.decode("utf-8", errors="replace")
            if name.endswith(".mgf"):
                spectra = _mgf(text)
            elif name.endswith(".msp") or name.endswith(".txt"):
                spectra = _msp(text)
            else:
                raise UploadError(f"'{filename}': unsupported file type (upload .msp, .mgf or "
                                  f".mzML)")
    except UploadError:
        raise
    except Exception as e:  # a malformed file from a user: say so, never crash the server
        raise UploadError(f"'{filename}' could not be read: {type(e).__name__}: {e}") from e
    if not spectra:
        raise UploadError(f"'{filename}' holds no spectrum with peaks")
    return spectra
