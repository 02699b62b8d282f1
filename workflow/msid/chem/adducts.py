"""Neutral (parent) mass of a precursor ion, from matchms's adduct table."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

DEFAULT_ADDUCT = {"positive": "[M+H]+", "negative": "[M-H]-"}


@lru_cache(maxsize=1)
def _matchms():
    """matchms' Spectrum and parent-mass function, imported on first use, not at module level:
    the import costs ~3 s (numba, sklearn) in every short-lived rule process that only needs
    candidate sets or rankings."""
    from matchms import Spectrum
    from matchms.filtering.filter_utils.derive_precursor_mz_and_parent_mass import (
        derive_parent_mass_from_precursor_mz,
    )
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # importing matchms turns RDKit's parse errors back on
    return Spectrum, derive_parent_mass_from_precursor_mz


def neutral_mass(precursor_mz: float, adduct: str = "", ion_mode: str = "",
                 charge: int = 0) -> float:
    """Parent mass for a precursor; ion mode's default adduct when none is given. NaN if unknown."""
    Spectrum, derive_parent_mass_from_precursor_mz = _matchms()
    if not precursor_mz or not math.isfinite(precursor_mz):
        return float("nan")
    adduct = adduct or DEFAULT_ADDUCT.get(ion_mode, "")
    meta: dict[str, object] = {"precursor_mz": float(precursor_mz)}
    if adduct:
        meta["adduct"] = adduct
    if charge:
        meta["charge"] = int(charge)
    elif ion_mode in DEFAULT_ADDUCT:
        meta["charge"] = 1 if ion_mode == "positive" else -1
    s = Spectrum(np.array([1.0]), np.array([1.0]), metadata=meta, metadata_harmonization=False)
    mass = derive_parent_mass_from_precursor_mz(s)
    return float(mass) if mass is not None else float("nan")
