"""Training, distillation, prediction and model files of the NEIMS v2 EI predictors.

Data are read lazily from a nominal EI store (:func:`msid.ei.spectra.ei_store`): the dataset
holds row numbers and SMILES; each batch reads its peaks from the store. Every model trains with
:class:`msid.train.Trainer` (checkpoints, EMA, early stopping, history) and is written with
:func:`msid.modelfile.save_model` (safetensors + card).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from msid.ei.neims import (
    KINDS,
    NeimsConfig,
    build_net,
    featurize,
    mol_graph,
    spectrum_loss,
)
from msid.ei.nominal import dense_nominal, intensity_above_ion
from msid.modelfile import (
    ModelFileError,
    card_path,
    load_tensors,
    save_model,
    verified_card,
)
from msid.models.config import TrainConfig
from msid.models.features import MolFeaturizer
from msid.store import SpectrumStore
from msid.train import Trainer

FAMILY = "neims"
BDE_MEAN, BDE_SCALE = 90.0, 20.0  # kcal/mol, to standardise the auxiliary target


@dataclass
class EIItems:
    """Spectra of a store usable for training (parseable structure, within the mass range)."""

    store: Path
    rows: np.ndarray
    smiles: list[str]
    inchikey: list[str]
    fold: list[str]
    #: spectra left out for their intensity above the molecular ion (see :func:`store_items`)
    above_ion: int = 0


def store_items(store: str | os.PathLike, folds: tuple[str, ...] | None = None,
                max_mass: int = 500, limit: int = 0, max_above_ion: float = 1.0) -> EIItems:
    """The store's spectra of ``folds`` whose structure parses and weighs at most
    ``max_mass``; with ``max_above_ion`` < 1, those with a larger share of their intensity
    above the molecular ion (:func:`intensity_above_ion`) are left out and counted: NEIMS
    predicts nothing above M, and such a spectrum is not the structure's."""
    with SpectrumStore(store) as s:
        md = s.metadata
        mz, inten, off = s.all_peaks() if max_above_ion < 1 else (None, None, None)
    rows, smi, ik, fo = [], [], [], []
    above = 0
    for i, (sm, key, f) in enumerate(zip(md.smiles, md.inchikey, md.fold, strict=True)):
        if folds is not None and f not in folds:
            continue
        g = mol_graph(sm)
        if g is None or g.mass > max_mass:
            continue
        if mz is not None and intensity_above_ion(mz[off[i]:off[i + 1]],
                                                  inten[off[i]:off[i + 1]],
                                                  g.mass) > max_above_ion:
            above += 1
            continue
        rows.append(i), smi.append(sm), ik.append(key), fo.append(f)
        if limit and len(rows) >= limit:
            break
    return EIItems(Path(store), np.array(rows, dtype=np.int64), smi, ik, fo, above)


class _StoreReader:
    """One open store per process (DataLoader workers open their own)."""

    def __init__(self, path: Path) -> None:
        self.path, self._store, self._pid = path, None, -1

    def get(self) -> SpectrumStore:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = SpectrumStore(self.path), os.getpid()
        return self._store


class NeimsDataset(Dataset):
    """Items: measured spectra (row >= 0) and, for distillation, molecules with teacher soft
    targets (``soft`` mean and std on the sqrt scale, indexed like ``smiles``)."""

    def __init__(self, items: EIItems | None, cfg: NeimsConfig, *,
                 extra_smiles: list[str] | None = None, soft: np.ndarray | None = None,
                 soft_std: np.ndarray | None = None,
                 bde: dict | None = None) -> None:
        self.cfg = cfg
        n_meas = len(items.rows) if items else 0
        self.rows = np.concatenate([items.rows if items else np.zeros(0, np.int64),
                                    -np.ones(len(extra_smiles or []), np.int64)])
        self.smiles = (items.smiles if items else []) + list(extra_smiles or [])
        self.inchikey = (items.inchikey if items else []) + [""] * len(extra_smiles or [])
        self.soft, self.soft_std = soft, soft_std
        self.bde = bde or {}
        self.reader = _StoreReader(items.store) if items else None
        self.featurizer = MolFeaturizer(cfg.n_bits, 2, "count")
        keys = [k[:14] if k else s for k, s in zip(self.inchikey, self.smiles, strict=True)]
        _, self.struct_of_item = np.unique(keys, return_inverse=True)
        self.n_measured = n_meas

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return i

    def target(self, i: int) -> np.ndarray:
        mz, inten = self.reader.get().peaks(int(self.rows[i]))
        return np.sqrt(dense_nominal(mz, inten, self.cfg.max_mz))

    def collate(self, idx: list[int]) -> dict:
        smiles = [self.smiles[i] for i in idx]
        b = featurize(smiles, self.featurizer, graphs=self.cfg.kind == "teacher")
        n = len(idx)
        nb = self.cfg.max_mz + 1
        target = np.zeros((n, nb), np.float32)
        has = np.zeros(n, bool)
        for k, i in enumerate(idx):
            if self.rows[i] >= 0:
                target[k], has[k] = self.target(i), True
        b["mz"] = torch.from_numpy(target)  # the measured spectrum (sqrt scale); Trainer counts
        b["has_target"] = torch.from_numpy(has)
        if self.soft is not None:
            b["soft"] = torch.from_numpy(self.soft[idx].astype(np.float32))
            b["soft_std"] = torch.from_numpy(self.soft_std[idx].astype(np.float32))
        if self.cfg.kind == "teacher":
            b["bde"] = torch.from_numpy(self._bde_targets(idx))
        return b

    def _bde_targets(self, idx: list[int]) -> np.ndarray:
        out = []
        for i in idx:
            g = mol_graph(self.smiles[i])
            t = np.full(g.bond_atoms.shape[0], np.nan, np.float32)
            entry = self.bde.get(self.inchikey[i])
            if entry is not None:
                heavy = entry.bond_index < len(t)
                t[entry.bond_index[heavy]] = (entry.bde[heavy] - BDE_MEAN) / BDE_SCALE
            out.append(t)
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class NeimsModel(torch.nn.Module):
    """A predictor plus its training loss (what :class:`msid.train.Trainer` drives)."""

    #: GradNorm's state: the Trainer's EMA leaves it out (evaluated weights carry the live one)
    ema_skip = ("task_w", "gradnorm_l0")

    def __init__(self, cfg: NeimsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = build_net(cfg)
        self.register_buffer("task_w", torch.ones(2))  # GradNorm weights (measured, KD)
        if cfg.gradnorm:  # the first step's losses, kept in checkpoints so a resume goes on alike
            self.register_buffer("gradnorm_l0", torch.zeros(2))

    def forward(self, b: dict) -> torch.Tensor:
        return self.net(b)

    def loss(self, b: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        has = b["has_target"]
        logs: dict[str, float] = {}
        if cfg.kind == "teacher":
            pred, bde = self.net(b, with_bde=True)
            spec = spectrum_loss(pred[has], b["mz"][has]).mean()
            mask = torch.isfinite(b["bde"])
            aux = (((bde[mask] - b["bde"][mask]) ** 2).mean() if mask.any()
                   else pred.sum() * 0)
            logs.update(spectrum=float(spec.detach()), bde_mse=float(aux.detach()))
            return spec + cfg.bde_weight * aux, logs
        pred = self.net(b)
        meas = (spectrum_loss(pred[has], b["mz"][has]).mean() if has.any()
                else pred.sum() * 0)
        if cfg.kind == "mlp" or "soft" not in b:
            return meas, {"spectrum": float(meas.detach())}
        w = 1.0 / (1.0 + (b["soft_std"] / cfg.kd_sigma) ** 2)
        kd = spectrum_loss(pred, b["soft"], weight=w).mean()
        if cfg.gradnorm:
            self._gradnorm([meas, kd])
        total = self.task_w[0] * meas + cfg.kd_weight * self.task_w[1] * kd
        logs.update(spectrum=float(meas.detach()), kd=float(kd.detach()),
                    w_kd=float(self.task_w[1]))
        return total, logs

    @torch.no_grad()
    def _update_w(self, norms: list[float], losses: list[float], alpha: float = 1.5) -> None:
        if not bool(self.gradnorm_l0.any()):
            self.gradnorm_l0.copy_(torch.as_tensor([max(v, 1e-8) for v in losses]))
        ratios = np.asarray(losses) / self.gradnorm_l0.cpu().numpy()
        rel = ratios / ratios.mean()
        target = np.mean(norms) * rel ** alpha
        w = target / np.maximum(norms, 1e-12)
        w = w / w.sum() * len(w)
        self.task_w.copy_(0.9 * self.task_w
                         + 0.1 * torch.as_tensor(w, dtype=torch.float32, device=self.task_w.device))

    def _gradnorm(self, losses: list[torch.Tensor]) -> None:
        """GradNorm (Chen et al. 2018), closed form per step: task weights move toward equal
        gradient norms on the shared layer, scaled by each task's relative training rate."""
        shared = self.net.inp[0].weight
        norms = [float(torch.autograd.grad(v, shared, retain_graph=True)[0].norm())
                 for v in losses]
        self._update_w(norms, [float(v.detach()) for v in losses])


# -- prediction ----------------------------------------------------------------------------------
def _batches(smiles: list[str], n: int):
    for a in range(0, len(smiles), n):
        yield a, smiles[a:a + n]


@torch.no_grad()
def predict_sqrt(model: NeimsModel, smiles: list[str], batch_size: int = 256,
                 mc_samples: int = 0, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Predictions on the sqrt scale for parseable SMILES: (mean, std over MC-dropout samples;
    std is zero without ``mc_samples``)."""
    model = model.to(device)
    feat = MolFeaturizer(model.cfg.n_bits, 2, "count")
    graphs = model.cfg.kind == "teacher"
    n_bins = model.cfg.max_mz + 1
    mean = np.zeros((len(smiles), n_bins), np.float32)
    std = np.zeros_like(mean)
    for a, chunk in _batches(smiles, batch_size):
        b = {k: v.to(device) for k, v in featurize(chunk, feat, graphs).items()}
        if mc_samples:
            model.train()  # dropout on: MC-dropout samples
            s = torch.stack([model(b) for _ in range(mc_samples)])
            model.eval()
            mean[a:a + len(chunk)] = s.mean(0).cpu().numpy()
            std[a:a + len(chunk)] = s.std(0).cpu().numpy()
        else:
            model.eval()
            mean[a:a + len(chunk)] = model(b).cpu().numpy()
    return mean, std


# -- model files ---------------------------------------------------------------------------------
def save_neims(model: NeimsModel, path: str | os.PathLike, *, training: dict,
               metrics: dict | None = None, licence: str = "", attribution: str = "") -> dict:
    extra = {k: v for k, v in (("licence", licence), ("attribution", attribution)) if v}
    return save_model(model, path, family=FAMILY, config=model.cfg.to_dict(), training=training,
                      metrics=metrics, extra=extra or None)


def load_neims(path: str | os.PathLike) -> tuple[NeimsModel, dict]:
    """(model in eval mode, card); checks the card's family and the weights' sha256."""
    path = Path(path)
    card = verified_card(path, FAMILY)
    cfg = card["config"]
    unknown = sorted(set(cfg) - set(NeimsConfig.__dataclass_fields__)) if isinstance(
        cfg, dict) else []
    try:
        if not isinstance(cfg, dict) or unknown:
            raise ValueError("not a mapping" if not isinstance(cfg, dict)
                             else f"unknown key(s) {', '.join(unknown)}")
        if cfg.get("kind") not in KINDS:
            raise ValueError(f"kind {cfg.get('kind')!r} is none of {', '.join(KINDS)}")
        model = NeimsModel(NeimsConfig.from_dict(cfg))
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ModelFileError(card_path(path), f"model card config is invalid ({e})") from e
    tensors = load_tensors(path)
    if model.cfg.gradnorm:  # training state; students saved before it was kept lack it
        tensors.setdefault("gradnorm_l0", torch.zeros(2))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ModelFileError(path, f"weights do not fit the card's architecture ({e})") from e
    return model.eval(), card


# -- training ------------------------------------------------------------------------------------
@dataclass
class FitResult:
    model: NeimsModel
    summary: dict
    seconds: float
    extra: dict = field(default_factory=dict)


def val_evaluator(ds: NeimsDataset, rows: list[int], batch: int = 128):
    """Mean cosine (intensity scale) of predictions on the validation items: Trainer metric."""
    targets = np.stack([np.square(ds.target(i)) for i in rows]) if rows else None

    def evaluate(net: torch.nn.Module) -> dict:
        if not rows:
            return {}
        preds = []
        dev = next(net.parameters()).device
        for a in range(0, len(rows), batch):
            b = ds.collate(rows[a:a + batch])
            b = {k: v.to(dev) for k, v in b.items()}
            preds.append(np.square(net(b).float().cpu().numpy()))
        p = np.concatenate(preds)
        num = (p * targets).sum(1)
        den = np.linalg.norm(p, axis=1) * np.linalg.norm(targets, axis=1)
        return {"cosine": float(np.mean(num / np.maximum(den, 1e-12)))}

    return evaluate


def fit(cfg: NeimsConfig, tcfg: TrainConfig, train: NeimsDataset, val: NeimsDataset | None,
        workdir: str | os.PathLike, title: str, data_key: dict | None = None) -> FitResult:
    """Train one NEIMS model. ``data_key`` (e.g. the input files' digests) joins the run key:
    a checkpoint of a run on other data is never resumed."""
    torch.manual_seed(tcfg.seed)  # initial weights from the seed, not the process's RNG state
    model = NeimsModel(cfg)
    evaluate = None
    if val is not None and len(val):
        evaluate = val_evaluator(val, list(range(min(len(val), tcfg.val_max_queries))))
    trainer = Trainer(model, tcfg, train, collate_fn=train.collate, workdir=workdir,
                      evaluate=evaluate, metric="cosine", title=title,
                      run_key={"model": cfg.to_dict(), "n_train": len(train),
                               "data": data_key or {}})
    t0 = time.perf_counter()
    summary = trainer.fit()
    return FitResult(trainer.model.cpu(), summary, time.perf_counter() - t0)
