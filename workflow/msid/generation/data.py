"""Training data for the generation models.

* :func:`pretraining_molecules`: a seeded subsample of the candidate pool (every molecule of the
  small curated pool, then the large decoy pool) minus every structure of the benchmark's
  val and test folds (InChIKey first block), so the decoder never memorises a test molecule;
* :class:`MoleculeDataset`: token ids + neutral mass of molecules (decoder pretraining);
* :class:`SpectrumMoleculeDataset`: labelled spectra of a store + their molecules' tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from msid.chem.structures import parse_structure
from msid.generation.tokenizer import Tokenizer
from msid.spectra_dataset import SpectraDataset, collate_spectra
from msid.store import SpectrumStore


def fold_inchikeys(stores: Sequence[str | os.PathLike]) -> set[str]:
    """InChIKey first blocks of every labelled spectrum of ``stores`` (e.g. val and test)."""
    out: set[str] = set()
    for path in stores:
        with SpectrumStore(path) as st:
            md = st.metadata
            for ik, smi in zip(md["inchikey"].astype(str), md["smiles"].astype(str),
                               strict=True):
                if ik:
                    out.add(ik[:14])
                elif smi:  # no InChIKey recorded: compute it from the structure
                    s = parse_structure(smi)
                    if s is not None and s.inchikey:
                        out.add(s.inchikey14)
    return out


def pretraining_molecules(index_path: str | os.PathLike, exclude_ik14: set[str],
                          max_n: int, seed: int = 0, log: Callable = print
                          ) -> tuple[list[str], np.ndarray, int]:
    """(flat SMILES, neutral masses, number left out as val/test structures) of up to
    ``max_n`` pool molecules: the curated pool first (source 0), then the large pool."""
    from msid.chem.candidates import CandidateIndex

    index = CandidateIndex(index_path)
    rng = np.random.default_rng(seed)
    src = np.asarray(index._source)
    order = np.concatenate([rng.permutation(np.flatnonzero(src == s))
                            for s in np.unique(src)]) if len(src) else np.zeros(0, np.int64)
    smiles, masses, left_out = [], [], 0
    for i in order:
        if max_n and len(smiles) >= max_n:
            break
        st = parse_structure(index.smiles(int(i)))
        if st is None or not st.inchikey:
            continue
        if st.inchikey14 in exclude_ik14:
            left_out += 1
            continue
        smiles.append(st.smiles_flat)
        masses.append(st.exact_mass)
    log(f"[generation] pretraining set: {len(smiles):,} pool molecules "
        f"({left_out:,} val/test structures left out)")
    return smiles, np.asarray(masses, np.float64), left_out


class MoleculeDataset(Dataset):
    def __init__(self, smiles: Sequence[str], masses: np.ndarray, tok: Tokenizer) -> None:
        self.ids, self.mass = [], []
        for s, m in zip(smiles, masses, strict=True):
            ids = tok.encode(s)
            if ids is not None:
                self.ids.append(np.asarray(ids, np.int64))
                self.mass.append(float(m))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": self.ids[i], "mass": self.mass[i]}


def pad_tokens(seqs: Sequence[np.ndarray]) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), n), np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def collate_molecules(items: Sequence[dict]) -> dict:
    # ``mz`` only tells the Trainer the batch size; without ``intensity`` the model reads no
    # spectrum (pretraining: mass token only)
    return {"tokens": pad_tokens([it["tokens"] for it in items]),
            "mass": torch.tensor([it["mass"] for it in items], dtype=torch.float64),
            "mz": torch.zeros(len(items), 1, dtype=torch.float64)}


class SpectrumMoleculeDataset(Dataset):
    """Labelled spectra whose structure tokenises; items carry ``tokens`` and ``mass``."""

    def __init__(self, store: str | os.PathLike, tok: Tokenizer, *, max_peaks: int,
                 adducts: Sequence[str] | None = None, max_items: int = 0, seed: int = 0,
                 rows: Sequence[int] | None = None) -> None:
        self.spectra = SpectraDataset(store, max_peaks=max_peaks, adducts=adducts or None,
                                      in_memory=True, max_items=max_items, seed=seed, rows=rows)
        self.struct_tokens = [tok.encode(s) for s in self.spectra.structures]
        self.struct_mass = np.array([parse_structure(s).exact_mass for s in
                                     self.spectra.structures], np.float64)
        keep = [i for i in range(len(self.spectra))
                if self.struct_tokens[self.spectra.struct_of_item[i]] is not None]
        self.items = np.asarray(keep, np.int64)
        self.struct_of_item = self.spectra.struct_of_item[self.items]

    @property
    def structures(self) -> list[str]:
        return self.spectra.structures

    def drop_structures(self, structures: set[int]) -> int:
        """Leave out the items of these structure indices; returns how many were left out."""
        keep = ~np.isin(self.struct_of_item, np.fromiter(structures, np.int64))
        self.items, self.struct_of_item = self.items[keep], self.struct_of_item[keep]
        return int((~keep).sum())

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        it = self.spectra[int(self.items[i])]
        s = it["struct_idx"]
        it["tokens"] = np.asarray(self.struct_tokens[s], np.int64)
        it["mass"] = float(self.struct_mass[s])
        return it


def collate_spectrum_molecules(items: Sequence[dict]) -> dict:
    out = collate_spectra(items)
    out["tokens"] = pad_tokens([it["tokens"] for it in items])
    out["mass"] = torch.tensor([it["mass"] for it in items], dtype=torch.float64)
    if "cand_enc" in items[0]:
        k = max(1, max(len(it["cand_enc"]) for it in items))
        dim = items[0]["cand_dim"]
        enc = np.zeros((len(items), k, dim), np.float32)
        mask = np.zeros((len(items), k), bool)
        for i, it in enumerate(items):
            n = len(it["cand_enc"])
            if n:
                enc[i, :n] = it["cand_enc"]
                mask[i, :n] = True
        out["cand_enc"] = torch.from_numpy(enc)
        out["cand_mask"] = torch.from_numpy(mask)
    if "cand_tokens" in items[0]:
        out["cand_tokens"], out["cand_slots"] = candidate_tokens(
            [it["cand_tokens"] for it in items], [it.get("cand_slots") for it in items])
    return out


def encode_candidates(tok: Tokenizer, smiles: Sequence[str]) -> list[np.ndarray]:
    """GLMR copy fusion: the token ids of the candidates the tokenizer can write (a molecule
    too long or with a token it lacks is left out of the copy memory)."""
    return [np.asarray(ids, np.int64) for ids in map(tok.encode, smiles) if ids is not None]


def candidate_tokens(sets: Sequence[Sequence[np.ndarray]],
                     slots: Sequence[np.ndarray | None] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """GLMR copy fusion: per query its candidates' token ids, padded to (B, K, L), and their
    tags (B, K): as given, else 0..K-1. A query without candidates holds one all-pad row."""
    k = max(1, max(len(s) for s in sets))
    n = max([1, *(len(t) for s in sets for t in s)])
    ids = np.zeros((len(sets), k, n), np.int64)
    tags = np.tile(np.arange(k, dtype=np.int64), (len(sets), 1))
    for i, s in enumerate(sets):
        for j, t in enumerate(s):
            ids[i, j, :len(t)] = t
        if slots is not None and slots[i] is not None and len(s):
            tags[i, :len(s)] = slots[i]
    return torch.from_numpy(ids), torch.from_numpy(tags)
