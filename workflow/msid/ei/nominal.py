"""Nominal-mass EI spectra: binning accurate-mass peaks to integer m/z, profile-like records,
dense vectors. Light (numpy only); :mod:`msid.ei.spectra` re-exports these beside the EI stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Nominal mass of an accurate m/z: round(m/z * MASS_DEFECT_SCALE). The scale shifts the rounding
# point by the typical mass defect of organic ions (~+0.00048 Da/Da), so a hydrocarbon ion at
# 500.39 still lands on 500 and an iodine-rich ion at 253.81 on 254. An m/z that is already a
# whole number (a unit-mass library or query) is its own bin: scaled, 1042 and above would land
# one bin low.
MASS_DEFECT_SCALE = 0.99952


def nominal_mz(mz: np.ndarray) -> np.ndarray:
    """The nominal (integer) m/z of each accurate m/z (int64; see :data:`MASS_DEFECT_SCALE`)."""
    mz = np.asarray(mz, dtype=np.float64)
    whole = np.rint(mz)
    return np.where(np.abs(mz - whole) <= 1e-6, whole, np.rint(mz * MASS_DEFECT_SCALE)
                    ).astype(np.int64)


@dataclass(frozen=True)
class NominalConfig:
    """How accurate-mass and profile-like EI records become nominal-mass spectra."""

    profile_min_peaks: int = 200  # a profile-like record has at least this many points ...
    profile_min_decimal: float = 0.5  # ... mostly at non-integer m/z ...
    profile_min_bin_fill: float = 0.8  # ... filling most nominal bins of its m/z range
    profile_noise_floor: float = 0.01  # their points below this fraction of base are noise


DEFAULT_NOMINAL = NominalConfig()


def stein_scott_weight(mz: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """NIST (Stein & Scott) peak weighting m/z^3 x intensity^0.6; negative intensities count 0."""
    return np.asarray(mz, dtype=np.float64) ** 3 * np.power(
        np.clip(np.asarray(intensity, dtype=np.float64), 0, None), 0.6)


def to_nominal(mz: np.ndarray, intensity: np.ndarray, reduce: str = "sum"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Peaks binned to integer m/z: (int64 m/z ascending, float64 intensity).

    Peaks in the same nominal bin are summed (``reduce="sum"``, centroided data: isotopologue
    fine structure and split centroids add up) or their maximum is taken (``reduce="max"``,
    profile points that sample one peak several times). Non-positive bins are dropped.
    """
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if mz.shape != intensity.shape:
        raise ValueError(f"m/z and intensity differ in length ({mz.size} vs {intensity.size})")
    if mz.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    nominal = nominal_mz(mz)
    bins, inverse = np.unique(nominal, return_inverse=True)
    out = np.zeros(bins.size, dtype=np.float64)
    if reduce == "sum":
        np.add.at(out, inverse, intensity)
    elif reduce == "max":
        np.maximum.at(out, inverse, intensity)
    else:
        raise ValueError(f"reduce must be 'sum' or 'max', not {reduce!r}")
    keep = bins > 0
    return bins[keep], out[keep]


def is_profile_like(mz: np.ndarray, cfg: NominalConfig = DEFAULT_NOMINAL) -> bool:
    """True for a record that looks like a profile/continuum scan rather than a peak list:
    many points, mostly at decimal m/z, present in (nearly) every nominal bin of its range."""
    mz = np.asarray(mz, dtype=np.float64)
    if mz.size < cfg.profile_min_peaks:
        return False
    decimal = np.abs(mz - np.rint(mz)) > 1e-6
    if decimal.mean() < cfg.profile_min_decimal:
        return False
    nominal = nominal_mz(mz)
    span = int(nominal.max() - nominal.min()) + 1
    return np.unique(nominal).size / span >= cfg.profile_min_bin_fill


def nominal_record(mz: np.ndarray, intensity: np.ndarray, cfg: NominalConfig = DEFAULT_NOMINAL
                   ) -> tuple[np.ndarray, np.ndarray, bool]:
    """A record's nominal peaks (float64 m/z, float32 intensity) and whether it was
    profile-like (binned by maximum, points below ``profile_noise_floor`` of base dropped)."""
    profile = is_profile_like(mz, cfg)
    nmz, nint = to_nominal(mz, intensity, reduce="max" if profile else "sum")
    if profile and nint.size:
        keep = nint >= cfg.profile_noise_floor * nint.max()
        nmz, nint = nmz[keep], nint[keep]
    return nmz.astype(np.float64), nint.astype(np.float32), profile


def dense_nominal(mz: np.ndarray, intensity: np.ndarray, max_mz: int,
                  normalize: bool = True) -> np.ndarray:
    """A spectrum as a float32 vector of length ``max_mz + 1`` (index = nominal m/z), peaks
    above ``max_mz`` dropped; scaled to base peak 1 when ``normalize``."""
    nmz, nint = to_nominal(mz, intensity)
    out = np.zeros(max_mz + 1, dtype=np.float32)
    keep = nmz <= max_mz
    out[nmz[keep]] = nint[keep]
    if normalize and out.max() > 0:
        out /= out.max()
    return out


#: m/z units above a structure's nominal mass M that its own spectrum can reach: the molecular
#: ion's isotope peaks (Br3 and Cl4 clusters reach M+6, M+8)
ION_REACH = 8
#: more of a spectrum's intensity than this above M + ION_REACH: not the structure's own
#: spectrum (NEIMS' training and test leave it out; the EI report flags such a library match)
ABOVE_ION_SHARE = 0.05


def intensity_above_ion(mz: np.ndarray, intensity: np.ndarray, mass: int) -> float:
    """The share of a spectrum's summed intensity above ``mass + ION_REACH`` + 0.5 (past the
    molecular ion's isotope peaks): 0 for a spectrum of the structure itself; large for one
    of a derivative (TMS, methoxime: GC-MS metabolomics records annotated with the parent
    compound) or of another structure."""
    intensity = np.asarray(intensity, dtype=np.float64)
    total = float(intensity.sum())
    above = np.asarray(mz) > mass + ION_REACH + 0.5
    return float(intensity[above].sum()) / total if total > 0 else 0.0
