"""The one spectrum store every msid stage and model reads: HDF5, peaks flat, read lazily.

Layout (format version 1)::

    /peaks/mz          float64 (total_peaks,)   all peaks of all spectra, concatenated
    /peaks/intensity   float32 (total_peaks,)
    /peaks/offsets     int64   (n + 1,)         spectrum i = [offsets[i], offsets[i+1])
    /metadata/<col>    one 1-D dataset per column of METADATA_COLUMNS (n,); a column added
                       later (``scan``) reads as empty from a store written before it
    /quarantine/<col>  source_file, record_id, reason (one row per rejected record)
    attrs: format, format_version, msid_version, created, n_spectra, n_quarantined, provenance,
           content_sha256 (of the spectra, metadata and quarantine: the same for every build of
           the same data, unlike the file's bytes, which hold ``created``)

Reading never loads every peak: :meth:`SpectrumStore.peaks` and :meth:`peaks_range` slice the
flat arrays, so a DataLoader over a 1M-spectrum store holds only the batch it asks for.
Writing goes to a temporary file next to the target and is renamed into place on success, so a
killed job never leaves a half-written store behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np
import pandas as pd

from msid import __version__
from msid.atomic import commit, discard, new_temp

FORMAT = "msid-spectrum-store"
FORMAT_VERSION = 1

#: column name -> kind ("str", "float", "int"); order is the on-disk order.
METADATA_COLUMNS: dict[str, str] = {
    "id": "str",
    "source_file": "str",
    "native_id": "str",
    "scan": "str",  # the instrument's scan number (mzML scan=N, MGF SCANS): what GNPS FBMN
    #                 and quantification tables link by ('' when the input has none)
    "ms_level": "int",
    "precursor_mz": "float",
    "charge": "int",
    "adduct": "str",
    "ion_mode": "str",
    "rt": "float",
    "instrument_type": "str",
    "collision_energy": "str",
    "name": "str",
    "smiles": "str",
    "inchikey": "str",
    "formula": "str",
    "peptide": "str",
    "fold": "str",
}
QUARANTINE_COLUMNS = ("source_file", "record_id", "reason")

_MISSING = {"str": "", "float": np.nan, "int": 0}
_STR = h5py.string_dtype(encoding="utf-8")


@dataclass
class SpectrumRecord:
    """One spectrum on its way into a store: peaks plus the metadata columns it knows."""

    mz: np.ndarray
    intensity: np.ndarray
    meta: dict[str, object] = field(default_factory=dict)


#: the record id of a run file that could not be read at all (its only quarantine row)
WHOLE_FILE = "(whole file)"
#: ... and how its reason starts (the problem follows)
UNREADABLE = "file unreadable: "
#: what the reason of the row that marks where a damaged file stopped being readable says (the
#: records before it were read; the row is a note about the file, no record of it)
FILE_DAMAGE = "the rest of the file is lost"
#: what the reason of a record cut off by the end of the file says (the record is lost and
#: counted; the file is named as damaged: whatever came after the cut is missing)
FILE_ENDS_EARLY = "the file ends in the middle of it"
#: what a note row of the quarantine table ends with: its record was stored, without one value
#: that no step needs and that could not be read (an MGF ``RTINSECONDS=n/a``); counted apart,
#: never as a lost record
VALUE_LEFT_OUT = "the record is kept without it"
#: why an MS1 record is no query or library spectrum where precursors are required (ESI MS/MS;
#: EI spectra, which are MS1, go through a configuration that requires no precursor)
MS1_REASON = "require_ms2: an MS1 spectrum (MS/MS runs and libraries hold MS2 spectra)"


def is_kept_note(reasons: pd.Series) -> pd.Series:
    """Per quarantine reason: is it a :data:`VALUE_LEFT_OUT` note (a stored record's)?"""
    return reasons.astype(str).str.endswith(VALUE_LEFT_OUT)


def lost_records(quarantine: pd.DataFrame) -> pd.DataFrame:
    """The quarantine rows that are records (the :data:`FILE_DAMAGE` notes and the
    :data:`VALUE_LEFT_OUT` notes of stored records left out)."""
    if not len(quarantine):
        return quarantine
    reasons = quarantine["reason"].astype(str)
    return quarantine[~reasons.str.contains(FILE_DAMAGE, regex=False) & ~is_kept_note(reasons)]


def kept_notes(quarantine: pd.DataFrame) -> pd.DataFrame:
    """The :data:`VALUE_LEFT_OUT` rows: records stored without a value they stated."""
    if not len(quarantine):
        return quarantine
    return quarantine[is_kept_note(quarantine["reason"])]


def damage_notes(quarantine: pd.DataFrame) -> list[str]:
    """What the :data:`FILE_DAMAGE` rows say (where a damaged file stopped being readable)."""
    if not len(quarantine):
        return []
    reasons = quarantine["reason"].astype(str)
    return reasons[reasons.str.contains(FILE_DAMAGE, regex=False)].tolist()


@dataclass(frozen=True)
class QuarantineRecord:
    """A record that was not stored, and why (``record_id`` :data:`WHOLE_FILE`: a run file that
    could not be read at all)."""

    source_file: str
    record_id: str
    reason: str


def _column_array(values: Sequence[object], kind: str) -> np.ndarray:
    if kind == "str":
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    if kind == "float":
        out = np.full(len(values), np.nan, dtype=np.float64)
        for i, v in enumerate(values):
            try:
                out[i] = float(v) if v not in (None, "") else np.nan
            except (TypeError, ValueError):
                out[i] = np.nan
        return out
    out_i = np.zeros(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            out_i[i] = int(v) if v not in (None, "") else 0
        except (TypeError, ValueError):
            out_i[i] = 0
    return out_i


@dataclass
class RecordBatch:
    """Records as store columns (what a worker process hands back: a few arrays, not a dict
    per record). ``sizes[i]`` peaks of record ``i`` lie in the flat ``mz``/``intensity``."""

    columns: dict[str, np.ndarray]
    mz: np.ndarray
    intensity: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, records: Sequence[SpectrumRecord]) -> RecordBatch:
        columns = {col: _column_array([r.meta.get(col, _MISSING[kind]) for r in records], kind)
                   for col, kind in METADATA_COLUMNS.items()}
        sizes = np.array([len(r.mz) for r in records], dtype=np.int64)
        mz = (np.concatenate([np.asarray(r.mz, np.float64) for r in records]) if records
              else np.zeros(0))
        inten = (np.concatenate([np.asarray(r.intensity, np.float32) for r in records])
                 if records else np.zeros(0, np.float32))
        return cls(columns, mz, inten, sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def select(self, keep: np.ndarray) -> RecordBatch:
        """The records where ``keep`` (bool, one per record) is true."""
        peak_keep = np.repeat(keep, self.sizes)
        return RecordBatch({c: v[keep] for c, v in self.columns.items()}, self.mz[peak_keep],
                           self.intensity[peak_keep], self.sizes[keep])


def reason_group(reason: str) -> str:
    """What a quarantine reason is counted under: its first two ``": "``-parts (the check and
    what failed; a value after them is the record's own), as conversion, preprocessing and the
    reports count them."""
    return ": ".join(str(reason).split(": ")[:2])


class ContentDigest:
    """sha256 of a store's content (peaks, per-spectrum peak counts, metadata columns,
    quarantine rows), fed in order by however many batches: the same data give the same digest
    whatever the chunking, the build time or HDF5's byte layout. Strings are hashed UTF-8, each
    followed by a NUL; numbers as little-endian float64 (m/z, float columns), float32
    (intensity) and int64 (counts, int columns)."""

    _PARTS: ClassVar[tuple[str, ...]] = (
        "mz", "intensity", "sizes", *(f"metadata/{c}" for c in METADATA_COLUMNS),
        *(f"quarantine/{c}" for c in QUARANTINE_COLUMNS))
    _NUMERIC: ClassVar[dict[str, str]] = {"float": "<f8", "int": "<i8"}

    def __init__(self) -> None:
        self._h = {part: hashlib.sha256() for part in self._PARTS}

    def _strings(self, part: str, values) -> None:
        if len(values):
            self._h[part].update(("\0".join(str(v) for v in values) + "\0").encode())

    def add_peaks(self, mz: np.ndarray, intensity: np.ndarray, sizes: np.ndarray) -> None:
        self._h["mz"].update(np.ascontiguousarray(mz, dtype="<f8").tobytes())
        self._h["intensity"].update(np.ascontiguousarray(intensity, dtype="<f4").tobytes())
        self._h["sizes"].update(np.ascontiguousarray(sizes, dtype="<i8").tobytes())

    def add_metadata(self, columns: dict[str, np.ndarray]) -> None:
        for col, kind in METADATA_COLUMNS.items():
            if kind == "str":
                self._strings(f"metadata/{col}", columns[col])
            else:
                self._h[f"metadata/{col}"].update(
                    np.ascontiguousarray(columns[col], dtype=self._NUMERIC[kind]).tobytes())

    def add_quarantine(self, rows: Sequence[QuarantineRecord]) -> None:
        for col in QUARANTINE_COLUMNS:
            self._strings(f"quarantine/{col}", [getattr(r, col) for r in rows])

    def hexdigest(self) -> str:
        total = hashlib.sha256()
        for part in self._PARTS:
            total.update(f"{part}:{self._h[part].hexdigest()}\n".encode())
        return total.hexdigest()


class SpectrumStoreWriter:
    """Append spectra in chunks; the file appears at ``path`` only after :meth:`close`.

    Use as a context manager. An exception inside the ``with`` block deletes the partial file.
    """

    def __init__(self, path: str | os.PathLike, provenance: dict | None = None,
                 chunk_size: int = 4096) -> None:
        self.path = Path(path)
        self._tmp = new_temp(self.path)  # stale temporaries of a killed writer removed first
        self._h5 = h5py.File(self._tmp, "w")
        self._provenance = provenance or {}
        self._chunk_size = chunk_size
        self._buffer: list[SpectrumRecord] = []
        self._quarantine: list[QuarantineRecord] = []
        self._n = 0
        self._n_peaks = 0
        self._digest = ContentDigest()
        peaks = self._h5.create_group("peaks")
        # the datasets are kept open while writing: reopening one per batch drops its chunk
        # cache, so each batch re-read and recompressed the last, partly filled chunk
        self._peaks = {
            "mz": peaks.create_dataset("mz", shape=(0,), maxshape=(None,), dtype=np.float64,
                                       chunks=(65536,), compression="lzf"),
            "intensity": peaks.create_dataset("intensity", shape=(0,), maxshape=(None,),
                                              dtype=np.float32, chunks=(65536,),
                                              compression="lzf"),
            "offsets": peaks.create_dataset("offsets", data=np.zeros(1, dtype=np.int64),
                                            maxshape=(None,), chunks=(16384,),
                                            compression="lzf")}
        meta = self._h5.create_group("metadata")
        self._meta = {}
        for col, kind in METADATA_COLUMNS.items():
            dtype = _STR if kind == "str" else (np.float64 if kind == "float" else np.int64)
            # compressed: a small store (a few spectra) is not megabytes of empty chunk
            self._meta[col] = meta.create_dataset(col, shape=(0,), maxshape=(None,), dtype=dtype,
                                                  chunks=(16384,), compression="lzf")

    def add(self, record: SpectrumRecord) -> None:
        self._buffer.append(record)
        if len(self._buffer) >= self._chunk_size:
            self._flush()

    def add_batch(self, batch: RecordBatch) -> None:
        """Append a batch of records already in column form (after any buffered ones)."""
        self._flush()
        self._write(batch)

    def quarantine(self, record: QuarantineRecord) -> None:
        self._quarantine.append(record)

    def _flush(self) -> None:
        if not self._buffer:
            return
        buf, self._buffer = self._buffer, []
        self._write(RecordBatch.of(buf))

    def _write(self, batch: RecordBatch) -> None:
        if not len(batch):
            return
        total = int(batch.sizes.sum())
        for name, values in (("mz", batch.mz), ("intensity", batch.intensity)):
            ds = self._peaks[name]
            ds.resize((self._n_peaks + total,))
            if total:
                ds[self._n_peaks:] = values
        off = self._peaks["offsets"]
        off.resize((self._n + len(batch) + 1,))
        off[self._n + 1:] = self._n_peaks + np.cumsum(batch.sizes)
        for col in METADATA_COLUMNS:
            ds = self._meta[col]
            ds.resize((self._n + len(batch),))
            ds[self._n:] = batch.columns[col]
        self._digest.add_peaks(batch.mz, batch.intensity, batch.sizes)
        self._digest.add_metadata(batch.columns)
        self._n += len(batch)
        self._n_peaks += total

    def close(self) -> Path:
        self._flush()
        if any(r.reason.endswith(VALUE_LEFT_OUT) for r in self._quarantine):
            # a note speaks of a stored record: one whose record was lost on the way (a later
            # filter, a left-out id) goes with it, whichever step carried it here
            stored = set(self._meta["id"].asstr()[:])
            self._quarantine = [r for r in self._quarantine
                                if not r.reason.endswith(VALUE_LEFT_OUT) or r.record_id in stored]
        q = self._h5.create_group("quarantine")
        for col in QUARANTINE_COLUMNS:
            q.create_dataset(col, data=np.array([getattr(r, col) for r in self._quarantine],
                                                dtype=object), dtype=_STR)
        self._digest.add_quarantine(self._quarantine)
        self._h5.attrs.update({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "msid_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "n_spectra": self._n,
            "n_quarantined": len(self._quarantine),
            "provenance": json.dumps(self._provenance, sort_keys=True, default=str),
            "content_sha256": self._digest.hexdigest(),
        })
        self._h5.close()
        return commit(self._tmp, self.path)  # a failed rename removes the temporary

    def abort(self) -> None:
        try:
            self._h5.close()
        finally:
            discard(self._tmp)

    def __enter__(self) -> SpectrumStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


class StoreFormatError(ValueError):
    """The file is not an msid spectrum store (or one of an unknown version)."""


class SpectrumStore:
    """Lazy reader. Metadata (small) is loaded on first use; peaks are sliced on demand."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            # a chunk cache that holds a few chunks of each flat array: neighbouring spectra
            # are read without decompressing their chunk again
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=16 << 20)
        except OSError as e:
            raise StoreFormatError(f"{self.path}: cannot open as HDF5 ({e})") from e
        if self._h5.attrs.get("format") != FORMAT:
            self._h5.close()
            raise StoreFormatError(f"{self.path}: not an msid spectrum store")
        version = int(self._h5.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            self._h5.close()
            raise StoreFormatError(
                f"{self.path}: store format {version}, expected {FORMAT_VERSION}")
        self._offsets: np.ndarray = self._h5["peaks/offsets"][:]
        self._mz = self._h5["peaks/mz"]  # open once: the chunk cache lives with the handle
        self._intensity = self._h5["peaks/intensity"]
        self._metadata: pd.DataFrame | None = None

    # -- size and metadata -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def attrs(self) -> dict:
        out = dict(self._h5.attrs)
        out["provenance"] = json.loads(out.get("provenance", "{}"))
        return out

    @property
    def metadata(self) -> pd.DataFrame:
        if self._metadata is None:
            self._metadata = pd.DataFrame({col: self.column(col) for col in METADATA_COLUMNS})
        return self._metadata

    def column(self, col: str) -> np.ndarray:
        """One metadata column, read alone when the whole table is not loaded yet."""
        if self._metadata is not None:
            return self._metadata[col].to_numpy()
        kind = METADATA_COLUMNS[col]
        group = self._h5["metadata"]
        if col not in group:  # a store written before the column existed
            return np.full(len(self), _MISSING[kind], dtype=object if kind == "str" else None)
        return group[col].asstr()[:] if kind == "str" else group[col][:]

    @property
    def quarantine(self) -> pd.DataFrame:
        q = self._h5["quarantine"]
        return pd.DataFrame({c: q[c].asstr()[:] for c in QUARANTINE_COLUMNS})

    @property
    def n_peaks(self) -> np.ndarray:
        return np.diff(self._offsets)

    @property
    def content_sha256(self) -> str:
        """The digest of what the store holds (:class:`ContentDigest`): recorded when it was
        written, or computed here for a store written before msid recorded it."""
        recorded = self._h5.attrs.get("content_sha256")
        if recorded:
            return str(recorded)
        digest = ContentDigest()
        step = 1 << 16  # spectra a block: memory bounded however large the store
        md = self.metadata
        for start in range(0, len(self), step):
            stop = min(start + step, len(self))
            a, b = int(self._offsets[start]), int(self._offsets[stop])
            digest.add_peaks(self._mz[a:b], self._intensity[a:b], self.n_peaks[start:stop])
            digest.add_metadata({c: md[c].to_numpy()[start:stop] for c in METADATA_COLUMNS})
        q = self.quarantine
        digest.add_quarantine([QuarantineRecord(*row) for row in
                               q[list(QUARANTINE_COLUMNS)].itertuples(index=False)])
        return digest.hexdigest()

    def spectra_sha256(self) -> str:
        """sha256 of the spectra alone (peaks, peak counts and precursor m/z, in order), not
        of where they came from: the same file converted under two names gives the same one
        (:attr:`content_sha256` also covers the metadata, source file names included)."""
        h = hashlib.sha256()
        step = 1 << 16
        precursor = self.metadata["precursor_mz"].to_numpy(dtype="<f8")
        for start in range(0, len(self), step):
            stop = min(start + step, len(self))
            a, b = int(self._offsets[start]), int(self._offsets[stop])
            for arr, dtype in ((self._mz[a:b], "<f8"), (self._intensity[a:b], "<f4"),
                               (self.n_peaks[start:stop], "<i8"), (precursor[start:stop], "<f8")):
                h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
        return h.hexdigest()

    # -- peaks -------------------------------------------------------------------------------
    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return self._mz[a:b], self._intensity[a:b]

    def peaks_range(self, start: int, stop: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Peaks of spectra ``start..stop-1`` with one read of each flat array."""
        stop = min(stop, len(self))
        a, b = int(self._offsets[start]), int(self._offsets[stop])
        mz = self._mz[a:b]
        inten = self._intensity[a:b]
        cuts = self._offsets[start:stop + 1] - a
        return [(mz[cuts[k]:cuts[k + 1]], inten[cuts[k]:cuts[k + 1]])
                for k in range(stop - start)]

    def peaks_many(self, indices: Sequence[int], gap: int = 64
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Peaks of arbitrary spectra, order of ``indices`` kept. Sorted indices less than
        ``gap`` apart are read together, one slice of each flat array per run."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(int(idx.min() if idx.min() < 0 else idx.max()))
        order = np.argsort(idx, kind="stable")
        out: list[tuple[np.ndarray, np.ndarray]] = [None] * len(idx)  # type: ignore[list-item]
        k = 0
        while k < len(order):
            end = k
            while end + 1 < len(order) and idx[order[end + 1]] - idx[order[end]] < gap:
                end += 1
            start = int(idx[order[k]])
            block = self.peaks_range(start, int(idx[order[end]]) + 1)
            for j in order[k:end + 1]:
                out[j] = block[int(idx[j]) - start]
            k = end + 1
        return out

    def all_peaks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The flat arrays (mz, intensity, offsets). Only for in-memory indexes (search)."""
        return self._mz[:], self._intensity[:], self._offsets

    def iter_records(self, batch_size: int = 4096) -> Iterator[SpectrumRecord]:
        md = self.metadata.to_dict("records")
        for start in range(0, len(self), batch_size):
            for k, (mz, inten) in enumerate(self.peaks_range(start, start + batch_size)):
                yield SpectrumRecord(mz, inten, md[start + k])

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> SpectrumStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def content_digest(path: str | os.PathLike) -> str:
    """sha256 naming a library's content: a store's :attr:`SpectrumStore.content_sha256`
    (stable across rebuilds of the same data), any other file's bytes."""
    from msid.digest import sha256_file

    try:
        with SpectrumStore(path) as store:
            return store.content_sha256
    except StoreFormatError:
        return sha256_file(path)


def subset_store(src: str | os.PathLike, out: str | os.PathLike, rows: Sequence[int],
                 provenance: dict | None = None) -> Path:
    """Copy the spectra ``rows`` of ``src`` (in that order) into a new store ``out``, reading
    their peaks a block of rows at a time (nearby rows in one slice: :meth:`peaks_many`), so
    memory stays bounded however large the store."""
    rows = list(rows)
    with SpectrumStore(src) as store, SpectrumStoreWriter(
            out, provenance={"stage": "subset", "input": str(src), **(provenance or {})}) as w:
        md = store.metadata.to_dict("records")
        for start in range(0, len(rows), 8192):
            block = rows[start:start + 8192]
            for r, (mz, inten) in zip(block, store.peaks_many(block), strict=True):
                w.add(SpectrumRecord(mz, inten, md[r]))
    return Path(out)
