"""PepTRM: a spectrum transformer encoder and a tiny recursive decoder core with shared weights.

The decoder predicts the whole sequence at once (``max_len`` positions, token 0 = end/padding)
and refines it: for each of ``T`` supervision steps it updates a latent state ``z`` ``n`` times
from the soft embedding of the current sequence distribution (plus position and step
embeddings, cross-attending to the spectrum), then re-predicts the sequence from ``z``. The same
core does every update (residual transformer layers). Training supervises every step, with step
weights growing exponentially (``step_weight_growth``), adds a precursor-mass loss (expected
residue mass of the predicted distribution vs the precursor's), and detaches the carried state
between steps (each step learns to improve whatever it is handed). Evaluation uses EMA weights
(``TrainConfig.ema_decay``).

Ion evidence (``ion_evidence``, DeepNovo's ion features for a whole-sequence decoder): the logits
of token v at position k are raised by a small learned function of what the spectrum says about
v there. Given the residue mass of the sequence before k (the true prefix in training, each
beam's own prefix at decoding), v's b and y ions (charge 1, and 2 for precursors of charge >= 2)
are looked up among the peaks at two fragment tolerances, and the remainder to the precursor
mass tells whether v closes the peptide or overshoots it. The recursion feeds back the
transformer's own distribution only (the evidence of training's true prefix would leak it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from msid.models.config import config_from_dict
from msid.peptides.data import PeptideSpectrum, top_peaks
from msid.peptides.physics import ISOTOPE, PROTON, WATER, Vocab, neutral_from_mz


@dataclass
class PepTRMConfig:
    d_model: int = 128
    n_heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 1  # the shared core (applied T * (n + 1) times)
    ff_mult: int = 2
    dropout: float = 0.1
    T: int = 3  # supervision (outer) steps
    n: int = 2  # latent (inner) steps per supervision step
    max_len: int = 30  # tokens (N-terminal modification counts as one)
    max_peaks: int = 100
    n_freqs: int = 48
    max_charge: int = 6
    step_weight_growth: float = 1.5  # weight of step t is growth**t
    mass_loss_weight: float = 0.1
    label_smoothing: float = 0.05
    fp64_mass: bool = False  # mass features computed in float64 (fp32 loses periods < 0.01 Da)
    ion_evidence: bool = True  # the ion-evidence term on the logits (see the module docstring)
    evidence_tol_da: list[float] = field(default_factory=lambda: [0.02, 0.3])  # fragment tols
    evidence_hidden: int = 32

    @classmethod
    def from_dict(cls, d: dict | None) -> PepTRMConfig:
        return config_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


SIZES: dict[str, dict] = {
    "tiny": {},  # trains on 2 CPU cores
    "published": {"d_model": 384, "n_heads": 8, "enc_layers": 3, "dec_layers": 3, "T": 8,
                  "n": 6, "ff_mult": 4, "max_peaks": 300},
}


class MassEncoder(nn.Module):
    """Sinusoidal features of a mass (log-spaced periods 0.001 .. 10,000 Da) -> d_model."""

    def __init__(self, d: int, n_freqs: int, fp64: bool = False) -> None:
        super().__init__()
        periods = torch.logspace(-3, 4, n_freqs, dtype=torch.float64)
        self.fp64 = fp64
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)
        self.proj = nn.Linear(2 * n_freqs, d)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        if self.fp64:  # angles of 1,000 Da at a 0.001 Da period need float64
            ang = m.unsqueeze(-1).double() * self.omega
            feats = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).float()
        else:
            ang = m.unsqueeze(-1).float() * self.omega.float()
            feats = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
        return self.proj(feats.to(self.proj.weight.dtype))


class IonEvidence(nn.Module):
    """Per (position, token): features of the token's b/y ions among the peaks -> a logit term.

    Features: for b1, y1, b2, y2 (charge 2 only when the precursor's is >= 2) and each
    tolerance, the larger of the two nearest peaks' intensities (sqrt-scaled, max 1), each
    times a Gaussian of its m/z distance; whether the residue mass left after the token is ~0
    (precursor mass within 0.05 Da, isotope 0 or 1) and how far the token overshoots it (per
    50 Da, capped at 1); an end-token flag (the end token carries no ions of its own)."""

    def __init__(self, token_mass: torch.Tensor, tols: list[float], hidden: int) -> None:
        super().__init__()
        self.tols = [float(t) for t in tols]
        self.register_buffer("token_mass", token_mass.clone(), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(4 * len(self.tols) + 3, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))

    @torch.no_grad()
    def features(self, batch: dict, prefix: torch.Tensor) -> torch.Tensor:
        """``prefix``: (B, L) residue mass before each position -> (B, L, V, F)."""
        cand = prefix.float().unsqueeze(-1) + self.token_mass  # (B, L, V)
        B, L, V = cand.shape
        M = batch["precursor_mass"].float()[:, None, None]
        pad = batch["peak_pad"]
        mz = batch["mz"].float().masked_fill(pad, 1e9)  # peaks in m/z order, padding last
        w = batch["intensity"].float().masked_fill(pad, 0.0)
        two = (batch["charge"] >= 2).float()[:, None, None]
        b1, y1 = cand + PROTON, M - cand + PROTON
        residue = torch.ones_like(cand)
        residue[..., 0] = 0.0
        feats = []
        for j, ion in enumerate((b1, y1, (b1 + PROTON) / 2, (y1 + PROTON) / 2)):
            q = ion.reshape(B, -1).contiguous()
            hi = torch.searchsorted(mz, q).clamp(max=mz.shape[1] - 1)
            lo = (hi - 1).clamp(min=0)  # the two peaks around each ion m/z
            d = torch.stack([q - mz.gather(1, lo), mz.gather(1, hi) - q], -1)
            wn = torch.stack([w.gather(1, lo), w.gather(1, hi)], -1)
            for tol in self.tols:
                f = (wn * torch.exp(-0.5 * (d / tol) ** 2)).amax(-1).view(B, L, V) * residue
                feats.append(f * two if j >= 2 else f)
        rem = M - WATER - cand
        close = torch.maximum(torch.exp(-0.5 * (rem / 0.05) ** 2),  # the 13C peak picked:
                              torch.exp(-0.5 * ((rem - ISOTOPE) / 0.05) ** 2))  # 1 Da left
        feats += [close, (-rem / 50.0).clamp(0.0, 1.0), 1.0 - residue]
        return torch.stack(feats, -1)

    def forward(self, batch: dict, prefix: torch.Tensor) -> torch.Tensor:
        """(B, L, V) logit terms."""
        f = self.features(batch, prefix)
        return self.mlp(f.to(self.mlp[0].weight.dtype)).squeeze(-1)


class PepTRM(nn.Module):
    def __init__(self, cfg: PepTRMConfig, vocab: Vocab | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = vocab or Vocab.default()
        V, d = len(self.vocab), cfg.d_model
        self.register_buffer("token_mass", torch.tensor(self.vocab.masses, dtype=torch.float32),
                             persistent=False)
        self.peak_mz = MassEncoder(d, cfg.n_freqs, cfg.fp64_mass)
        self.peak_int = nn.Linear(1, d)
        self.prec_mass = MassEncoder(d, cfg.n_freqs, cfg.fp64_mass)
        self.charge_emb = nn.Embedding(cfg.max_charge + 1, d)
        enc_layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout,
                                               batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, cfg.enc_layers,
                                             enable_nested_tensor=False)
        dec_layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout,
                                               batch_first=True, norm_first=True)
        self.core = nn.TransformerDecoder(dec_layer, cfg.dec_layers)  # shared by every update
        self.tok_emb = nn.Embedding(V, d)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.step_emb = nn.Embedding(2 * cfg.T, d)
        self.z0 = nn.Parameter(torch.zeros(d))
        self.y0 = nn.Parameter(torch.zeros(d))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)
        self.evidence = (IonEvidence(self.token_mass, cfg.evidence_tol_da, cfg.evidence_hidden)
                         if cfg.ion_evidence else None)

    def true_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) residue mass before each position of the target sequences."""
        m = self.token_mass[tokens]
        return torch.cumsum(m, -1) - m

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        pm = batch["precursor_mass"]
        charge = batch["charge"].clamp(0, self.cfg.max_charge)
        peaks = self.peak_mz(batch["mz"]) + self.peak_int(batch["intensity"].unsqueeze(-1))
        prec = (self.prec_mass(pm) + self.charge_emb(charge)).unsqueeze(1)
        x = torch.cat([prec, peaks], dim=1)
        pad = torch.cat([torch.zeros_like(batch["peak_pad"][:, :1]), batch["peak_pad"]], dim=1)
        return self.encoder(x, src_key_padding_mask=pad), pad

    def forward(self, batch: dict, detach: bool = False) -> list[torch.Tensor]:
        """The transformer's logits (B, max_len, V) after every supervision step (without the
        ion-evidence term, which needs a prefix: :meth:`loss` and decoding add it)."""
        mem, pad = self.encode(batch)
        B, L = mem.shape[0], self.cfg.max_len
        pos = self.pos_emb.weight[:L].unsqueeze(0)
        z = self.z0.expand(B, L, -1)
        e_y = self.y0.expand(B, L, -1)
        out = []
        for t in range(self.cfg.T):
            s_lat, s_out = self.step_emb.weight[2 * t], self.step_emb.weight[2 * t + 1]
            for _ in range(self.cfg.n):
                z = self.core(z + e_y + pos + s_lat, mem, memory_key_padding_mask=pad)
            h = self.core(z + e_y + pos + s_out, mem, memory_key_padding_mask=pad)
            logits = self.head(self.norm(h))
            out.append(logits)
            e_y = torch.softmax(logits, dim=-1) @ self.tok_emb.weight
            if detach:
                z, e_y = z.detach(), e_y.detach()
        return out

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        steps = self.forward(batch, detach=True)
        target = batch["tokens"]
        residue_sum = batch["precursor_mass"] - WATER
        w = torch.tensor([cfg.step_weight_growth ** t for t in range(cfg.T)])
        w = w / w.sum()
        total = torch.zeros((), device=target.device)
        logs: dict[str, float] = {}
        ev = self.evidence(batch, self.true_prefix(target)) if self.evidence is not None else 0.0
        for t, logits in enumerate(steps):
            ce = F.cross_entropy((logits + ev).transpose(1, 2), target,
                                 label_smoothing=cfg.label_smoothing)
            exp_mass = (torch.softmax(logits.float(), -1) @ self.token_mass).sum(-1)
            mass_l = F.smooth_l1_loss(exp_mass / 100.0, residue_sum.float() / 100.0)
            total = total + w[t] * (ce + cfg.mass_loss_weight * mass_l)
            if t in (0, cfg.T - 1):
                acc = ((logits + ev).argmax(-1) == target).float().mean()
                logs[f"tok_acc_step{t + 1}"] = float(acc)
        logs["mass_loss"] = float(mass_l.detach())
        return total, logs


def tensorize(spectra: list[PeptideSpectrum], cfg: PepTRMConfig, vocab: Vocab,
              with_tokens: bool = True) -> dict[str, torch.Tensor]:
    """Pad a list of spectra into a batch (top ``max_peaks`` peaks, sqrt intensities)."""
    B, P = len(spectra), cfg.max_peaks
    mz = np.zeros((B, P), dtype=np.float32)
    inten = np.zeros((B, P), dtype=np.float32)
    pad = np.ones((B, P), dtype=bool)
    for i, s in enumerate(spectra):
        m, it = top_peaks(np.asarray(s.mz), np.asarray(s.intensity), P)
        mz[i, :len(m)], inten[i, :len(m)], pad[i, :len(m)] = m, it, False
        if len(m) == 0:
            pad[i, 0] = False
    out = {"mz": torch.from_numpy(mz), "intensity": torch.from_numpy(inten),
           "peak_pad": torch.from_numpy(pad),
           "precursor_mass": torch.tensor([neutral_from_mz(s.precursor_mz, s.charge)
                                           for s in spectra], dtype=torch.float32),
           "charge": torch.tensor([s.charge for s in spectra], dtype=torch.long)}
    if with_tokens:
        tok = np.zeros((B, cfg.max_len), dtype=np.int64)
        for i, s in enumerate(spectra):
            ids = vocab.encode(s.tokens)[:cfg.max_len]
            tok[i, :len(ids)] = ids
        out["tokens"] = torch.from_numpy(tok)
    return out
