"""Stage 1: a raw run or library file -> a spectrum store (peaks as acquired, metadata harmonised).

Each record is checked before it is stored; a bad one goes to the quarantine table with its
reason and the rest of the file carries on. Only a file that cannot be opened at all fails.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import matchms.filtering as mf
import numpy as np
from matchms import Fragments, Metadata, Spectrum
from matchms.filtering import derive_inchikey_from_inchi, derive_smiles_from_inchi

from msid.io import RawSpectrum
from msid.io.mgf import MgfChunk, parse_mgf_chunk
from msid.io.raw import read_chunks
from msid.io.values import RT_MISSING
from msid.parallel import imap_ordered
from msid.progress import progress_bar
from msid.spectrum import metadata_to_record
from msid.store import (
    FILE_DAMAGE,
    FILE_ENDS_EARLY,
    UNREADABLE,
    VALUE_LEFT_OUT,
    WHOLE_FILE,
    QuarantineRecord,
    RecordBatch,
    SpectrumRecord,
    SpectrumStoreWriter,
    reason_group,
)

if TYPE_CHECKING:
    from msid.preprocess import PreprocessConfig

logging.getLogger("matchms").setLevel(logging.ERROR)

#: matchms.filtering.default_filters, step by step (its docstring lists the same order)
DEFAULT_FILTERS = (
    mf.make_charge_int, mf.add_compound_name, mf.derive_adduct_from_name,
    mf.derive_formula_from_name, mf.clean_compound_name, mf.interpret_pepmass,
    mf.add_precursor_mz, mf.derive_ionmode, mf.correct_charge)
_NO_PEAKS = np.zeros(0)


@dataclass
class ConvertStats:
    read: int = 0
    stored: int = 0
    quarantined: Counter = field(default_factory=Counter)
    renamed: int = 0  # records whose id an earlier record held: stored as "<id>#2", "#3", ...
    damaged: str = ""  # where a damaged file stopped being readable (a note, no record)
    #: records stored without a value that could not be read, by reason (VALUE_LEFT_OUT notes)
    noted: Counter = field(default_factory=Counter)

    def renamed_note(self, path: str | os.PathLike) -> str:
        """What a user hears of repeated record ids ('' when there were none)."""
        if not self.renamed:
            return ""
        return (f"{path}: {self.renamed} record id(s) repeat an earlier record's: ranked as "
                "'<id>#2', '<id>#3', ...")


def check_peaks(raw: RawSpectrum) -> tuple[RawSpectrum | None, str]:
    """Peaks sorted by m/z, or (None, reason) for peaks no filter can repair."""
    mz, inten = raw.mz, raw.intensity
    if mz.shape != inten.shape:
        return None, f"m/z and intensity arrays differ in length ({mz.size} vs {inten.size})"
    if mz.size == 0:
        return None, "spectrum has no peaks"
    if not (np.isfinite(mz).all() and np.isfinite(inten).all()):
        return None, "non-finite (NaN/inf) m/z or intensity"
    if (inten < 0).any():
        return None, "negative intensity"
    if (mz <= 0).any():
        return None, "non-positive m/z"
    if (np.diff(mz) < 0).any():
        order = np.argsort(mz, kind="stable")
        raw = RawSpectrum(raw.record_id, mz[order], inten[order], raw.params)
    return raw, ""


#: metadata keys (lower-cased, as readers give them) that hold the precursor m/z / ion mode
PRECURSOR_KEYS = ("pepmass", "precursor_mz", "precursormz", "precursor_m/z", "precursor m/z")
ION_MODE_KEYS = ("ionmode", "ion_mode", "polarity")
ION_MODES = {"positive": "positive", "pos": "positive", "p": "positive", "+": "positive",
             "negative": "negative", "neg": "negative", "n": "negative", "-": "negative",
             "": "", "n/a": "", "na": "", "unknown": "", "none": ""}


def check_metadata(raw: RawSpectrum) -> str:
    """Why the record's precursor m/z or ion mode cannot be used ('' when they can).

    A missing precursor is no reason here (EI spectra have none; preprocessing decides); a
    precursor that is given but not a finite, non-negative number is. An ion mode must be
    positive or negative (or left unknown), never guessed from a word it does not contain.
    """
    for key in PRECURSOR_KEYS:
        value = raw.params.get(key)
        if isinstance(value, (tuple, list)):
            value = value[0] if value else None
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            number = float(str(value).split()[0])
        except ValueError:
            return f"invalid precursor m/z '{str(value)[:30]}' ({key.upper()} is not a number)"
        if not np.isfinite(number) or number < 0:
            return f"invalid precursor m/z '{value}' ({key.upper()} must be a finite m/z)"
    for key in ION_MODE_KEYS:
        value = raw.params.get(key)
        if value is None:
            continue
        word = str(value).strip().lower()
        if word not in ION_MODES and not word.startswith(("positive", "negative")):
            return (f"unknown ion mode '{str(value)[:30]}' ({key.upper()} must be positive or "
                    "negative)")
    return ""


#: matchms metadata keys (harmonised names) that the default filters and matchms' value
#: harmonisation read or write; every other key only has its name harmonised and its invalid
#: entries ("", "NA", ...) dropped, so it can pass by the filters untouched
FILTER_KEYS = frozenset({
    "charge", "compound_name", "name", "title", "adduct", "formula", "pepmass",
    "precursor_mz", "precursor_intensity", "ionmode", "retention_time", "retention_index",
    "parent"})
_INVALID_ENTRIES = frozenset({"", "NA", "N/A", "NaN"})  # as matchms' harmonize_values drops
_MEMO_MAX = 200_000


@lru_cache(maxsize=8192)
def harmonised_key(raw_key: str) -> str:
    """matchms' harmonised name for a metadata key (``PRECURSORMZ`` -> ``precursor_mz``)."""
    return next(iter(Metadata({raw_key: 0}).keys()), raw_key)


def _frozen(value: object) -> object:
    if isinstance(value, list | tuple):
        return (type(value).__name__, *(_frozen(v) for v in value))
    return value


_memo: dict[tuple, dict] = {}


def _default_filters(metadata: dict) -> dict:
    spectrum = Spectrum(_NO_PEAKS, _NO_PEAKS, metadata=metadata, metadata_harmonization=True)
    for step in DEFAULT_FILTERS:  # matchms' default_filters, in its order, without the copies
        spectrum = step(spectrum, clone=False)
    return dict(spectrum.metadata)


def ion_mode_word(value: object) -> str:
    """'positive', 'negative' or '' for an ion-mode value as files write it (``P``, ``neg``,
    ``+``, ``Positive ion mode``...; :func:`check_metadata` rejects any other word)."""
    word = str(value).strip().lower()
    return ION_MODES.get(word) or ("positive" if word.startswith("positive") else
                                   "negative" if word.startswith("negative") else "")


#: keys a file states the precursor ion under (MSP PRECURSORTYPE, MGF/matchms ADDUCT)
ADDUCT_KEYS = ("precursortype", "precursor_type", "adduct")
#: an ion's stated multiple charge: ``[M+3H]3+``, ``[M-2H]2-`` (a single charge says nothing
#: matchms' own default does not)
_ADDUCT_CHARGE = re.compile(r"\]\s*([2-9])\s*([+-])\s*$")


def standard_keys(params: dict) -> dict:
    """``params`` with the ion mode under ``ionmode`` as positive/negative (whichever of
    IONMODE, ION_MODE or POLARITY gives one first; NIST's ``Ion_mode: N``, ``POLARITY=neg``)
    and a precursor m/z written ``PRECURSOR M/Z`` under ``precursor_mz``: matchms maps
    neither, so a negative-mode record would be stored as positive or without a precursor."""
    out = dict(params)
    mode = ""
    for key in ION_MODE_KEYS:
        if key in out:
            mode = mode or ion_mode_word(out.pop(key))
    if mode:
        out["ionmode"] = mode
    for key in ("precursor_m/z", "precursor m/z"):
        if key in out and out.get("precursor_mz") in (None, ""):
            out["precursor_mz"] = out.pop(key)
    if str(out.get("charge", "")).strip() in ("", "0"):  # MSP has no charge field (and
        # GNPS writes CHARGE=0 for unknown): [M+3H]3+ says it
        for key in ADDUCT_KEYS:
            if m := _ADDUCT_CHARGE.search(str(out.get(key) or "")):
                out["charge"] = int(m.group(1)) * (-1 if m.group(2) == "-" else 1)
                break
    return out


def harmonise_metadata(params: dict) -> dict:
    """matchms-harmonised metadata of one record: key names, value harmonisation and
    ``default_filters``, as matchms gives them.

    The filters see only the keys they read (:data:`FILTER_KEYS`; a title only when the record
    has no name), and their result is memoised on those keys' values: library records of one
    compound share them, so a 64k-spectrum library runs matchms on a few thousand distinct
    sets instead of 64k records. ``tests/test_convert_fast.py`` checks the result equals
    matchms' own chain on every record of the shipped library and the demo runs.
    """
    named: dict[str, object] = {}
    for key, value in standard_keys(params).items():
        named[harmonised_key(str(key))] = value
    has_name = isinstance(named.get("compound_name"), str) or isinstance(named.get("name"), str)
    read = {k: v for k, v in named.items()
            if k in FILTER_KEYS and not (has_name and k == "title")}
    try:
        memo_key = tuple(sorted((k, _frozen(v)) for k, v in read.items()))
        hash(memo_key)
    except TypeError:  # an unhashable value: no memo
        memo_key = None
    result = _memo.get(memo_key) if memo_key is not None else None
    if result is None:
        result = _default_filters(dict(read))
        if memo_key is not None:
            if len(_memo) >= _MEMO_MAX:
                _memo.clear()
            _memo[memo_key] = result
    out = {k: v for k, v in named.items()
           if k not in read and not (isinstance(v, str) and v in _INVALID_ENTRIES)}
    out.update(result)
    return out


def peaks_in_order(items: list) -> np.ndarray:
    """Per item, True when it is a record whose peaks :func:`check_peaks` would pass unchanged
    (equal lengths, not empty, finite, intensities >= 0, m/z > 0 and ascending): one pass over
    the chunk's flat arrays instead of five reductions per record. False items still go
    through :func:`check_peaks`, which names the problem or sorts the peaks."""
    ok = np.zeros(len(items), dtype=bool)
    idx = [k for k, it in enumerate(items) if isinstance(it, RawSpectrum)
           and it.mz.ndim == 1 and it.mz.shape == it.intensity.shape and it.mz.size > 0]
    if not idx:
        return ok
    sizes = np.array([items[k].mz.size for k in idx])
    mz = np.concatenate([items[k].mz for k in idx]).astype(np.float64, copy=False)
    inten = np.concatenate([items[k].intensity for k in idx]).astype(np.float64, copy=False)
    bad = ~(np.isfinite(mz) & np.isfinite(inten) & (inten >= 0) & (mz > 0))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    descending = np.r_[np.diff(mz) < 0, False]
    descending[starts[1:] - 1] = False  # a spectrum's last peak vs the next one's first
    flagged = np.add.reduceat((bad | descending).astype(np.int64), starts)
    ok[np.array(idx)[flagged == 0]] = True
    return ok


def check_record(raw: RawSpectrum) -> tuple[RawSpectrum | None, str]:
    """(the record with its peaks in order, '') or (None, why no filter can use it)."""
    checked, reason = check_peaks(raw)
    if checked is None:
        return None, reason
    reason = check_metadata(checked)
    return (None, reason) if reason else (checked, "")


#: a scan number in a native id: "... scan=123" (Thermo mzML, mzXML) or a bare number
_NATIVE_SCAN = re.compile(r"(?:^|\s)scan=(\d+)(?:\s|$)|^(\d+)$")


def scan_number(params: dict) -> str:
    """The record's scan number: MGF ``SCANS`` (MZmine, GNPS), else ``scan=N`` (or a bare
    number) as its native id; '' when there is none (an MGF position ``index=N`` is not a
    scan)."""
    value = params.get("scans")
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is not None and str(value).strip():
        return str(value).strip()
    m = _NATIVE_SCAN.search(str(params.get("native_id", "")).strip())
    return (m.group(1) or m.group(2)) if m else ""


def store_fields(checked: RawSpectrum, source_file: str) -> dict[str, object]:
    """The store columns a record gets from where it was read, not from its metadata."""
    return {"id": checked.record_id, "source_file": source_file,
            "native_id": str(checked.params.get("native_id", checked.record_id)),
            "scan": scan_number(checked.params),
            "ms_level": int(float(checked.params.get("ms_level",
                                                     checked.params.get("mslevel", 2))))}


def harmonise(raw: RawSpectrum, source_file: str, peaks_ok: bool = False
              ) -> SpectrumRecord | str:
    """One checked record -> a store record with matchms-harmonised metadata, or a reason.
    ``peaks_ok``: :func:`peaks_in_order` passed the peaks already (only metadata is checked)."""
    if peaks_ok:
        checked, reason = raw, check_metadata(raw)
    else:
        checked, reason = check_record(raw)
    if checked is None or reason:
        return reason
    try:
        metadata = harmonise_metadata(checked.params)
        if not metadata.get("smiles") and metadata.get("inchi"):  # repair a missing SMILES
            spectrum = Spectrum(checked.mz, checked.intensity, metadata=metadata,
                                metadata_harmonization=False)
            metadata = dict(derive_inchikey_from_inchi(derive_smiles_from_inchi(spectrum))
                            .metadata)
        extra = store_fields(checked, source_file)
        Fragments(mz=checked.mz, intensities=checked.intensity)  # matchms' own peak checks
    except Exception as e:  # matchms validates peaks and metadata values
        return f"matchms rejected the record: {e}"
    return metadata_to_record(metadata, checked.mz, checked.intensity, extra=extra)


def rt_left_out(params: dict, record: SpectrumRecord) -> str:
    """The note for a record stored without the retention time it states (a value matchms
    cannot read as one: ``RETENTIONTIME: 5:30``, ``RT=abc``), '' when it has one or states
    none (``NA``)."""
    rt = record.meta.get("rt")
    if isinstance(rt, int | float) and np.isfinite(rt):
        return ""
    for key, value in params.items():
        if (str(key) == "rtinminutes" or harmonised_key(str(key)) == "retention_time") and (
                not RT_MISSING.match(str(value))):
            return (f"value left out: {str(key).upper()} is not a retention time: "
                    f"{str(value)[:40]!r}: {VALUE_LEFT_OUT}")
    return ""


_CHARGE = re.compile(r"([+-]?)\s*(\d+)\s*([+-]?)")


def _charges(value: object) -> list[int]:
    """The signed charges a ``CHARGE`` value lists (``2+ and 3+``, ``2+,3-``, or pyteomics'
    ChargeList of them)."""
    if isinstance(value, list | tuple):
        return [c for v in value for c in _charges(v)]
    return [int(n) * (-1 if "-" in (a + b) else 1)
            for a, n, b in _CHARGE.findall(str(value or ""))]


def _harmonised(item: RawSpectrum, source_file: str, peaks_ok: bool
                ) -> tuple[SpectrumRecord | str, list[str]]:
    """:func:`harmonise`, and the notes of values the record is kept without. A ``CHARGE``
    that lists several charges (``2+ and 3+``: the instrument could not tell) is stored as no
    stated charge, never as the first; one listed twice (``1+ and 1+``) is that one."""
    notes = []
    value = item.params.get("charge")
    listed = _charges(value)
    if len(set(listed)) > 1:
        said = " and ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        item = RawSpectrum(item.record_id, item.mz, item.intensity,
                           {k: v for k, v in item.params.items() if k != "charge"})
        notes.append(f"value left out: CHARGE lists several charges: {said[:40]!r}: "
                     f"{VALUE_LEFT_OUT}")
    elif len(listed) > 1:
        item = RawSpectrum(item.record_id, item.mz, item.intensity,
                           {**item.params, "charge": listed[0]})
    rec = harmonise(item, source_file, peaks_ok=peaks_ok)
    if isinstance(rec, str):
        return rec, []
    if note := rt_left_out(item.params, rec):
        notes.append(note)
    return rec, notes


def _convert_chunk(args: tuple[list | MgfChunk, str, PreprocessConfig | None]
                   ) -> tuple[list[tuple[str, int | str] | QuarantineRecord], RecordBatch]:
    """One chunk in a worker: parse (MGF), harmonise, and clean when asked.

    Returns, in file order, (record id, its row in the batch or the reason it was rejected) or
    a reader's QuarantineRecord; and the kept records as one column batch."""
    from msid.preprocess import clean_batch, finish_record

    payload, source_file, clean = args
    items = parse_mgf_chunk(payload) if isinstance(payload, MgfChunk) else payload
    outcome: list = []
    for item, ok in zip(items, peaks_in_order(items), strict=True):
        if isinstance(item, QuarantineRecord):
            outcome.append(item)
        else:
            rec, notes = _harmonised(item, source_file, bool(ok))
            outcome += [QuarantineRecord(source_file, item.record_id, n) for n in notes]
            outcome.append((item.record_id, rec))
    if clean is not None:
        ready = [k for k, o in enumerate(outcome)
                 if isinstance(o, tuple) and not isinstance(o[1], str)]
        recs = [outcome[k][1] for k in ready]
        for k, rec, peaks in zip(ready, recs, clean_batch(recs, clean), strict=True):
            outcome[k] = (outcome[k][0], finish_record(rec, peaks, clean))
    kept: list[SpectrumRecord] = []
    for k, o in enumerate(outcome):
        if isinstance(o, tuple) and not isinstance(o[1], str):
            outcome[k] = (o[0], len(kept))
            kept.append(o[1])
    return outcome, RecordBatch.of(kept)


def unique_id(rid: str, taken: set[str], next_k: dict[str, int]) -> str:
    """``rid#2``, ``rid#3``, ...: the first of them no record holds yet (``next_k`` remembers
    where each id's count stands, so a file of 100k 'Unknown' records stays linear)."""
    k = next_k.get(rid, 2)
    while f"{rid}#{k}" in taken:
        k += 1
    next_k[rid] = k + 1
    return f"{rid}#{k}"


def convert_file(path: str | os.PathLike, out: str | os.PathLike, n_jobs: int = 1,
                 progress: bool = True, clean: PreprocessConfig | None = None,
                 ms2_only: bool = False) -> ConvertStats:
    """Read ``path`` (mzML/mzXML/MGF/MSP, gz allowed) into a store at ``out`` (atomic write).

    The file streams through in chunks; MGF chunks are parsed in the worker processes too. With
    ``clean`` the records also go through the preprocessing chain on the way (one pass, one
    store: what :func:`msid.preprocess.preprocess_store` would make of the converted store).
    ``ms2_only`` (MS/MS runs and libraries): an MS1 record is quarantined here, so it claims no
    id that an MS2 record of the same title would then lose (SIRIUS/MZmine MGF exports).
    """
    from msid.preprocess import MS1_REASON

    path = Path(path)
    stats = ConvertStats()
    seen: set[str] = set()
    next_k: dict[str, int] = {}
    bar = progress_bar(desc=f"convert {path.name}", unit=" spectra", disable=not progress,
                       mininterval=2)
    prov: dict = {"stage": "convert", "input": str(path)}
    if clean is not None:
        prov = {"stage": "convert+preprocess", "input": str(path), "config": asdict(clean)}
    with SpectrumStoreWriter(out, provenance=prov) as writer:

        def reject(rid: str, reason: str) -> None:
            writer.quarantine(QuarantineRecord(path.name, rid, reason))
            if FILE_DAMAGE in reason or FILE_ENDS_EARLY in reason:  # the file is damaged
                stats.damaged = "; ".join(filter(None, (stats.damaged, reason)))
            if FILE_DAMAGE not in reason:  # a record (a cut-off one too): read == stored +
                stats.quarantined[reason_group(reason) if clean else reason] += 1

        jobs = ((payload, path.name, clean) for payload in read_chunks(path))
        notes: list[QuarantineRecord] = []  # values left out of the record that follows
        for outcome, batch in imap_ordered(_convert_chunk, jobs, n_jobs):
            keep = np.zeros(len(batch), dtype=bool)
            for item in outcome:
                if isinstance(item, QuarantineRecord) and item.reason.endswith(VALUE_LEFT_OUT):
                    notes.append(item)  # said once the record is stored (under its final id)
                    continue
                if isinstance(item, QuarantineRecord):
                    stats.read += FILE_DAMAGE not in item.reason  # a note, not a record
                    reject(item.record_id, item.reason)
                    notes = []
                    continue
                stats.read += 1
                rid, row = item
                said, notes = notes, []
                if not isinstance(row, str) and ms2_only and batch.columns["ms_level"][row] == 1:
                    row = MS1_REASON
                if isinstance(row, str):  # a rejected record claims no id (nor its note)
                    reject(rid, row)
                    continue
                if rid in seen:  # MSP names, MGF titles repeat: keep the record, tell them apart
                    new = unique_id(rid, seen, next_k)
                    if batch.columns["native_id"][row] == rid:  # MSP: the name was both
                        batch.columns["native_id"][row] = new
                    rid = batch.columns["id"][row] = new
                    stats.renamed += 1
                seen.add(rid)
                keep[row] = True
                for n in said:
                    writer.quarantine(QuarantineRecord(path.name, rid, n.reason))
                    stats.noted[reason_group(n.reason)] += 1
            writer.add_batch(batch if keep.all() else batch.select(keep))
            stats.stored += int(keep.sum())
            bar.update(sum(not (isinstance(o, QuarantineRecord)
                               and o.reason.endswith(VALUE_LEFT_OUT)) for o in outcome))
    bar.close()
    return stats


def unreadable_run_store(path: str | os.PathLike, out: str | os.PathLike,
                         error: Exception) -> None:
    """An empty store for a run file that cannot be read at all, its one quarantine row saying
    why: the run goes on through the DAG (an empty table, a report that names the problem, a row
    in the batch report) instead of stopping the batch."""
    path = Path(path)
    with SpectrumStoreWriter(out, provenance={"stage": "convert", "input": str(path),
                                              "unreadable": str(error)}) as writer:
        writer.quarantine(QuarantineRecord(path.name, WHOLE_FILE, f"{UNREADABLE}{error}"))

