"""Fast EI spectrum prediction from parsed molecules or SMILES (teacher, student, MLP).

Featurisation by :mod:`msid.ei.molfeatures` (one parse per molecule, sparse ECFP, vectorised
graph), inference in batches under :func:`torch.inference_mode`. Gives the predictions of
:func:`msid.ei.neims_train.predict_sqrt` (same features; the first layer sums weight rows
instead of multiplying a dense matrix, so values agree to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem

from msid.ei.molfeatures import batch_tensors, parse
from msid.ei.neims_train import NeimsModel

BATCH = 512  # molecules per forward pass (1 thread: larger batches gain nothing)


def predict_mols_sqrt(model: NeimsModel, mols: Sequence[Chem.Mol],
                      masses: np.ndarray | None = None, batch_size: int = BATCH,
                      device: str = "cpu") -> np.ndarray:
    """Predictions on the sqrt scale (bins 0..max_mz) of parsed molecules, in eval mode."""
    model = model.to(device).eval()
    graphs = model.cfg.kind == "teacher"
    out = np.zeros((len(mols), model.cfg.max_mz + 1), np.float32)
    with torch.inference_mode():
        for a in range(0, len(mols), batch_size):
            chunk = mols[a:a + batch_size]
            m = None if masses is None else masses[a:a + len(chunk)]
            b = batch_tensors(chunk, model.cfg.n_bits, graphs, m)
            if device != "cpu":
                b = {k: v.to(device) for k, v in b.items()}
            out[a:a + len(chunk)] = model(b).cpu().numpy()
    return out


def to_intensity(sqrt_pred: np.ndarray) -> np.ndarray:
    """Sqrt-scale predictions -> intensities with base peak 1."""
    p = np.square(sqrt_pred)
    return p / np.maximum(p.max(1, keepdims=True), 1e-12)


def predict_smiles(model: NeimsModel, smiles: Sequence[str], batch_size: int = BATCH
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(spectra with base peak 1 for the parseable SMILES, their positions in ``smiles``)."""
    mols, ok = [], []
    for i, s in enumerate(smiles):
        m = parse(s)
        if m is not None:
            mols.append(m)
            ok.append(i)
    return (to_intensity(predict_mols_sqrt(model, mols, batch_size=batch_size)),
            np.array(ok, dtype=np.int64))
