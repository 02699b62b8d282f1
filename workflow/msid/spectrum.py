"""Moving between matchms ``Spectrum`` (the in-memory type of filters) and store records."""

from __future__ import annotations

import math

import numpy as np
from matchms import Spectrum

from msid.store import METADATA_COLUMNS, SpectrumRecord

# store column -> matchms (harmonised) metadata key
_TO_MATCHMS = {
    "id": "spectrum_id",
    "precursor_mz": "precursor_mz",
    "charge": "charge",
    "adduct": "adduct",
    "ion_mode": "ionmode",
    "rt": "retention_time",
    "instrument_type": "instrument_type",
    "collision_energy": "collision_energy",
    "name": "compound_name",
    "smiles": "smiles",
    "inchikey": "inchikey",
    "formula": "formula",
    "peptide": "peptide",
    "fold": "fold",
    "native_id": "native_id",
    "source_file": "source_file",
    "ms_level": "ms_level",
}


def _clean(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return value


def matchms_to_record(spectrum: Spectrum, extra: dict | None = None) -> SpectrumRecord:
    return metadata_to_record(spectrum.metadata, spectrum.peaks.mz, spectrum.peaks.intensities,
                              extra)


def metadata_to_record(md: dict, mz: np.ndarray, intensity: np.ndarray,
                       extra: dict | None = None) -> SpectrumRecord:
    """matchms-harmonised metadata + peaks -> a store record (store columns only)."""
    meta: dict[str, object] = {}
    for col in METADATA_COLUMNS:
        key = _TO_MATCHMS.get(col, col)
        meta[col] = _clean(md.get(key))
    if not meta["peptide"]:
        meta["peptide"] = _clean(md.get("seq"))
    if extra:
        meta.update(extra)
    return SpectrumRecord(np.asarray(mz, dtype=np.float64),
                          np.asarray(intensity, dtype=np.float32), meta)
