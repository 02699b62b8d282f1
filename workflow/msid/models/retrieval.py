"""Retrieval models: rank candidate molecules for a spectrum.

Every model has the same interface, used by training, validation and the ``Method`` wrappers:

* ``encode_spectra(batch) -> (B, D)`` and ``encode_molecules(features) -> (M, D)``, both
  L2-normalised, so a candidate's score is a cosine (a dot product);
* ``mol_input``: which molecule features ``encode_molecules`` takes (``"bits"`` or ``"count"``
  Morgan fingerprints, see :class:`msid.models.features.MolFeaturizer`);
* ``loss(batch) -> (loss, logs)``.

Families:

* :class:`Ranker`: contrastive (InfoNCE) alignment of spectrum and molecule embeddings, in-batch
  negatives plus hard negatives (same-mass molecules from the candidate index), learnable
  temperature.
* :class:`Reconstructor`: spectrum encoder -> Morgan fingerprint probabilities (focal loss);
  candidates scored by cosine between predicted probabilities and their bits.
* :class:`DeepSets` and :class:`FingerprintFFN`: MassSpecGym's baselines (per-peak MLP + sum
  pooling; binned spectrum + MLP), fingerprint prediction with BCE, same scoring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from msid.models.config import ModelConfig
from msid.models.encoder import FourierFeatures, SpectrumEncoder


# -- losses -------------------------------------------------------------------------------------
def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float = -1.0) -> torch.Tensor:
    """Mean binary focal loss: -alpha_t (1 - p_t)^gamma log p_t (alpha < 0: no weighting)."""
    logits, target = logits.float(), target.float()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean()


def info_nce(spec: torch.Tensor, mols: torch.Tensor, target: torch.Tensor,
             logit_scale: torch.Tensor, exclude: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of spectrum i over molecules (cosine x scale); ``target[i]`` is its match.

    ``exclude`` (B, M) bool masks columns that must not count as negatives (other copies of the
    true structure, padding). Returns (loss, logits).
    """
    # float32 under bf16 autocast too: at scale 50 a bf16 matmul moves logits by up to ~0.2
    with torch.autocast(device_type=spec.device.type, enabled=False):
        logits = logit_scale.float() * spec.float() @ mols.float().T
        if exclude is not None:
            keep = F.one_hot(target, logits.shape[1]).bool()
            logits = logits.masked_fill(exclude & ~keep, float("-inf"))
        return F.cross_entropy(logits, target), logits


def fingerprint_f1(probs: torch.Tensor, target: torch.Tensor, threshold: float = 0.5
                   ) -> torch.Tensor:
    """Per-sample F1 of thresholded predicted bits vs target bits (mean over the batch)."""
    pred = probs >= threshold
    tgt = target >= 0.5
    tp = (pred & tgt).sum(-1).float()
    denom = pred.sum(-1).float() + tgt.sum(-1).float()
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.ones_like(tp))
    return f1.mean()


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def _mlp(n_in: int, hidden: int, n_out: int, n_layers: int, dropout: float,
         activation: str = "gelu") -> nn.Sequential:
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(max(n_layers - 1, 0)):
        layers += [nn.Linear(d, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        d = hidden
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


def _spectrum_args(batch: dict) -> tuple:
    return (batch["mz"], batch["intensity"], batch["pad_mask"], batch["precursor_mz"],
            batch.get("adduct"))


def scaled_intensity(intensity: torch.Tensor, transform: str, scale: float = 1.0
                     ) -> torch.Tensor:
    """Peak intensities (relative to the base peak, times ``scale``) as a baseline reads them."""
    intensity = intensity.float().clamp_min(0) * scale
    return intensity.sqrt() if transform == "sqrt" else intensity


def drop_peaks(batch: dict, p: float) -> dict:
    """Training augmentation: hide each peak with probability ``p`` (padding stays padding)."""
    if p <= 0:
        return batch
    pad = batch["pad_mask"]
    drop = torch.rand(pad.shape, device=pad.device) < p
    return {**batch, "pad_mask": pad | drop}


# -- models -------------------------------------------------------------------------------------
class RetrievalModel(nn.Module):
    mol_input = "bits"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def encode_spectra(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def encode_molecules(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(feats.float(), dim=-1)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


class Ranker(RetrievalModel):
    """Contrastive spectrum/molecule embeddings; needs ``mol_pos`` (B, F), ``mol_neg`` (B, K, F),
    ``neg_valid`` (B, K) and ``struct_idx`` (B,) in training batches."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.mol_input = cfg.mol_fp
        self.encoder = SpectrumEncoder(cfg.encoder)
        self.spec_proj = nn.Linear(cfg.encoder.d_model, cfg.emb_dim)
        self.mol_drop = nn.Dropout(cfg.mol_input_dropout)
        self.mol_mlp = _mlp(cfg.fp_bits, cfg.mol_hidden, cfg.emb_dim, cfg.mol_layers + 1,
                            cfg.dropout)
        self.fp_head = (nn.Linear(cfg.encoder.d_model, cfg.fp_bits) if cfg.fp_aux_weight > 0
                        else None)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def encode_spectra(self, batch: dict) -> torch.Tensor:
        return F.normalize(self.spec_proj(self.encoder(*_spectrum_args(batch))).float(), dim=-1)

    def encode_molecules(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mol_mlp(self.mol_drop(feats)).float(), dim=-1)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        batch = drop_peaks(batch, self.cfg.peak_dropout)
        h = self.encoder(*_spectrum_args(batch))
        spec = F.normalize(self.spec_proj(h).float(), dim=-1)
        b = spec.shape[0]
        neg = batch["mol_neg"]
        k = neg.shape[1]
        mols = self.encode_molecules(torch.cat([batch["mol_pos"], neg.reshape(b * k, -1)]))
        sid = batch["struct_idx"]
        same = sid.unsqueeze(1) == sid.unsqueeze(0)  # in-batch copies of the same structure
        if not self.cfg.in_batch_negatives:  # hard (same-mass) negatives only
            same = torch.ones_like(same)
        invalid = ~batch["neg_valid"].reshape(1, b * k).expand(b, b * k)
        if "neg_struct" in batch:  # a hard negative that is this row's own structure
            invalid = invalid | (batch["neg_struct"].reshape(1, b * k) == sid.unsqueeze(1))
        exclude = torch.cat([same, invalid], 1)
        target = torch.arange(b, device=spec.device)
        loss, logits = info_nce(spec, mols, target, self.logit_scale, exclude)
        acc = (logits.argmax(1) == target).float().mean()
        logs = {"acc": float(acc), "temperature": float(1 / self.logit_scale.detach())}
        if self.fp_head is not None:  # substructure supervision for the spectrum encoder
            aux = focal_loss(self.fp_head(h), (batch["mol_pos"] > 0).float(),
                             self.cfg.focal_gamma, self.cfg.focal_alpha)
            loss = loss + self.cfg.fp_aux_weight * aux
            logs["fp_aux"] = float(aux.detach())
        return loss, logs


class _FingerprintPredictor(RetrievalModel):
    """Common part of the fingerprint-predicting families."""

    def logits(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def encode_spectra(self, batch: dict) -> torch.Tensor:
        return F.normalize(torch.sigmoid(self.logits(batch).float()), dim=-1)

    def fingerprint_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = self.logits(drop_peaks(batch, self.cfg.peak_dropout))
        loss = self.fingerprint_loss(logits, batch["fp"])
        with torch.no_grad():
            f1 = fingerprint_f1(torch.sigmoid(logits.float()), batch["fp"])
        return loss, {"fp_f1": float(f1)}


class Reconstructor(_FingerprintPredictor):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.encoder = SpectrumEncoder(cfg.encoder)
        self.head = _mlp(cfg.encoder.d_model, cfg.head_hidden, cfg.fp_bits, 2, cfg.dropout)

    def logits(self, batch: dict) -> torch.Tensor:
        return self.head(self.encoder(*_spectrum_args(batch)))

    def fingerprint_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.cfg.focal_gamma, self.cfg.focal_alpha)


class DeepSets(_FingerprintPredictor):
    """MassSpecGym's DeepSets baseline: phi(m/z, intensity) per peak, sum, rho -> fingerprint.
    With ``deepsets_mz_freqs`` > 0, phi also reads Fourier features of m/z and the intensity
    is scaled to about [0, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        h = cfg.deepsets_hidden
        self.fourier = (FourierFeatures(cfg.deepsets_mz_freqs, 1e-2, 1e3)
                        if cfg.deepsets_mz_freqs > 0 else None)
        n_in = 2 + (self.fourier.n_out if self.fourier is not None else 0)
        self.phi = _mlp(n_in, h, h, cfg.deepsets_layers + 1, 0.0, cfg.activation)
        self.rho = _mlp(h, cfg.head_hidden, cfg.fp_bits, 2, cfg.dropout, cfg.activation)

    def logits(self, batch: dict) -> torch.Tensor:
        inten = scaled_intensity(batch["intensity"], self.cfg.intensity_transform,
                                 self.cfg.intensity_scale)
        x = torch.stack([(batch["mz"] / 1000.0).float(), inten], -1)
        if self.fourier is not None:
            top = self.cfg.intensity_scale ** (0.5 if self.cfg.intensity_transform == "sqrt"
                                               else 1.0)
            x = torch.cat([self.fourier(batch["mz"]), x[..., :1], (inten / top).unsqueeze(-1)],
                          -1)
        h = self.phi(x).masked_fill(batch["pad_mask"].unsqueeze(-1), 0.0).sum(1)
        return self.rho(h)


class FingerprintFFN(_FingerprintPredictor):
    """MassSpecGym's Fingerprint FFN baseline: binned spectrum (max intensity per bin) -> MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.n_bins = math.ceil(round(cfg.ffn_max_mz / cfg.ffn_bin_width, 6))
        self.mlp = _mlp(self.n_bins, cfg.head_hidden, cfg.fp_bits, cfg.ffn_layers + 1,
                        cfg.dropout, cfg.activation)

    def binned(self, batch: dict) -> torch.Tensor:
        mz, pad = batch["mz"], batch["pad_mask"]
        inten = scaled_intensity(batch["intensity"], self.cfg.intensity_transform,
                                 self.cfg.intensity_scale)
        idx = torch.floor(mz / self.cfg.ffn_bin_width).long()
        ok = (~pad) & (idx >= 0) & (idx < self.n_bins)
        idx = idx.clamp(0, self.n_bins - 1)
        out = torch.zeros(mz.shape[0], self.n_bins, device=mz.device)
        return out.scatter_reduce(1, idx, inten * ok, reduce="amax", include_self=True)

    def logits(self, batch: dict) -> torch.Tensor:
        return self.mlp(self.binned(batch))


class Ensemble(RetrievalModel):
    """Models of one family trained apart, scored together (Rankers, Reconstructors):
    embeddings are the members' unit vectors concatenated and scaled by 1/sqrt(n), so a dot
    product is the mean of their cosines."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.members = nn.ModuleList(MODELS[cfg.family](ModelConfig.from_dict(m))
                                     for m in cfg.members)
        self.mol_input = self.members[0].mol_input
        self._scale = 1.0 / math.sqrt(len(self.members))

    def encode_spectra(self, batch: dict) -> torch.Tensor:
        return torch.cat([m.encode_spectra(batch) for m in self.members], -1) * self._scale

    def encode_molecules(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode_molecules(feats) for m in self.members], -1) * self._scale

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise TypeError("an ensemble is not trained as one model: train its members")


MODELS: dict[str, type[RetrievalModel]] = {
    "ranker": Ranker, "reconstructor": Reconstructor, "deepsets": DeepSets,
    "fp_ffn": FingerprintFFN,
}


def build_model(cfg: ModelConfig) -> RetrievalModel:
    if cfg.members:
        return Ensemble(cfg)
    return MODELS[cfg.family](cfg)
