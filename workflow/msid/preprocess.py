"""Stage 2: a converted store -> a clean store, through a chain of small matchms filters.

The chain is a list of named steps (matchms filter functions, plus msid's structure step). Each
step returns the spectrum or None; a None sends the spectrum to quarantine with the step's reason,
so the report can say exactly what removed what.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import matchms.filtering as mf
import numpy as np
from matchms import Spectrum

from msid.chem.structures import inchikey_as_given, parse_structure
from msid.folds import fold_of, peptide_key
from msid.parallel import chunks, imap_ordered
from msid.preprocess_config import PreprocessConfig
from msid.progress import progress_bar
from msid.store import (
    MS1_REASON,
    QuarantineRecord,
    RecordBatch,
    SpectrumRecord,
    SpectrumStore,
    SpectrumStoreWriter,
    reason_group,
)

logging.getLogger("matchms").setLevel(logging.ERROR)


#: bumped whenever cleaning gives different stores for the same input (caches key on it)
PREPROCESS_VERSION = 8  # 3: permanent cations keep their charge (structures.standardize_mol)
# 4: repeated ids kept as <id>#2, MS1 records quarantined from MS/MS stores
# 5: the scan number (MGF SCANS, mzML scan=N) kept in the store's scan column
# 6: ion modes as files write them (neg, N, POLARITY), 'Precursor m/z', MSP peak annotations
#    in single quotes or with a colon, salts with a covalent metal bond at their parent
# 7: mzML collision energies that pyOpenMS keeps as a meta value ('collision energy'), mzXML
#    collisionEnergy, a charge stated only by the adduct ([M+3H]3+ in MSP)
# 8: a damaged mzML/mzXML keeps its instrument model (read from the header)


Step = Callable[[Spectrum], Spectrum | None]


@dataclass
class FilterStep:
    name: str
    fn: Step
    reason: str


def structure_step(meta: dict, require: bool, standardise: bool = True) -> str:
    """Normalise SMILES/InChIKey/formula in ``meta`` with RDKit; return a reason to reject or ''.

    The structure is standardised (a salt becomes its parent, whose InChIKey the record gets).
    A SMILES that RDKit cannot parse, or an InChIKey whose first block contradicts the SMILES
    (as standardised or as given), is a wrong label: the spectrum is quarantined (for training
    it would teach the wrong answer). ``standardise=False`` (queries) leaves the annotation
    as written and rejects nothing but a missing one that ``require`` asks for.
    """
    smiles = str(meta.get("smiles") or "")
    if not smiles:
        return "no structure annotation (SMILES)" if require else ""
    if not standardise:
        return ""
    st = parse_structure(smiles)
    if st is None:
        return f"invalid SMILES (RDKit cannot parse): {smiles[:60]}"
    given = str(meta.get("inchikey") or "")
    # a salt or charged form may come with its own InChIKey: it names the SMILES as given,
    # the record gets its parent's
    if (given and st.inchikey and given[:14] != st.inchikey14
            and given[:14] != inchikey_as_given(smiles)[:14]):
        return "InChIKey does not match SMILES"
    meta["smiles"] = st.smiles
    meta["inchikey"] = st.inchikey or given
    meta["formula"] = st.formula
    return ""


def build_chain(cfg: PreprocessConfig) -> list[FilterStep]:
    # metadata was harmonised by matchms when the file was converted (msid.convert)
    steps: list[FilterStep] = []
    if cfg.require_precursor_mz:
        steps.append(FilterStep("require_precursor_mz", mf.require_precursor_mz,
                                "missing or invalid precursor m/z"))
    steps += [
        FilterStep("select_by_mz", partial(mf.select_by_mz, mz_from=cfg.mz_min, mz_to=cfg.mz_max),
                   f"no peaks within m/z {cfg.mz_min}-{cfg.mz_max}"),
        FilterStep("normalize_intensities", mf.normalize_intensities,
                   "all intensities zero"),
        FilterStep("select_by_relative_intensity",
                   partial(mf.select_by_relative_intensity,
                           intensity_from=cfg.min_relative_intensity),
                   "no peaks above the noise floor"),
        FilterStep("reduce_to_number_of_peaks",
                   partial(mf.reduce_to_number_of_peaks, n_max=cfg.max_peaks),
                   "peak reduction removed the spectrum"),
        FilterStep("require_minimum_number_of_peaks",
                   partial(mf.require_minimum_number_of_peaks, n_required=cfg.min_peaks),
                   f"fewer than {cfg.min_peaks} peaks after filtering"),
    ]
    return steps




def _is_ms1(rec: SpectrumRecord, cfg: PreprocessConfig) -> bool:
    return cfg.require_precursor_mz and str(rec.meta.get("ms_level", "")) == "1"


def apply_chain(chain: list[FilterStep], rec: SpectrumRecord) -> tuple[Spectrum | None, str]:
    """Run the peak filters on one record; (spectrum, '') or (None, reason).

    The filters see only what they read (peaks, precursor m/z, charge, ion mode): matchms
    re-harmonises every metadata key on each copy, so carrying the full record through the chain
    would cost more than the filtering itself. The record's metadata is kept aside unchanged.
    """
    meta = {k: v for k, v in (("precursor_mz", rec.meta.get("precursor_mz")),
                               ("charge", rec.meta.get("charge")),
                               ("ionmode", rec.meta.get("ion_mode")))
            if v not in (None, "") and not (isinstance(v, float) and np.isnan(v))}
    s: Spectrum | None = Spectrum(np.asarray(rec.mz, dtype=np.float64),
                                  np.asarray(rec.intensity, dtype=np.float32),
                                  metadata=meta, metadata_harmonization=False)
    for step in chain:
        try:
            s = step.fn(s)
        except Exception as e:  # a filter choking on odd metadata rejects one record
            return None, f"{step.name} failed: {e}"
        if s is None:
            return None, f"{step.name}: {step.reason}"
    return s, ""


def _precursor_ok(meta: dict, minimum_mz: float = 10.0) -> bool:
    """matchms' ``require_precursor_mz`` (default minimum m/z 10) on a stored precursor."""
    p = meta.get("precursor_mz")
    return (isinstance(p, float | int) and not (isinstance(p, float) and np.isnan(p))
            and p >= minimum_mz)


def _segment_max(values: np.ndarray, owner: np.ndarray, n_segments: int,
                 empty: float) -> np.ndarray:
    """Per segment (``owner``: sorted segment of each value), the largest value; ``empty`` for a
    segment without values. Keeps the dtype of ``values``."""
    n = np.bincount(owner, minlength=n_segments)
    out = np.full(n_segments, empty, dtype=values.dtype)
    has = n > 0
    out[has] = np.maximum.reduceat(values, np.r_[0, np.cumsum(n)[:-1]][has])
    return out


def clean_batch(records: list[SpectrumRecord], cfg: PreprocessConfig
                ) -> list[tuple[np.ndarray, np.ndarray] | str]:
    """The peak filters of :func:`build_chain` over a whole batch at once: (m/z, intensity)
    per record, or the reason the chain gives for rejecting it.

    The filters run on the batch's flat peak arrays with the same arithmetic as matchms (float32
    intensities scaled by their float32 maximum, the same comparisons); only spectra with at
    least ``max_peaks`` peaks go through matchms' ``reduce_to_number_of_peaks`` one by one.
    ``tests/test_convert_fast.py`` checks the result equals matchms' per-spectrum chain.
    """
    chain = build_chain(cfg)
    names = {step.name: step for step in chain}
    out: list[tuple[np.ndarray, np.ndarray] | str] = [""] * len(records)
    keep = []
    for k, rec in enumerate(records):
        if _is_ms1(rec, cfg):
            out[k] = MS1_REASON
        elif cfg.require_precursor_mz and not _precursor_ok(rec.meta):
            step = names["require_precursor_mz"]
            out[k] = f"{step.name}: {step.reason}"
        else:
            keep.append(k)
    if not keep:
        return out
    counts = np.array([len(records[k].mz) for k in keep])
    mz = np.concatenate([np.asarray(records[k].mz, dtype=np.float64) for k in keep])
    inten = np.concatenate([np.asarray(records[k].intensity, dtype=np.float32) for k in keep])
    owner = np.repeat(np.arange(len(keep)), counts)
    # select_by_mz
    m = np.logical_and(cfg.mz_min <= mz, mz <= cfg.mz_max)
    mz, inten, owner = mz[m], inten[m], owner[m]
    # normalize_intensities: by the spectrum's maximum; a maximum <= 0 empties the spectrum
    peak_max = _segment_max(inten, owner, len(keep), 0.0)
    m = peak_max[owner] > 0
    mz, inten, owner = mz[m], inten[m], owner[m]
    inten = inten / peak_max[owner]
    # select_by_relative_intensity: rescaled by the (new) maximum, kept within [from, 1]
    rel = inten / _segment_max(inten, owner, len(keep), 1.0)[owner]
    m = np.logical_and(cfg.min_relative_intensity <= rel, rel <= 1.0)
    mz, inten, owner = mz[m], inten[m], owner[m]
    n = np.bincount(owner, minlength=len(keep))
    bounds = np.r_[0, np.cumsum(n)]
    reduce = names["reduce_to_number_of_peaks"]
    minimum = names["require_minimum_number_of_peaks"]
    for j, k in enumerate(keep):
        pm, pi = mz[bounds[j]:bounds[j + 1]], inten[bounds[j]:bounds[j + 1]]
        if len(pm) >= cfg.max_peaks:  # matchms keeps the strongest peaks
            s = reduce.fn(Spectrum(pm, pi, metadata={}, metadata_harmonization=False))
            pm, pi = s.peaks.mz, s.peaks.intensities
        if len(pm) < cfg.min_peaks:
            out[k] = f"{minimum.name}: {minimum.reason}"
        else:
            out[k] = (pm, pi)
    return out


def finish_record(rec: SpectrumRecord, peaks: tuple[np.ndarray, np.ndarray] | str,
                  cfg: PreprocessConfig) -> SpectrumRecord | str:
    """Cleaned peaks of one record + the structure step and fold assignment (or a reason)."""
    if isinstance(peaks, str):
        return peaks
    meta = dict(rec.meta)
    reason = structure_step(meta, cfg.require_structure, cfg.standardise_structures)
    if reason:
        return f"structure: {reason}"
    if cfg.assign_folds:
        key = (str(meta["inchikey"])[:14] if meta["inchikey"]
               else peptide_key(str(meta["peptide"])))
        meta["fold"] = fold_of(key, cfg.folds)
    return SpectrumRecord(peaks[0], peaks[1].astype(np.float32), meta)


@dataclass
class PreprocessStats:
    read: int = 0
    kept: int = 0
    quarantined: Counter = field(default_factory=Counter)
    carried_quarantine: int = 0


def _process_chunk(args: tuple[list[SpectrumRecord], PreprocessConfig]
                   ) -> tuple[list[QuarantineRecord], RecordBatch]:
    """One chunk in a worker: the rejects, and the kept records as one column batch."""
    chunk, cfg = args
    rejects, kept = [], []
    for rec, peaks in zip(chunk, clean_batch(chunk, cfg), strict=True):
        result = finish_record(rec, peaks, cfg)
        if isinstance(result, str):
            rejects.append(QuarantineRecord(str(rec.meta["source_file"]), str(rec.meta["id"]),
                                            result))
        else:
            kept.append(result)
    return rejects, RecordBatch.of(kept)


def preprocess_store(src: str | os.PathLike, out: str | os.PathLike,
                     cfg: PreprocessConfig | None = None, n_jobs: int = 1,
                     progress: bool = True) -> PreprocessStats:
    """Filter every spectrum of ``src`` into ``out``; quarantine of ``src`` is carried over
    (the writer drops the note of a record lost here)."""
    cfg = cfg or PreprocessConfig()
    stats = PreprocessStats()
    with SpectrumStore(src) as store:
        prov = {"stage": "preprocess", "input": str(src), "config": asdict(cfg),
                "source": store.attrs.get("provenance", {})}
        with SpectrumStoreWriter(out, provenance=prov) as writer:
            for _, q in store.quarantine.iterrows():
                writer.quarantine(QuarantineRecord(q.source_file, q.record_id, q.reason))
                stats.carried_quarantine += 1
            jobs = ((chunk, cfg) for chunk in chunks(store.iter_records(), 2000))
            bar = progress_bar(total=len(store), desc="preprocess", unit=" spectra",
                               disable=not progress, mininterval=2)
            for rejects, batch in imap_ordered(_process_chunk, jobs, n_jobs):
                for q in rejects:
                    writer.quarantine(q)
                    stats.quarantined[reason_group(q.reason)] += 1
                writer.add_batch(batch)
                stats.read += len(rejects) + len(batch)
                stats.kept += len(batch)
                bar.update(len(rejects) + len(batch))
            bar.close()
    return stats
