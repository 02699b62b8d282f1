"""Cleaned spectra out of an msid store as MGF or MSP, written by matchms' exporters."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from matchms import Spectrum
from matchms.exporting import save_as_mgf, save_as_msp

from msid.atomic import atomic_path
from msid.store import SpectrumStore

FORMATS = ("mgf", "msp")
# store column -> matchms metadata key (matchms' own names, so its exporters write them)
_KEYS = {"id": "spectrum_id", "precursor_mz": "precursor_mz", "charge": "charge",
         "adduct": "adduct", "ion_mode": "ionmode", "rt": "retention_time",
         "instrument_type": "instrument_type", "collision_energy": "collision_energy",
         "name": "compound_name", "smiles": "smiles", "inchikey": "inchikey",
         "formula": "formula", "ms_level": "ms_level"}
_SCAN = re.compile(r"(?:^|\bscan=)(\d+)$")  # mzML "... scan=123" or a bare scan number


def _spectrum(mz, intensity, meta: dict) -> Spectrum:
    md = {}
    for col, key in _KEYS.items():
        v = meta.get(col)
        if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            continue
        md[key] = v
    scan = _SCAN.search(str(meta.get("native_id") or ""))
    if scan:  # SCANS is a scan number; an MGF position (index=N) or a title is none
        md["scans"] = scan.group(1)
    return Spectrum(mz.astype(float), intensity.astype(float), metadata=md,
                    metadata_harmonization=False)


def export_spectra(store: str | os.PathLike, out: str | os.PathLike, fmt: str = "") -> int:
    """Write every spectrum of ``store`` to ``out`` (format from ``fmt`` or the suffix).
    Returns the number written."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, not '{fmt}'")
    with SpectrumStore(store) as st:
        spectra = [_spectrum(r.mz, r.intensity, r.meta) for r in st.iter_records()]
    with atomic_path(out) as tmp:
        tmp = Path(tmp)
        if fmt == "mgf":
            save_as_mgf(spectra, str(tmp))
        else:
            save_as_msp(spectra, str(tmp))
    return len(spectra)
