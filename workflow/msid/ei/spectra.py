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
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from msid.ei.nominal import (
    DEFAULT_NOMINAL,
    MASS_DEFECT_SCALE,
    NominalConfig,
    dense_nominal,
    is_profile_like,
    nominal_record,
    to_nominal,
)
from msid.preprocess import PreprocessConfig, preprocess_store
from msid.store import QuarantineRecord, SpectrumRecord, SpectrumStore, SpectrumStoreWriter

#: EI query spectra: no precursor, no structure needed (an annotation is kept as written);
#: low m/z fragments kept (m/z 15, 28 ...).
EI_PREPROCESS = PreprocessConfig(mz_min=1.0, mz_max=2000.0, min_relative_intensity=0.001,
                                 max_peaks=1000, min_peaks=1, require_precursor_mz=False,
                                 require_structure=False, assign_folds=False,
                                 standardise_structures=False)
#: EI libraries and training data: as above, plus a parseable, standardised structure and a fold.
EI_LIBRARY_PREPROCESS = replace(EI_PREPROCESS, require_structure=True, assign_folds=True,
                                standardise_structures=True)
#: EI libraries to search: structures standardised where given, but a record without one is
#: kept (NIST, AMDIS and in-house libraries often carry a name and a formula only): its
#: matches name the record; no folds (nothing trains on a search library).
EI_SEARCH_LIBRARY_PREPROCESS = replace(EI_LIBRARY_PREPROCESS, require_structure=False,
                                       assign_folds=False)

__all__ = ["EI_LIBRARY_PREPROCESS", "EI_PREPROCESS", "EI_SEARCH_LIBRARY_PREPROCESS",
           "MASS_DEFECT_SCALE", "NominalConfig",
           "dense_nominal", "ei_store", "is_profile_like", "merge_ei_files", "nominal_record",
           "nominal_store", "read_record_ids", "to_nominal", "write_molecules"]

@dataclass
class NominalStats:
    read: int = 0
    kept: int = 0
    profile_like: int = 0
    quarantined: Counter = field(default_factory=Counter)


def nominal_store(src: str | os.PathLike, out: str | os.PathLike,
                  cfg: NominalConfig = DEFAULT_NOMINAL) -> NominalStats:
    """Every spectrum of store ``src`` binned to nominal mass into ``out`` (atomic); records
    left with no peak are quarantined, ``src``'s quarantine is carried over."""
    stats = NominalStats()
    with SpectrumStore(src) as store:
        prov = {"stage": "ei-nominal", "input": str(src), "config": asdict(cfg),
                "source": store.attrs.get("provenance", {})}
        with SpectrumStoreWriter(out, provenance=prov) as w:
            for _, q in store.quarantine.iterrows():  # a lost record's note: dropped at close
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
    """``$MSID_CACHE`` (default ~/.cache/msid), as :func:`msid.identify.cache_dir` (not
    imported: this module stays light for the data rules' environments)."""
    return Path(os.environ.get("MSID_CACHE", Path.home() / ".cache" / "msid"))


def ei_digest(path: str | os.PathLike, preprocess: PreprocessConfig,
              nominal: NominalConfig) -> str:
    """Content digest of an input file plus the settings that shape its EI store."""
    # v2: whole-number m/z keeps its bin at any mass; structure-less search-library records
    h = hashlib.sha256(b"msid-ei-store-v2")
    h.update(json.dumps([asdict(preprocess), asdict(nominal)], sort_keys=True,
                        default=str).encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def ei_store(path: str | os.PathLike, out: str | os.PathLike | None = None, *,
             preprocess: PreprocessConfig | None = None,
             nominal: NominalConfig = DEFAULT_NOMINAL, n_jobs: int = 1,
             progress: bool = False, warn: Callable[[str], None] | None = None) -> Path:
    """An EI file (MSP/MGF/mzML, gz allowed, or an msid store) as a nominal-mass msid store.

    Steps: convert (raw store; skipped for ``.h5`` input) -> nominal binning with profile-like
    handling -> EI peak filters (default :data:`EI_LIBRARY_PREPROCESS`). Bad records are
    quarantined with their reason. Without ``out`` the store is cached under ``$MSID_CACHE`` as
    ``ei-<digest>.h5`` (digest of the file's bytes and the settings) and reused when present.
    ``warn`` hears of repeated record ids (kept as ``<id>#2``...).
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
            stats = convert_file(src, raw, n_jobs=n_jobs, progress=progress)
            if stats.renamed and warn is not None:
                warn(stats.renamed_note(src))
            nominal_store(raw, binned, nominal)
        preprocess_store(binned, target, cfg, n_jobs=n_jobs, progress=progress)
    finally:
        raw.unlink(missing_ok=True)
        binned.unlink(missing_ok=True)
    return target


def read_record_ids(path: str | os.PathLike) -> set[str]:
    """Record ids listed in a text file, one per line (blank lines and ``#`` comments skipped)."""
    ids = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    return ids


def merge_ei_files(files: list[str | os.PathLike], out: str | os.PathLike, *,
                   preprocess: PreprocessConfig | None = None, n_jobs: int = 1,
                   exclude: Collection[str] = ()) -> int:
    """EI files (MSP/MGF/mzML/stores) -> one nominal-mass store ``out`` (each file's cached
    EI store, concatenated; quarantines carried). Records whose id is in ``exclude`` are left
    out (e.g. the spectra a demo run was drawn from: searched against themselves they would
    only find themselves); the store's provenance lists the ids left out. Returns the number
    of spectra stored."""
    exclude = set(exclude)
    n, left_out = 0, []
    prov = {"stage": "ei-merge", "inputs": [str(f) for f in files]}
    with SpectrumStoreWriter(out, provenance=prov) as w:
        for f in files:
            with SpectrumStore(ei_store(f, preprocess=preprocess, n_jobs=n_jobs)) as s:
                for _, q in s.quarantine.iterrows():
                    w.quarantine(QuarantineRecord(q.source_file, q.record_id, q.reason))
                for rec in s.iter_records():
                    if exclude and str(rec.meta.get("id")) in exclude:
                        left_out.append(str(rec.meta.get("id")))
                        continue
                    w.add(rec)
                    n += 1
        prov["excluded"] = sorted(left_out)  # read when the writer closes
    return n


def write_molecules(store: str | os.PathLike, out: str | os.PathLike) -> int:
    """The distinct structures of a store as a TSV (inchikey, smiles), atomically."""
    from msid.atomic import write_text

    with SpectrumStore(store) as s:
        md = s.metadata[["inchikey", "smiles"]]
    md = md[(md.inchikey != "") & (md.smiles != "")].drop_duplicates("inchikey")
    write_text(out, md.to_csv(sep="\t", index=False))
    return len(md)
