"""A torch Dataset over a :class:`~msid.store.SpectrumStore`, for training and embedding spectra.

Each item is one labelled spectrum: its top-N peaks by intensity (then sorted by m/z), precursor
m/z, the index of its structure in :attr:`SpectraDataset.structures` (unique normalised
structures, by InChIKey first block) and, when asked, the target Morgan fingerprint. Peaks are
read lazily per item (the HDF5 file is opened per process, so DataLoader workers work) unless
``in_memory=True`` loads the flat peak arrays once (fast random access for small stores).
:func:`collate_spectra` pads a list of items to one batch with a padding mask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from msid.chem.structures import parse_structure
from msid.store import SpectrumStore


def top_peaks(mz: np.ndarray, intensity: np.ndarray, max_peaks: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """The ``max_peaks`` most intense peaks (ties: lower m/z first), sorted by m/z."""
    if len(mz) > max_peaks:
        keep = np.sort(np.argsort(-intensity, kind="stable")[:max_peaks])
        mz, intensity = mz[keep], intensity[keep]
    return mz, intensity


# Adduct vocabulary of the models' adduct embedding (index 0: any other or unknown adduct).
# Appending is safe; reordering changes what trained models read.
ADDUCTS = ("[M+H]+", "[M-H]-", "[M+Na]+", "[M]+", "[M+NH4]+", "[M+K]+", "[M-H2O+H]+",
           "[M+HCOO]-", "[M+CH3COOH-H]-", "[M+CH3COO]-", "[M+Cl]-", "[M-2H]-", "[M+2H]2+")
_ADDUCT_INDEX = {a: i + 1 for i, a in enumerate(ADDUCTS)}


def adduct_index(adduct: str | None) -> int:
    return _ADDUCT_INDEX.get(str(adduct or "").strip(), 0)


def spectrum_item(mz: np.ndarray, intensity: np.ndarray, precursor_mz: float,
                  max_peaks: int, adduct: str = "") -> dict:
    mz, intensity = top_peaks(np.asarray(mz, np.float64), np.asarray(intensity, np.float32),
                              max_peaks)
    peak = float(intensity.max()) if len(intensity) else 1.0
    return {"mz": mz.astype(np.float64),
            "intensity": (intensity / (peak if peak > 0 else 1.0)).astype(np.float32),
            "precursor_mz": float(precursor_mz) if np.isfinite(precursor_mz) else 0.0,
            "adduct": adduct_index(adduct)}


def collate_spectra(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Pad peaks to the longest spectrum. ``pad_mask`` is True at padding positions."""
    n = max(1, max(len(it["mz"]) for it in items))
    b = len(items)
    mz = np.zeros((b, n), np.float64)
    inten = np.zeros((b, n), np.float32)
    pad = np.ones((b, n), bool)
    for i, it in enumerate(items):
        k = len(it["mz"])
        mz[i, :k], inten[i, :k], pad[i, :k] = it["mz"], it["intensity"], False
    out = {"mz": torch.from_numpy(mz), "intensity": torch.from_numpy(inten),
           "pad_mask": torch.from_numpy(pad),
           "precursor_mz": torch.tensor([it["precursor_mz"] for it in items],
                                        dtype=torch.float64),
           "adduct": torch.tensor([it.get("adduct", 0) for it in items], dtype=torch.long)}
    if "struct_idx" in items[0]:
        out["struct_idx"] = torch.tensor([it["struct_idx"] for it in items], dtype=torch.long)
    if "row" in items[0]:
        out["row"] = torch.tensor([it["row"] for it in items], dtype=torch.long)
    if "fp" in items[0]:
        out["fp"] = torch.from_numpy(np.stack([it["fp"] for it in items]))
    return out


class SpectraDataset(Dataset):
    """Labelled spectra of a store (optionally only some adducts / rows).

    ``structures`` lists the unique structures (flat SMILES) and ``struct_of_item`` maps each
    item to one; ``fingerprints`` (optional callable SMILES list -> (n, bits) array) adds
    ``fp`` (float32 target bits) to every item.
    """

    def __init__(self, store: str | os.PathLike, *, max_peaks: int = 64,
                 adducts: Sequence[str] | None = None, rows: Sequence[int] | None = None,
                 fingerprints=None, in_memory: bool = False, max_items: int = 0,
                 seed: int = 0) -> None:
        self.path = Path(store)
        self.max_peaks = max_peaks
        with SpectrumStore(self.path) as st:
            md = st.metadata
            n_peaks = st.n_peaks
            cand = np.arange(len(st)) if rows is None else np.asarray(rows, dtype=np.int64)
            ok = (md["smiles"].to_numpy()[cand] != "") & (n_peaks[cand] > 0)
            ok &= np.isfinite(md["precursor_mz"].to_numpy()[cand])
            if adducts:
                ok &= md["adduct"].isin(list(adducts)).to_numpy()[cand]
            cand = cand[ok]
            smiles = md["smiles"].to_numpy()
            ik14, flat, keep = [], [], []
            for r in cand:
                s = parse_structure(str(smiles[r]))
                if s is None or not s.inchikey:
                    continue
                keep.append(r)
                ik14.append(s.inchikey14)
                flat.append(s.smiles_flat)
            self.rows = np.asarray(keep, dtype=np.int64)
            if max_items and len(self.rows) > max_items:
                sel = np.sort(np.random.default_rng(seed).choice(len(self.rows), max_items,
                                                                 replace=False))
                self.rows = self.rows[sel]
                ik14 = [ik14[i] for i in sel]
                flat = [flat[i] for i in sel]
            self.precursor_mz = md["precursor_mz"].to_numpy()[self.rows].astype(np.float64)
            self.adducts = md["adduct"].astype(str).to_numpy()[self.rows]
            self.ids = md["id"].to_numpy()[self.rows]
        first: dict[str, int] = {}
        self.structures: list[str] = []
        self.inchikey14: list[str] = []
        self.struct_of_item = np.zeros(len(self.rows), dtype=np.int64)
        for i, (k, s) in enumerate(zip(ik14, flat, strict=True)):
            if k not in first:
                first[k] = len(self.structures)
                self.structures.append(s)
                self.inchikey14.append(k)
            self.struct_of_item[i] = first[k]
        self.fingerprints = fingerprints
        self._fp = fingerprints(self.structures) if fingerprints is not None else None
        self._store: SpectrumStore | None = None
        self._pid = -1
        self._flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if in_memory:
            with SpectrumStore(self.path) as st:
                self._flat = st.all_peaks()

    def __len__(self) -> int:
        return len(self.rows)

    def _peaks(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        if self._flat is not None:
            mz, inten, off = self._flat
            return mz[off[row]:off[row + 1]], inten[off[row]:off[row + 1]]
        if self._store is None or self._pid != os.getpid():  # one handle per worker process
            self._store = SpectrumStore(self.path)
            self._pid = os.getpid()
        return self._store.peaks(row)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        mz, inten = self._peaks(row)
        item = spectrum_item(mz, inten, self.precursor_mz[i], self.max_peaks, self.adducts[i])
        item["struct_idx"] = int(self.struct_of_item[i])
        item["row"] = row
        if self._fp is not None:
            item["fp"] = self._fp[item["struct_idx"]]
        return item

    def __getstate__(self) -> dict:  # DataLoader workers reopen the store themselves
        state = dict(self.__dict__)
        state["_store"] = None
        return state
