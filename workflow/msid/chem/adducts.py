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


def default_adduct(ion_mode: str = "", charge: int = 0) -> str:
    """[M+zH]z+ / [M-zH]z- for a charge z (1 when unknown); '' when neither the ion mode nor
    the charge's sign says the polarity."""
    mode = ion_mode if ion_mode in DEFAULT_ADDUCT else (
        "positive" if charge > 0 else "negative" if charge < 0 else "")
    z = abs(int(charge)) or 1
    if not mode or z == 1:
        return DEFAULT_ADDUCT.get(mode, "")
    return f"[M+{z}H]{z}+" if mode == "positive" else f"[M-{z}H]{z}-"


def neutral_mass(precursor_mz: float, adduct: str = "", ion_mode: str = "",
                 charge: int = 0) -> float:
    """Parent mass for a precursor; without an adduct, the protonated or deprotonated ion of
    the stated charge ([M+H]+, [M+2H]2+, [M-H]-, ...; the ion mode, else the charge's sign,
    says which). NaN if unknown."""
    Spectrum, derive_parent_mass_from_precursor_mz = _matchms()
    if not precursor_mz or not math.isfinite(precursor_mz):
        return float("nan")
    adduct = adduct or default_adduct(ion_mode, charge)
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


@lru_cache(maxsize=4096)
def _ion_line(adduct: str, ion_mode: str, charge: int) -> tuple[float, float]:
    """(slope, intercept) of :func:`neutral_mass` against m/z for one ion (it is linear in
    m/z: mass = m/z x |z| / n, less the adduct's mass, for an [nM+X]z ion)."""
    at = neutral_mass(100.0, adduct, ion_mode, charge)
    slope = neutral_mass(101.0, adduct, ion_mode, charge) - at  # |z| / n
    return slope, at - 100.0 * slope


def mass_ppm(ppm: float, precursor_mz: float, adduct: str = "", ion_mode: str = "",
             charge: int = 0) -> float:
    """The window on the neutral mass, in ppm of that mass, that is ``ppm`` of the precursor
    m/z: a candidate inside it is within ``ppm`` of the precursor as the same ion, the way
    library hits are matched and every ``ppm_error`` is given. ``ppm`` itself when the ion is
    unknown."""
    if not precursor_mz or not math.isfinite(precursor_mz):
        return ppm
    slope, intercept = _ion_line(adduct, ion_mode, int(charge))
    mass = slope * precursor_mz + intercept
    if not (math.isfinite(slope) and math.isfinite(mass) and slope > 0 and mass > 0):
        return ppm
    return ppm * slope * precursor_mz / mass


def mass_da(tol_da: float, precursor_mz: float, adduct: str = "", ion_mode: str = "",
            charge: int = 0) -> float:
    """The window on the neutral mass, in Da, that is ``tol_da`` on the precursor m/z (x |z|/n
    for an [nM+X]z ion: 0.02 Da for a doubly charged ion). ``tol_da`` itself when the ion is
    unknown."""
    slope, _ = _ion_line(adduct, ion_mode, int(charge))
    return tol_da * slope if math.isfinite(slope) and slope > 0 else tol_da


def ion_mz(mass: float, precursor_mz: float, adduct: str = "", ion_mode: str = "",
           charge: int = 0) -> float:
    """The m/z of a molecule of neutral ``mass`` as the same ion (adduct, charge) as the
    precursor at ``precursor_mz``: the inverse of :func:`neutral_mass`, which is linear in
    m/z, so multimers and multiply charged ions come out right. NaN if the ion is unknown
    (or ``precursor_mz`` is none)."""
    if not precursor_mz or not math.isfinite(precursor_mz) or not math.isfinite(mass):
        return float("nan")
    slope, intercept = _ion_line(adduct, ion_mode, int(charge))
    if not (math.isfinite(slope) and math.isfinite(intercept) and slope > 0):
        return float("nan")
    return (mass - intercept) / slope
