"""Stage 1: a raw run or library file -> a spectrum store (peaks as acquired, metadata harmonised).

Each record is checked before it is stored; a bad one goes to the quarantine table with its
reason and the rest of the file carries on. Only a file that cannot be opened at all fails.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matchms import Spectrum
from matchms.filtering import (
    default_filters,
    derive_inchikey_from_inchi,
    derive_smiles_from_inchi,
)
from tqdm import tqdm

from msid.io import RawSpectrum, read_spectra
from msid.parallel import chunks, imap_ordered
from msid.spectrum import matchms_to_record
from msid.store import QuarantineRecord, SpectrumRecord, SpectrumStoreWriter

logging.getLogger("matchms").setLevel(logging.ERROR)


@dataclass
class ConvertStats:
    read: int = 0
    stored: int = 0
    quarantined: Counter = field(default_factory=Counter)


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
PRECURSOR_KEYS = ("pepmass", "precursor_mz", "precursormz", "precursor_m/z")
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


def harmonise(raw: RawSpectrum, source_file: str) -> SpectrumRecord | str:
    """One checked record -> a store record with matchms-harmonised metadata, or a reason."""
    checked, reason = check_peaks(raw)
    if checked is None:
        return reason
    reason = check_metadata(checked)
    if reason:
        return reason
    try:
        spectrum = Spectrum(checked.mz, checked.intensity, metadata=dict(checked.params),
                            metadata_harmonization=True)
        spectrum = default_filters(spectrum)
        if not spectrum.get("smiles") and spectrum.get("inchi"):  # repair a missing SMILES
            spectrum = derive_inchikey_from_inchi(derive_smiles_from_inchi(spectrum))
        ms_level = int(float(checked.params.get("ms_level", checked.params.get("mslevel", 2))))
    except Exception as e:  # matchms validates peaks and metadata values
        return f"matchms rejected the record: {e}"
    return matchms_to_record(spectrum, extra={
        "id": checked.record_id,
        "source_file": source_file,
        "native_id": str(checked.params.get("native_id", checked.record_id)),
        "ms_level": ms_level,
    })


def _harmonise_chunk(args: tuple[list[RawSpectrum], str]) -> list[tuple[str, SpectrumRecord | str]]:
    chunk, source_file = args
    return [(r.record_id, harmonise(r, source_file)) for r in chunk]


def convert_file(path: str | os.PathLike, out: str | os.PathLike, n_jobs: int = 1,
                 progress: bool = True) -> ConvertStats:
    """Read ``path`` (mzML/mzXML/MGF/MSP, gz allowed) into a store at ``out`` (atomic write)."""
    path = Path(path)
    stats = ConvertStats()
    seen: set[str] = set()
    bar = tqdm(desc=f"convert {path.name}", unit=" spectra", disable=not progress, mininterval=2)
    with SpectrumStoreWriter(out, provenance={"stage": "convert", "input": str(path)}) as writer:

        def reject(rid: str, reason: str) -> None:
            writer.quarantine(QuarantineRecord(path.name, rid, reason))
            stats.quarantined[reason] += 1

        def batches() -> Iterator[tuple[list[RawSpectrum], str]]:
            for batch in chunks(read_spectra(path), 2000):
                good = []
                for item in batch:
                    stats.read += 1
                    if isinstance(item, QuarantineRecord):
                        reject(item.record_id, item.reason)
                    elif item.record_id in seen:
                        reject(item.record_id, "duplicate spectrum id")
                    else:
                        seen.add(item.record_id)
                        good.append(item)
                yield good, path.name

        for chunk in imap_ordered(_harmonise_chunk, batches(), n_jobs):
            for rid, rec in chunk:
                if isinstance(rec, str):
                    reject(rid, rec)
                else:
                    writer.add(rec)
                    stats.stored += 1
            bar.update(len(chunk))
    bar.close()
    return stats
