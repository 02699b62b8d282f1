"""EI (GC-MS) spectra in: nominal-mass binning, profile-like records, EI stores.

Electron-ionization spectra carry no precursor, and libraries mix unit-mass records with
accurate-mass ones and a few profile-like scans (hundreds of decimal points, one or more in every
nominal bin, most of them noise). Both EI systems of msid (spectrum prediction and library
search) read them through this module:

* :data:`EI_PREPROCESS` / :data:`EI_LIBRARY_PREPROCESS`: the peak filters for EI queries and
  for EI libraries / training data (no precursor required; the library one needs a structure and
  assigns folds by InChIKey first block);
* :func:`to_nominal` bins peaks to integer m/z; :func:`is_profile_like` finds profile-like
  records, which are binned by the bin maximum and cut at a higher noise floor;
* :func:`dense_nominal` gives the fixed-length float32 vector the models read;
* :func:`ei_store` turns an EI MSP/MGF/mzML file or store into a nominal-mass msid store,
  cached under ``$MSID_CACHE`` by content digest (like :func:`msid.identify.cached_library`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from msid.preprocess import PreprocessConfig, preprocess_store
from msid.store import QuarantineRecord, SpectrumRecord, SpectrumStore, SpectrumStoreWriter

#: EI query spectra: no precursor, no structure needed; low m/z fragments kept (m/z 15, 28 ...).
EI_PREPROCESS = PreprocessConfig(mz_min=1.0, mz_max=2000.0, min_relative_intensity=0.001,
                                 max_peaks=1000, min_peaks=1, require_precursor_mz=False,
                                 require_structure=False, assign_folds=False)
#: EI libraries and training data: as above, plus a parseable structure and a fold.
EI_LIBRARY_PREPROCESS = replace(EI_PREPROCESS, require_structure=True, assign_folds=True)

# Nominal mass of an accurate m/z: round(m/z * MASS_DEFECT_SCALE). The scale shifts the rounding
# point by the typical mass defect of organic ions (~+0.00048 Da/Da), so a hydrocarbon ion at
# 500.39 still lands on 500 and an iodine-rich ion at 253.81 on 254.
MASS_DEFECT_SCALE = 0.99952


@dataclass(frozen=True)
class NominalConfig:
    """How accurate-mass and profile-like EI records become nominal-mass spectra."""

    profile_min_peaks: int = 200  # a profile-like record has at least this many points ...
    profile_min_decimal: float = 0.5  # ... mostly at non-integer m/z ...
    profile_min_bin_fill: float = 0.8  # ... filling most nominal bins of its m/z range
    profile_noise_floor: float = 0.01  # their points below this fraction of base are noise


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
    nominal = np.rint(mz * MASS_DEFECT_SCALE).astype(np.int64)
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


def is_profile_like(mz: np.ndarray, cfg: NominalConfig = NominalConfig()) -> bool:
    """True for a record that looks like a profile/continuum scan rather than a peak list:
    many points, mostly at decimal m/z, present in (nearly) every nominal bin of its range."""
    mz = np.asarray(mz, dtype=np.float64)
    if mz.size < cfg.profile_min_peaks:
        return False
    decimal = np.abs(mz - np.rint(mz)) > 1e-6
    if decimal.mean() < cfg.profile_min_decimal:
        return False
    nominal = np.rint(mz * MASS_DEFECT_SCALE).astype(np.int64)
    span = int(nominal.max() - nominal.min()) + 1
    return np.unique(nominal).size / span >= cfg.profile_min_bin_fill


def nominal_record(mz: np.ndarray, intensity: np.ndarray, cfg: NominalConfig = NominalConfig()
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


@dataclass
class NominalStats:
    read: int = 0
    kept: int = 0
    profile_like: int = 0
    quarantined: Counter = field(default_factory=Counter)


def nominal_store(src: str | os.PathLike, out: str | os.PathLike,
                  cfg: NominalConfig = NominalConfig()) -> NominalStats:
    """Every spectrum of store ``src`` binned to nominal mass into ``out`` (atomic); records
    left with no peak are quarantined, ``src``'s quarantine is carried over."""
    stats = NominalStats()
    with SpectrumStore(src) as store:
        prov = {"stage": "ei-nominal", "input": str(src), "config": asdict(cfg),
                "source": store.attrs.get("provenance", {})}
        with SpectrumStoreWriter(out, provenance=prov) as w:
            for _, q in store.quarantine.iterrows():
                w.quarantine(QuarantineRecord(q.source_file, q.record_id, q.reason))
            for rec in store.iter_records():
                stats.read += 1
                nmz, nint, profile = nominal_record(rec.mz, rec.intensity, cfg)
                stats.profile_like += int(profile)
                if nmz.size == 0 or not (nint > 0).any():
                    reason = "ei-nominal: no peak at a positive nominal m/z"
                    w.quarantine(QuarantineRecord(str(rec.meta.get("source_file", "")),
                                                  str(rec.meta.get("id", "")), reason))
                    stats.quarantined[reason] += 1
                    continue
                w.add(SpectrumRecord(nmz, nint, dict(rec.meta)))
                stats.kept += 1
            w._provenance["profile_like"] = stats.profile_like  # written at close
    return stats


def _cache_dir() -> Path:
    from msid.identify import cache_dir

    return cache_dir()


def ei_digest(path: str | os.PathLike, preprocess: PreprocessConfig,
              nominal: NominalConfig) -> str:
    """Content digest of an input file plus the settings that shape its EI store."""
    h = hashlib.sha256(b"msid-ei-store-v1")
    h.update(json.dumps([asdict(preprocess), asdict(nominal)], sort_keys=True,
                        default=str).encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def ei_store(path: str | os.PathLike, out: str | os.PathLike | None = None, *,
             preprocess: PreprocessConfig | None = None,
             nominal: NominalConfig = NominalConfig(), n_jobs: int = 1,
             progress: bool = False) -> Path:
    """An EI file (MSP/MGF/mzML, gz allowed, or an msid store) as a nominal-mass msid store.

    Steps: convert (raw store; skipped for ``.h5`` input) -> nominal binning with profile-like
    handling -> EI peak filters (default :data:`EI_LIBRARY_PREPROCESS`). Bad records are
    quarantined with their reason. Without ``out`` the store is cached under ``$MSID_CACHE`` as
    ``ei-<digest>.h5`` (digest of the file's bytes and the settings) and reused when present.
    """
    from msid.convert import convert_file

    src = Path(path)
    cfg = preprocess or EI_LIBRARY_PREPROCESS
    if out is None:
        target = _cache_dir() / f"ei-{ei_digest(src, cfg, nominal)}.h5"
        if target.exists():
            return target
    else:
        target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = f".{target.stem}.{os.getpid()}"
    raw = target.with_name(tag + ".raw.h5")
    binned = target.with_name(tag + ".nominal.h5")
    try:
        if src.suffix == ".h5":
            nominal_store(src, binned, nominal)
        else:
            convert_file(src, raw, n_jobs=n_jobs, progress=progress)
            nominal_store(raw, binned, nominal)
        preprocess_store(binned, target, cfg, n_jobs=n_jobs, progress=progress)
    finally:
        raw.unlink(missing_ok=True)
        binned.unlink(missing_ok=True)
    return target


def merge_ei_files(files: list[str | os.PathLike], out: str | os.PathLike, *,
                   preprocess: PreprocessConfig | None = None, n_jobs: int = 1) -> int:
    """EI files (MSP/MGF/mzML/stores) -> one nominal-mass store ``out`` (each file's cached
    EI store, concatenated; quarantines carried). Returns the number of spectra."""
    n = 0
    with SpectrumStoreWriter(out, provenance={"stage": "ei-merge",
                                              "inputs": [str(f) for f in files]}) as w:
        for f in files:
            with SpectrumStore(ei_store(f, preprocess=preprocess, n_jobs=n_jobs)) as s:
                for _, q in s.quarantine.iterrows():
                    w.quarantine(QuarantineRecord(q.source_file, q.record_id, q.reason))
                for rec in s.iter_records():
                    w.add(rec)
                    n += 1
    return n


def write_molecules(store: str | os.PathLike, out: str | os.PathLike) -> int:
    """The distinct structures of a store as a TSV (inchikey, smiles), atomically."""
    from msid.atomic import write_text

    with SpectrumStore(store) as s:
        md = s.metadata[["inchikey", "smiles"]]
    md = md[(md.inchikey != "") & (md.smiles != "")].drop_duplicates("inchikey")
    write_text(out, md.to_csv(sep="\t", index=False))
    return len(md)
