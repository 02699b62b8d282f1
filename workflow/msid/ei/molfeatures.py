"""Fast featurisation of molecule batches for the NEIMS v2 predictors (prediction paths).

Exactly the features the models were trained on (:func:`msid.ei.neims.featurize`): log1p Morgan
radius-2 count fingerprints folded to ``n_bits``, the nominal mass, and for the teacher the RDKit
graph (:func:`msid.ei.neims.atom_features` / ``bond_features``), but built faster:

* one :class:`~rdkit.Chem.Mol` parse per molecule, shared by every feature (and by InChIKey and
  formula when an in-silico library needs them);
* fingerprints kept sparse (indices, log1p counts, offsets) from RDKit's fingerprint generator,
  never a dense ``(n, 4096)`` matrix: the networks' first layer reads them with
  :func:`torch.nn.functional.embedding_bag` (:func:`msid.ei.neims.ecfp_linear`);
* nominal masses from the formula with a per-formula cache, atom and bond features as integer
  codes collected per batch and one-hot encoded by numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from rdkit import Chem, RDLogger

from msid.chem.isotopes import molecule_formula
from msid.ei.neims import ELEMENTS, N_ATOM_FEATURES, N_BOND_FEATURES, formula_nominal_mass
from msid.models.features import _generator

RDLogger.DisableLog("rdApp.*")

_EL_CODE = {Chem.GetPeriodicTable().GetAtomicNumber(e): k for k, e in enumerate(ELEMENTS)}
_EL_OTHER = len(ELEMENTS)
_EL_OF_Z = np.full(128, _EL_OTHER, np.int64)
for _z, _k in _EL_CODE.items():
    _EL_OF_Z[_z] = _k
_HYB = {Chem.HybridizationType.SP: 0, Chem.HybridizationType.SP2: 1,
        Chem.HybridizationType.SP3: 2}
_BT = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2,
       Chem.BondType.AROMATIC: 3}
# column offsets of the atom feature blocks (see msid.ei.neims.atom_features)
_DEG0 = len(ELEMENTS) + 1
_CHG0 = _DEG0 + 6
_HS0 = _CHG0 + 3
_AROM = _HS0 + 5
_HYB0 = _AROM + 2


@lru_cache(maxsize=200_000)
def cached_nominal_mass(formula: str) -> int:
    return formula_nominal_mass(formula)


def parse(smiles: str) -> Chem.Mol | None:
    """RDKit molecule of a SMILES, or None when it does not parse or has no atoms."""
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return mol if mol is not None and mol.GetNumAtoms() else None


@dataclass
class SparseECFP:
    """log1p Morgan counts of a batch in CSR form (rows = molecules)."""

    indices: np.ndarray  # int64
    values: np.ndarray  # float32, log1p(count)
    offsets: np.ndarray  # int64, n + 1
    n_bits: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def dense(self) -> np.ndarray:
        out = np.zeros((len(self), self.n_bits), np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        out[rows, self.indices] = self.values
        return out

    def rows(self, a: int, b: int) -> SparseECFP:
        lo, hi = self.offsets[a], self.offsets[b]
        return SparseECFP(self.indices[lo:hi], self.values[lo:hi],
                          self.offsets[a:b + 1] - lo, self.n_bits)


def sparse_ecfp(mols: Sequence[Chem.Mol], n_bits: int, radius: int = 2) -> SparseECFP:
    gen = _generator(radius, n_bits)
    idx: list[int] = []
    cnt: list[int] = []
    sizes = np.zeros(len(mols) + 1, np.int64)
    for i, mol in enumerate(mols):
        nz = gen.GetCountFingerprint(mol).GetNonzeroElements()
        idx += nz.keys()
        cnt += nz.values()
        sizes[i + 1] = len(nz)
    values = np.log1p(np.array(cnt, dtype=np.float32))
    return SparseECFP(np.array(idx, dtype=np.int64), values, np.cumsum(sizes), n_bits)


def nominal_masses(mols: Sequence[Chem.Mol], formulas: Sequence[str] | None = None
                   ) -> np.ndarray:
    fs = formulas if formulas is not None else [molecule_formula(m) for m in mols]
    return np.array([cached_nominal_mass(f) for f in fs], dtype=np.int64)


@dataclass
class GraphBatch:
    x: np.ndarray
    edges: np.ndarray
    edge_attr: np.ndarray
    graph_of_atom: np.ndarray
    bond_atoms: np.ndarray
    bond_attr: np.ndarray
    n_atoms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def graph_batch(mols: Sequence[Chem.Mol]) -> GraphBatch:
    """The teacher's batched graph, laid out exactly as :func:`msid.ei.neims.featurize` does
    (per molecule: bonds forward, then reversed; atom indices global to the batch)."""
    z, deg, chg, hs, arom, ring, hyb, n_atoms = [], [], [], [], [], [], [], []
    b_begin, b_end, b_type, b_conj, b_ring, n_bonds = [], [], [], [], [], []
    hyb_of = _HYB.get
    bt_of = _BT.get
    for mol in mols:
        atoms = mol.GetAtoms()
        n_atoms.append(len(atoms))
        for a in atoms:
            z.append(a.GetAtomicNum())
            deg.append(a.GetDegree())
            chg.append(a.GetFormalCharge())
            hs.append(a.GetTotalNumHs())
            arom.append(a.GetIsAromatic())
            ring.append(a.IsInRing())
            hyb.append(hyb_of(a.GetHybridization(), 3))
        bonds = mol.GetBonds()
        n_bonds.append(len(bonds))
        for b in bonds:
            b_begin.append(b.GetBeginAtomIdx())
            b_end.append(b.GetEndAtomIdx())
            b_type.append(bt_of(b.GetBondType(), 4))
            b_conj.append(b.GetIsConjugated())
            b_ring.append(b.IsInRing())
    na = np.array(n_atoms, np.int64)
    nb = np.array(n_bonds, np.int64)
    n = int(na.sum())
    r = np.arange(n)
    x = np.zeros((n, N_ATOM_FEATURES), np.float32)
    zz = np.array(z, np.int64)
    x[r, _EL_OF_Z[zz]] = 1
    x[r, _DEG0 + np.minimum(np.array(deg, np.int64), 5)] = 1
    c = np.array(chg, np.int64)
    x[r, _CHG0 + np.sign(c) + 1] = 1
    x[r, _HS0 + np.minimum(np.array(hs, np.int64), 4)] = 1
    x[:, _AROM] = np.array(arom, np.float32)
    x[:, _AROM + 1] = np.array(ring, np.float32)
    x[r, _HYB0 + np.array(hyb, np.int64)] = 1
    m = len(b_type)
    ea = np.zeros((m, N_BOND_FEATURES), np.float32)
    bt = np.array(b_type, np.int64)
    has = bt < 4
    ea[np.flatnonzero(has), bt[has]] = 1
    ea[:, 4] = np.array(b_conj, np.float32)
    ea[:, 5] = np.array(b_ring, np.float32)
    atom_off = np.concatenate([[0], np.cumsum(na)[:-1]])
    bond_off = np.concatenate([[0], np.cumsum(nb)])
    mol_of_bond = np.repeat(np.arange(len(na)), nb)
    ba = (np.stack([np.array(b_begin, np.int64), np.array(b_end, np.int64)], axis=1)
          .reshape(-1, 2) + atom_off[mol_of_bond][:, None])
    # per molecule: its bonds forward, then the same bonds reversed
    fwd = np.arange(m) + bond_off[mol_of_bond]  # position of bond j's forward edge
    rev = fwd + nb[mol_of_bond]
    edges = np.zeros((2, 2 * m), np.int64)
    edges[:, fwd] = ba.T
    edges[:, rev] = ba[:, ::-1].T
    edge_attr = np.zeros((2 * m, N_BOND_FEATURES), np.float32)
    edge_attr[fwd] = ea
    edge_attr[rev] = ea
    return GraphBatch(x, edges, edge_attr, np.repeat(np.arange(len(na)), na), ba, ea, na)


def batch_tensors(mols: Sequence[Chem.Mol], n_bits: int, graphs: bool,
                  masses: np.ndarray | None = None) -> dict:
    """Model input of parsed molecules: sparse ``ecfp_*`` (see :func:`msid.ei.neims.ecfp_linear`),
    ``mass`` and, with ``graphs``, the teacher's graph tensors."""
    fp = sparse_ecfp(mols, n_bits)
    mass = masses if masses is not None else nominal_masses(mols)
    out = {"ecfp_idx": torch.from_numpy(fp.indices), "ecfp_val": torch.from_numpy(fp.values),
           "ecfp_off": torch.from_numpy(fp.offsets[:-1].copy()),
           "mass": torch.from_numpy(np.asarray(mass, dtype=np.int64))}
    if graphs:
        g = graph_batch(mols)
        out.update({k: torch.from_numpy(getattr(g, k)) for k in (
            "x", "edges", "edge_attr", "graph_of_atom", "bond_atoms", "bond_attr")})
    return out
