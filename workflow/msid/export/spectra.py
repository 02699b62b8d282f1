"""Cleaned spectra out of an msid store as MGF (pyteomics' writer) or MSP (matchms' exporter,
MS-DIAL's dialect)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from matchms import Spectrum
from matchms.exporting import save_as_msp
from pyteomics import mgf

from msid.atomic import atomic_path
from msid.chem.adducts import default_adduct
from msid.convert import scan_number
from msid.io.raw import MSP_ID_KEY
from msid.store import SpectrumStore

FORMATS = ("mgf", "msp")
# MSP through matchms' "riken" style, MS-DIAL's dialect (NAME, PRECURSORMZ, PRECURSORTYPE,
# RETENTIONTIME in minutes, IONMODE, SMILES, INCHIKEY, FORMULA): store column -> matchms key
_MSP_KEYS = {"name": "compound_name", "precursor_mz": "precursor_mz", "adduct": "adduct",
             "rt": "retention_time", "ion_mode": "ionmode", "smiles": "smiles",
             "inchikey": "inchikey", "formula": "formula", "instrument_type": "instrument_type",
             "collision_energy": "collision_energy"}
# MGF through pyteomics' writer (which matchms' own MGF export calls): none of matchms' styles
# writes both PEPMASS (SIRIUS, GNPS and Mascot-style readers need it) and the retention time
# and adduct, so the keys are the usual MGF ones: store column -> MGF key
_MGF_KEYS = {"id": "TITLE", "precursor_mz": "PEPMASS", "charge": "CHARGE", "rt": "RTINSECONDS",
             "adduct": "ADDUCT", "ion_mode": "IONMODE", "ms_level": "MSLEVEL", "name": "NAME",
             "smiles": "SMILES", "inchikey": "INCHIKEY", "formula": "FORMULA",
             "instrument_type": "INSTRUMENT_TYPE", "collision_energy": "COLLISION_ENERGY"}


#: an MGF peak line: m/z to 1e-6, the intensity's shortest decimal
FRAGMENT_FORMAT = "{:.6f} {}"


def _missing(v: object) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _mgf_entry(mz: np.ndarray, intensity: np.ndarray, meta: dict) -> dict:
    params: dict[str, object] = {}
    for col, key in _MGF_KEYS.items():
        v = meta.get(col)
        if _missing(v) or (col == "charge" and v == 0):  # 0: charge unknown, not neutral
            continue
        params[key] = f"{abs(int(v))}{'-' if int(v) < 0 else '+'}" if col == "charge" else v
    scan = _scan(meta)
    if scan:  # SCANS is a scan number; an MGF position (index=N) or a title is none
        params["SCANS"] = scan
    return {"m/z array": mz, "intensity array": intensity, "params": params}


def _scan(meta: dict) -> str:
    """The input's scan number, kept by the store (one written before it kept them: read from
    the native id, as conversion does); '' when there is none."""
    return str(meta.get("scan") or "") or scan_number({"native_id": meta.get("native_id")})


def _msp_spectrum(mz: np.ndarray, intensity: np.ndarray, meta: dict) -> Spectrum:
    md = {}
    for col, key in _MSP_KEYS.items():
        v = meta.get(col)
        if col == "name" and _missing(v):
            v = meta.get("id")  # every MSP record opens with a NAME line
        if col == "rt" and not _missing(v):
            v = float(v) / 60.0  # minutes, as MS-DIAL writes RETENTIONTIME
        if col == "adduct" and _missing(v) and abs(int(meta.get("charge") or 0)) > 1:
            v = default_adduct(str(meta.get("ion_mode") or ""), int(meta["charge"]))  # the
            # dialect has no CHARGE field: a multiply charged ion keeps its charge this way
        if not _missing(v):
            md[key] = v
    # the dialect has no id or scan field; COMMENT carries them (msid's MSP reader takes the
    # record id back from it, so identifications still point at their spectra)
    if not _missing(meta.get("id")):  # msid_id=ID[; scan=N], read back by msid.io.raw
        scan = _scan(meta)
        md["comment"] = f"{MSP_ID_KEY}={meta.get('id')}" + (f"; scan={scan}" if scan else "")
    return Spectrum(mz.astype(float), intensity.astype(float), metadata=md,
                    metadata_harmonization=False)


def export_format(out: str | os.PathLike, fmt: str = "") -> str:
    """The format an export writes: ``fmt``, else the suffix of ``out`` (``-``: MGF)."""
    return (fmt or ("mgf" if str(out) == "-" else Path(out).suffix.lstrip("."))).lower()


def export_spectra(store: str | os.PathLike, out: str | os.PathLike, fmt: str = "") -> int:
    """Write every spectrum of ``store`` to ``out`` (format from ``fmt`` or the suffix; ``-``:
    standard output, MGF unless ``fmt`` says MSP). Returns the number written."""
    fmt = export_format(out, fmt)
    out = out if str(out) == "-" else Path(out)
    if fmt not in FORMATS:
        gz = " (gzip output is not supported: compress the file afterwards)" if fmt == "gz" else ""
        raise ValueError(f"export format must be one of {FORMATS} (--format, or the suffix of "
                         f"--out), not '{fmt}'{gz}")
    with SpectrumStore(store) as st:
        # intensities as the float32 the store holds, in its shortest decimal (213.61205, not
        # the float64 noise 213.61204528808594); read back as float32, the same number
        records = [(np.asarray(r.mz, float), _shortest(r.intensity), r.meta)
                   for r in st.iter_records()]
    _write(records, out, fmt)  # "-": atomic_path streams the finished file to stdout
    return len(records)


def export_losses(store: str | os.PathLike, fmt: str) -> list[str]:
    """What the format cannot carry of the store's spectra, one line each (none: [])."""
    with SpectrumStore(store) as st:
        md = st.metadata
    prec = md["precursor_mz"].to_numpy(float)
    no_prec = int((~np.isfinite(prec) | (prec <= 0)).sum())
    out = []
    fmt = fmt.lower()
    if no_prec and fmt == "mgf":
        out.append(f"{no_prec} spectra have no precursor m/z: their MGF records carry no "
                   "PEPMASS, which SIRIUS and GNPS need (msid preprocess quarantines such "
                   "spectra)")
    if no_prec and fmt == "msp":
        out.append(f"{no_prec} spectra have no precursor m/z: their MSP records carry no "
                   "PRECURSORMZ")
    charge = md["charge"].to_numpy(int)
    multiple = int((np.abs(charge) > 1).sum())
    if multiple and fmt == "msp":
        out.append(f"{multiple} spectra of charge 2 or more: MS-DIAL's MSP has no charge field; "
                   "their PRECURSORTYPE, where known, states it")
    return out


def _shortest(values: np.ndarray) -> np.ndarray:
    """float32 values as the float64 of their shortest round-trip decimal."""
    return np.array([float(str(v)) for v in np.asarray(values, dtype=np.float32)])


def _write(records: list, out: str | Path, fmt: str) -> None:
    matchms_log = logging.getLogger("matchms")
    level = matchms_log.level
    with atomic_path(out) as tmp:
        if fmt == "mgf":
            # no fragment charge column (pyteomics' default leaves a trailing blank)
            mgf.write((_mgf_entry(*r) for r in records), output=str(tmp), file_mode="w",
                      write_charges=False, use_numpy=False, fragment_format=FRAGMENT_FORMAT)
        else:
            matchms_log.setLevel(logging.ERROR)  # not its warning about the temporary's suffix
            try:
                save_as_msp([_msp_spectrum(*r) for r in records], str(tmp), style="riken")
            finally:
                matchms_log.setLevel(level)
