"""Identification methods backed by trained models: ``ranker``, ``reconstructor``, ``deepsets``,
``fp_ffn`` (registered in :mod:`msid.methods`' registry when this module is imported).

Each loads its model file (``resources.model_path``, default
``<repo>/resources/models/<name>.safetensors``) only when the method is made, embeds the query
spectrum, embeds (cached per SMILES) the candidates and ranks them by cosine, best first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from msid.methods import MethodResources, Query, ranked_candidates, register
from msid.rankings import RankedCandidate
from msid.resources import shipped_model

FAMILY_METHODS = ("ranker", "reconstructor", "deepsets", "fp_ffn")


def default_model_path(name: str) -> Path:
    return shipped_model(name)


class ModelRanking:
    """A trained retrieval model as a :class:`msid.methods.Method`."""

    needs_candidates = True
    needs_library = False

    def __init__(self, name: str, model, card: dict, batch_size: int = 256,
                 cache_size: int = 200_000, device: str = "cpu") -> None:
        from msid.models.features import MolFeaturizer

        self.name = name
        self.model = model.to(device).eval()
        self.card = card
        self.device = torch.device(device)
        cfg = model.cfg
        self.max_peaks = cfg.max_peaks
        self.featurizer = MolFeaturizer(cfg.fp_bits, cfg.fp_radius, model.mol_input)
        self.batch_size = batch_size
        self._emb: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_file(cls, name: str, path: str | Path, **kw) -> ModelRanking:
        from msid.modelfile import load_model

        model, card = load_model(path, family=name)
        return cls(name, model, card, **kw)

    @torch.inference_mode()
    def embed_spectra(self, queries: Sequence[Query]) -> np.ndarray:
        from msid.spectra_dataset import collate_spectra, spectrum_item

        out = []
        for a in range(0, len(queries), self.batch_size):
            items = [spectrum_item(q.mz, q.intensity, q.precursor_mz, self.max_peaks, q.adduct)
                     for q in queries[a:a + self.batch_size]]
            batch = {k: v.to(self.device) for k, v in collate_spectra(items).items()}
            out.append(self.model.encode_spectra(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    @torch.inference_mode()
    def embed_molecules(self, smiles: Sequence[str]) -> np.ndarray:
        """(n, D) normalised molecule embeddings; each SMILES embedded once (cached)."""
        missing = list(dict.fromkeys(s for s in smiles if s not in self._emb))
        for a in range(0, len(missing), 4096):
            chunk = missing[a:a + 4096]
            feats = torch.from_numpy(self.featurizer(chunk)).to(self.device)
            emb = self.model.encode_molecules(feats).float().cpu().numpy()
            for s, e in zip(chunk, emb, strict=True):
                self._emb[s] = e
        while len(self._emb) > self._cache_size:
            self._emb.popitem(last=False)
        return np.stack([self._emb[s] for s in smiles]) if smiles else np.zeros((0, 1))

    def _score(self, spec: np.ndarray, candidates) -> list[RankedCandidate]:
        mol = self.embed_molecules([c.smiles_flat for c in candidates])
        return ranked_candidates(candidates, mol.astype(np.float64) @ spec.astype(np.float64))

    def rank(self, query: Query, candidates) -> list[RankedCandidate]:
        if not candidates:
            return []
        return self._score(self.embed_spectra([query])[0], candidates)

    def rank_many(self, queries: Sequence[Query], candidates: Sequence[list]
                  ) -> list[list[RankedCandidate]]:
        """Batched :meth:`rank` (spectra embedded ``batch_size`` at a time)."""
        spec = self.embed_spectra(list(queries))
        return [self._score(spec[i], c) if c else [] for i, c in enumerate(candidates)]


def _factory(name: str):
    def make(res: MethodResources) -> ModelRanking:
        path = res.model_path or default_model_path(name)
        opts = res.options or {}
        if int(opts.get("num_threads", 0)) > 0:  # 1 is fastest for one query at a time on CPU
            torch.set_num_threads(int(opts["num_threads"]))
        return ModelRanking.from_file(name, path, batch_size=int(opts.get("batch_size", 256)),
                                      device=str(opts.get("device", "cpu")))
    make.__name__ = f"_{name}_method"
    return make


for _name in FAMILY_METHODS:
    register(_name)(_factory(_name))
