"""Fast EI spectrum prediction from parsed molecules or SMILES (teacher, student, MLP).

Featurisation by :mod:`msid.ei.molfeatures` (one parse per molecule, sparse ECFP, vectorised
graph), inference in batches under :func:`torch.inference_mode`. Gives the predictions of
:func:`msid.ei.neims_train.predict_sqrt` (same features; the first layer sums weight rows
instead of multiplying a dense matrix, so values agree to float rounding).

The networks predict nothing above a molecule's nominal mass M (NEIMS' mask), where measured
EI spectra hold the molecular ion's isotope peaks: M+1 (13C), and the M+2, M+4 clusters of
Cl, Br, S and Si. :func:`add_isotope_peaks` puts them back from the formula's isotope pattern
(:mod:`msid.chem.isotopes`), scaled to the predicted M peak.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem

from msid.chem.isotopes import formula_counts, molecule_formula, patterns
from msid.ei.molfeatures import batch_tensors, cached_nominal_mass, parse
from msid.ei.neims_train import NeimsModel

BATCH = 512  # molecules per forward pass (1 thread: larger batches gain nothing)
#: isotope peaks of the molecular ion added above its nominal mass: M+1 .. M+ISOTOPE_SHIFTS
#: (Br3 and Cl4 clusters reach M+6 and M+8)
ISOTOPE_SHIFTS = 8


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


def add_isotope_peaks(spectra: np.ndarray, formulas: Sequence[str],
                      max_shift: int = ISOTOPE_SHIFTS) -> np.ndarray:
    """Intensity-scale spectra (rows, bins 0..max_mz) with the molecular ion's isotope peaks:
    bin M+k gets the M bin's intensity times the formula's isotope abundance at +k relative to
    +0 (k = 1..max_shift, within the bins), M the formula's nominal mass. Base peak 1 again."""
    out = np.array(spectra, dtype=np.float32, copy=True)
    if not len(out):
        return out
    n = out.shape[1]
    mass = np.array([cached_nominal_mass(f) for f in formulas], dtype=np.int64)
    r = patterns([formula_counts(f) for f in formulas], max_shift)[:, 1:]
    base = np.where(mass < n, out[np.arange(len(out)), np.minimum(mass, n - 1)], 0.0)
    cols = mass[:, None] + np.arange(1, max_shift + 1)
    ok = (cols < n) & (mass[:, None] >= 0)
    rows = np.broadcast_to(np.arange(len(out))[:, None], cols.shape)
    out[rows[ok], cols[ok]] += (base[:, None] * r)[ok]
    return out / np.maximum(out.max(1, keepdims=True), 1e-12)


def predict_mols(model: NeimsModel, mols: Sequence[Chem.Mol], masses: np.ndarray | None = None,
                 batch_size: int = BATCH, isotopes: bool = True,
                 formulas: Sequence[str] | None = None) -> np.ndarray:
    """Predicted spectra (base peak 1) of parsed molecules, with the molecular ion's isotope
    peaks (:func:`add_isotope_peaks`) unless ``isotopes`` is false. ``formulas``: the
    molecules' RDKit formulas where the caller has them (else worked out here)."""
    spec = to_intensity(predict_mols_sqrt(model, mols, masses, batch_size))
    if not isotopes:
        return spec
    return add_isotope_peaks(spec, formulas if formulas is not None else
                             [molecule_formula(m) for m in mols])


def predict_smiles(model: NeimsModel, smiles: Sequence[str], batch_size: int = BATCH,
                   isotopes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(spectra with base peak 1 for the parseable SMILES, their positions in ``smiles``)."""
    mols, ok = [], []
    for i, s in enumerate(smiles):
        m = parse(s)
        if m is not None:
            mols.append(m)
            ok.append(i)
    return (predict_mols(model, mols, batch_size=batch_size, isotopes=isotopes),
            np.array(ok, dtype=np.int64))
