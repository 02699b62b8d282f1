"""NEIMS v2: EI spectrum prediction from structure (teacher GNN+ECFP, MoE student, MLP baseline).

All three predict a nominal-mass spectrum over bins 0..max_mz with NEIMS's bidirectional output:
a *forward* head (bin = m/z) and a *reverse* head indexed by neutral loss (bin = M - m/z, M the
molecule's nominal mass), mixed per bin by a learned sigmoid gate; bins above M are zero.
Targets and outputs are intensities on a square-root scale (base peak 1).

* :class:`TeacherNet` -- a message-passing GNN over the RDKit graph (atom and bond features)
  fused with ECFP counts; multitask with per-bond BDE regression (ALFABET, auxiliary; bonds
  between heavy atoms); dropout kept on at prediction time gives MC-dropout uncertainty.
* :class:`StudentNet` -- a mixture of 4 residual-MLP experts on ECFP counts (softmax gate),
  trained by distillation from the teacher (uncertainty-weighted soft targets) plus measured
  spectra.
* :class:`MLPNet` -- the NEIMS-style plain MLP baseline on the same ECFP counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from rdkit import Chem, RDLogger
from torch import nn

from msid.chem.isotopes import formula_nominal_mass, molecule_formula
from msid.models.features import MolFeaturizer

RDLogger.DisableLog("rdApp.*")

ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "Si", "B", "Se")
N_ATOM_FEATURES = len(ELEMENTS) + 1 + 6 + 3 + 5 + 2 + 4  # see atom_features
N_BOND_FEATURES = 6


@dataclass
class NeimsConfig:
    """Architecture of one EI predictor (stored in its model card)."""

    kind: str = "student"  # teacher | student | mlp
    max_mz: int = 500
    n_bits: int = 4096  # ECFP (Morgan radius 2) counts, log1p
    hidden: int = 512
    n_layers: int = 2  # MLP layers / residual blocks per expert
    n_experts: int = 4  # student
    gnn_hidden: int = 128  # teacher
    gnn_layers: int = 4
    dropout: float = 0.1
    bde_weight: float = 0.1  # teacher: weight of the BDE auxiliary loss
    kd_weight: float = 1.0  # student: weight of the distillation loss
    kd_sigma: float = 0.05  # soft-target weight 1 / (1 + (std / kd_sigma)^2)
    gradnorm: bool = False  # student: GradNorm balancing of the measured and KD losses

    @classmethod
    def from_dict(cls, d: dict) -> NeimsConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


# -- molecules -----------------------------------------------------------------------------------
def nominal_mass(mol: Chem.Mol) -> int:
    """Nominal mass of a molecule (via its formula, isotope labels counted: CD3Cl is 53)."""
    return formula_nominal_mass(molecule_formula(mol))


def atom_features(atom: Chem.Atom) -> list[float]:
    sym = atom.GetSymbol()
    el = [float(sym == e) for e in ELEMENTS] + [float(sym not in ELEMENTS)]
    deg = [float(min(atom.GetDegree(), 5) == d) for d in range(6)]
    chg = atom.GetFormalCharge()
    charge = [float(chg < 0), float(chg == 0), float(chg > 0)]
    hs = [float(min(atom.GetTotalNumHs(), 4) == h) for h in range(5)]
    flags = [float(atom.GetIsAromatic()), float(atom.IsInRing())]
    hyb = atom.GetHybridization()
    hy = [float(hyb == h) for h in (Chem.HybridizationType.SP, Chem.HybridizationType.SP2,
                                    Chem.HybridizationType.SP3)]
    hy.append(float(not any(hy)))
    return el + deg + charge + hs + flags + hy


def bond_features(bond: Chem.Bond) -> list[float]:
    bt = bond.GetBondType()
    return [float(bt == Chem.BondType.SINGLE), float(bt == Chem.BondType.DOUBLE),
            float(bt == Chem.BondType.TRIPLE), float(bt == Chem.BondType.AROMATIC),
            float(bond.GetIsConjugated()), float(bond.IsInRing())]


@dataclass
class MolGraph:
    x: np.ndarray  # (n_atoms, N_ATOM_FEATURES)
    edges: np.ndarray  # (2, 2 * n_bonds) both directions
    edge_attr: np.ndarray  # (2 * n_bonds, N_BOND_FEATURES)
    bond_atoms: np.ndarray  # (n_bonds, 2) heavy-atom indices
    mass: int


@lru_cache(maxsize=50_000)
def mol_graph(smiles: str) -> MolGraph | None:
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    x = np.array([atom_features(a) for a in mol.GetAtoms()], dtype=np.float32)
    ba = np.array([[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()],
                  dtype=np.int64).reshape(-1, 2)
    ea = np.array([bond_features(b) for b in mol.GetBonds()], dtype=np.float32).reshape(
        -1, N_BOND_FEATURES)
    edges = np.concatenate([ba.T, ba[:, ::-1].T], axis=1)
    return MolGraph(x, edges, np.concatenate([ea, ea]), ba, nominal_mass(mol))


def featurize(smiles: list[str], featurizer: MolFeaturizer, graphs: bool) -> dict:
    """Tensors for a batch of parseable SMILES: ``ecfp`` (log1p Morgan counts), ``mass``
    (nominal), and with ``graphs`` the batched graph (``x``, ``edges``, ``edge_attr``,
    ``graph_of_atom``, ``bond_atoms``, ``bond_attr``; atom indices global to the batch)."""
    if not graphs:  # fingerprints only: one parse per molecule
        mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
        if any(m is None for m in mols):
            raise ValueError("featurize() takes parseable SMILES only")
        return {"ecfp": torch.from_numpy(featurizer(smiles)),
                "mass": torch.tensor([nominal_mass(m) for m in mols], dtype=torch.int64)}
    gs = [mol_graph(s) for s in smiles]
    if any(g is None for g in gs):
        raise ValueError("featurize() takes parseable SMILES only")
    out = {"ecfp": torch.from_numpy(featurizer(smiles)),
           "mass": torch.tensor([g.mass for g in gs], dtype=torch.int64)}
    offs = np.cumsum([0] + [g.x.shape[0] for g in gs])
    out["x"] = torch.from_numpy(np.concatenate([g.x for g in gs]))
    out["edges"] = torch.from_numpy(np.concatenate(
        [g.edges + o for g, o in zip(gs, offs[:-1], strict=True)], axis=1))
    out["edge_attr"] = torch.from_numpy(np.concatenate([g.edge_attr for g in gs]))
    out["graph_of_atom"] = torch.from_numpy(np.repeat(np.arange(len(gs)),
                                                      [g.x.shape[0] for g in gs]))
    out["bond_atoms"] = torch.from_numpy(np.concatenate(
        [g.bond_atoms + o for g, o in zip(gs, offs[:-1], strict=True)]))
    out["bond_attr"] = torch.from_numpy(np.concatenate(
        [g.edge_attr[:g.bond_atoms.shape[0]] for g in gs]))
    return out


def _weight_t(lin: nn.Linear) -> torch.Tensor:
    """``lin.weight`` transposed and contiguous (rows = input features); cached on the module
    outside autograd, recomputed when the weight changes (version, storage)."""
    w = lin.weight
    if torch.is_grad_enabled():
        return w.t()
    key = (w._version, w.data_ptr(), w.device)
    hit = getattr(lin, "_msid_weight_t", None)
    if hit is None or hit[0] != key:
        hit = (key, w.detach().t().contiguous())
        lin._msid_weight_t = hit
    return hit[1]


def ecfp_linear(lin: nn.Linear, b: dict) -> torch.Tensor:
    """``lin(b["ecfp"])`` for a dense batch. A sparse batch (``ecfp_idx``, ``ecfp_val``,
    ``ecfp_off``: CSR rows, :mod:`msid.ei.molfeatures`) gives the same product as a weighted
    sum of rows of the transposed weight (``embedding_bag``), never building the dense
    ``(n, n_bits)`` matrix (ECFP rows hold ~40 of 4096 bits)."""
    if "ecfp" in b:
        return lin(b["ecfp"])
    return F.embedding_bag(b["ecfp_idx"], _weight_t(lin), b["ecfp_off"], mode="sum",
                           per_sample_weights=b["ecfp_val"]) + lin.bias


# -- output head ---------------------------------------------------------------------------------
class BidirectionalHead(nn.Module):
    """NEIMS output: forward + mass-shifted reverse predictions mixed by a learned gate."""

    def __init__(self, d_in: int, max_mz: int) -> None:
        super().__init__()
        self.n = max_mz + 1
        self.forward_head = nn.Linear(d_in, self.n)
        self.reverse_head = nn.Linear(d_in, self.n)
        self.gate = nn.Linear(d_in, self.n)

    def forward(self, h: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
        fwd = self.forward_head(h)
        rev = self.reverse_head(h)  # rev[:, j] = intensity at m/z = M - j
        bins = torch.arange(self.n, device=h.device)
        src = mass.view(-1, 1) - bins.view(1, -1)  # m/z i <- reverse index M - i
        valid = (src >= 0) & (src < self.n)
        shifted = torch.gather(rev, 1, src.clamp(0, self.n - 1)) * valid
        g = torch.sigmoid(self.gate(h))
        out = F.relu(g * fwd + (1 - g) * shifted)
        return out * (bins.view(1, -1) <= mass.view(-1, 1))


def spectrum_loss(pred: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-molecule loss on sqrt intensities: squared error (optionally bin-weighted) plus
    one minus cosine."""
    w = torch.ones_like(target) if weight is None else weight
    mse = (w * (pred - target) ** 2).sum(1) / w.sum(1).clamp_min(1e-6) * target.shape[1] / 50
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-8)
    return mse + (1 - cos)


# -- networks ------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class MLPNet(nn.Module):
    """NEIMS-style plain MLP on ECFP counts (the baseline)."""

    def __init__(self, cfg: NeimsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        d = cfg.n_bits
        for _ in range(cfg.n_layers):
            layers += [nn.Linear(d, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            d = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.head = BidirectionalHead(d, cfg.max_mz)

    def forward(self, b: dict) -> torch.Tensor:
        first, rest = self.body[0], self.body[1:]
        return self.head(rest(ecfp_linear(first, b)), b["mass"])


class StudentNet(nn.Module):
    """Mixture of residual-MLP experts on ECFP counts; a softmax gate mixes expert outputs."""

    def __init__(self, cfg: NeimsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Sequential(nn.Linear(cfg.n_bits, cfg.hidden), nn.GELU())
        self.experts = nn.ModuleList(
            nn.Sequential(*[ResBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.n_layers)])
            for _ in range(cfg.n_experts))
        self.router = nn.Linear(cfg.hidden, cfg.n_experts)
        self.norm = nn.LayerNorm(cfg.hidden)
        self.head = BidirectionalHead(cfg.hidden, cfg.max_mz)

    def forward(self, b: dict) -> torch.Tensor:
        h = self.inp[1](ecfp_linear(self.inp[0], b))
        gate = torch.softmax(self.router(h), dim=-1)  # (B, E)
        mixed = torch.einsum("be,ebd->bd", gate, torch.stack([e(h) for e in self.experts]))
        return self.head(self.norm(mixed), b["mass"])


class GNNLayer(nn.Module):
    """Edge-conditioned message passing: h_i += MLP(h_i + sum_j relu(h_j + W e_ij))."""

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.edge = nn.Linear(N_BOND_FEATURES, d)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)

    def forward(self, h: torch.Tensor, edges: torch.Tensor, ea: torch.Tensor) -> torch.Tensor:
        msg = F.relu(h[edges[0]] + self.edge(ea))
        agg = torch.zeros_like(h).index_add_(0, edges[1], msg)
        return h + self.mlp(self.norm(h + agg))


class TeacherNet(nn.Module):
    """GNN over the molecular graph fused with ECFP; spectrum + per-bond BDE heads."""

    def __init__(self, cfg: NeimsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.gnn_hidden
        self.atom_in = nn.Linear(N_ATOM_FEATURES, d)
        self.layers = nn.ModuleList(GNNLayer(d, cfg.dropout) for _ in range(cfg.gnn_layers))
        self.ecfp = nn.Sequential(nn.Linear(cfg.n_bits, cfg.hidden), nn.GELU(),
                                  nn.Dropout(cfg.dropout))
        self.fuse = nn.Sequential(nn.Linear(cfg.hidden + 2 * d, cfg.hidden), nn.GELU(),
                                  nn.Dropout(cfg.dropout),
                                  *[ResBlock(cfg.hidden, cfg.dropout)
                                    for _ in range(cfg.n_layers)])
        self.head = BidirectionalHead(cfg.hidden, cfg.max_mz)
        self.bde_head = nn.Sequential(nn.Linear(2 * d + N_BOND_FEATURES, d), nn.GELU(),
                                      nn.Linear(d, 1))

    def encode_atoms(self, b: dict) -> torch.Tensor:
        h = self.atom_in(b["x"])
        for layer in self.layers:
            h = layer(h, b["edges"], b["edge_attr"])
        return h

    def forward(self, b: dict, with_bde: bool = False):
        h = self.encode_atoms(b)
        n_mol = b["mass"].shape[0]
        gi = b["graph_of_atom"]
        pooled = h.new_zeros(n_mol, h.shape[1]).index_add_(0, gi, h)  # h's dtype (bf16 too)
        counts = torch.bincount(gi, minlength=n_mol).clamp_min(1).unsqueeze(1)
        fp = self.ecfp[2](self.ecfp[1](ecfp_linear(self.ecfp[0], b)))
        z = torch.cat([fp, pooled / counts, pooled / 10.0], dim=1)
        spec = self.head(self.fuse(z), b["mass"])
        if not with_bde:
            return spec
        ba = b["bond_atoms"]
        ea = b["bond_attr"]
        pair = h[ba[:, 0]] + h[ba[:, 1]]
        bde = self.bde_head(torch.cat([pair, h[ba[:, 0]] * h[ba[:, 1]], ea], dim=1)).squeeze(1)
        return spec, bde


_NETS: dict[str, type[nn.Module]] = {"teacher": TeacherNet, "student": StudentNet,
                                     "mlp": MLPNet}
#: the model kinds of :class:`NeimsConfig`
KINDS = tuple(_NETS)


def build_net(cfg: NeimsConfig) -> nn.Module:
    return _NETS[cfg.kind](cfg)
