"""Spectral transformer encoder: an MS/MS spectrum (a set of peaks) -> one embedding.

Each peak is a token built from Fourier features of its m/z (log-spaced periods from ~1 mDa to
~1 kDa, so two peaks a few mDa apart get clearly different codes), of its neutral loss
(precursor m/z - peak m/z), its log intensity and the precursor m/z (injected into every token).
Optionally (``nominal_mz_max``) a learned embedding of the nominal m/z of each peak and loss is
added: a direct handle on recurring fragments and losses when training data are few.
A precursor token (never masked) is prepended, so an empty spectrum still has one token.
Optionally (``binned_width``) a second global token holds the whole spectrum binned at a fixed
width (0.1 Da: the fragment identity MassSpecGym's Fingerprint FFN reads), as a learned
embedding per bin weighted by square-root intensity, summed, normalised and projected.
Transformer layers with a key padding mask mix the tokens; attention pooling gives one vector.

Phases are computed in float64 (m/z up to ~2000 Da at 1e-3 Da periods needs it), then sin/cos go
to float32: padding and batch composition never change a spectrum's embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from msid.models.config import EncoderConfig
from msid.spectra_dataset import ADDUCTS


class FourierFeatures(nn.Module):
    """x (any shape, float64 Da) -> [..., 2 * n_freqs] sin/cos at log-spaced periods."""

    def __init__(self, n_freqs: int, min_period: float, max_period: float) -> None:
        super().__init__()
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), n_freqs,
                                 dtype=torch.float64)
        self.register_buffer("freqs", 2 * math.pi / periods, persistent=False)
        self.n_out = 2 * n_freqs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            phase = x.to(torch.float64).unsqueeze(-1) * self.freqs
            phase = torch.remainder(phase, 2 * math.pi)
            return torch.cat([torch.sin(phase), torch.cos(phase)], -1).to(torch.float32)


class AttentionPool(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Linear(d, 1)

    def forward(self, h: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        s = self.score(h).squeeze(-1).float().masked_fill(pad_mask, float("-inf"))
        w = torch.softmax(s, dim=-1).to(h.dtype)
        return torch.einsum("bn,bnd->bd", w, h)


class SpectrumEncoder(nn.Module):
    """(mz, intensity, pad_mask, precursor_mz[, adduct index]) -> (B, d_model)."""

    def _nominal_index(self, x: torch.Tensor) -> torch.Tensor:
        n = torch.round(x.to(torch.float64)).long() + 1
        return torch.where((n >= 1) & (n <= self.cfg.nominal_mz_max + 1), n,
                           torch.zeros_like(n))

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.fourier = FourierFeatures(cfg.n_freqs, cfg.min_period, cfg.max_period)
        f = self.fourier.n_out
        n_in = f + 1 + (f if cfg.neutral_losses else 0)
        self.peak_mlp = nn.Sequential(nn.Linear(n_in, d), nn.GELU(), nn.Linear(d, d))
        # index 0 is "out of range" (a loss below 0 Da or a peak above nominal_mz_max)
        self.nominal = (nn.Embedding(cfg.nominal_mz_max + 2, d) if cfg.nominal_mz_max > 0
                        else None)
        self.nominal_loss = (nn.Embedding(cfg.nominal_mz_max + 2, d)
                             if cfg.nominal_mz_max > 0 and cfg.neutral_losses else None)
        self.prec_mlp = (nn.Sequential(nn.Linear(f, d), nn.GELU(), nn.Linear(d, d))
                         if cfg.precursor_in_tokens else None)
        self.prec_token = nn.Parameter(torch.zeros(d))
        self.adduct = (nn.Embedding(len(ADDUCTS) + 1, d) if cfg.adduct_embedding else None)
        self.n_bins = (math.ceil(round(cfg.binned_max_mz / cfg.binned_width, 6))
                       if cfg.binned_width > 0 else 0)
        if self.n_bins:  # index 0: a peak outside [0, binned_max_mz)
            self.bins = nn.Embedding(self.n_bins + 1, cfg.binned_hidden)
            self.bins_mlp = nn.Sequential(nn.LayerNorm(cfg.binned_hidden), nn.GELU(),
                                          nn.Linear(cfg.binned_hidden, d))
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, d * cfg.ff_mult, cfg.dropout,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.n_layers,
                                                 enable_nested_tensor=False)
        self.pool = AttentionPool(d)
        self.norm = nn.LayerNorm(d)

    def binned_token(self, mz: torch.Tensor, intensity: torch.Tensor, pad_mask: torch.Tensor
                     ) -> torch.Tensor:
        """(B, d): sum over peaks of the peak's bin embedding x sqrt(intensity), projected."""
        idx = torch.floor(mz.to(torch.float64) / self.cfg.binned_width).long() + 1
        idx = torch.where((idx >= 1) & (idx <= self.n_bins), idx, torch.zeros_like(idx))
        w = intensity.float().clamp_min(0).sqrt().masked_fill(pad_mask, 0.0)
        return self.bins_mlp(torch.einsum("bn,bnh->bh", w, self.bins(idx)))

    def forward(self, mz: torch.Tensor, intensity: torch.Tensor, pad_mask: torch.Tensor,
                precursor_mz: torch.Tensor, adduct: torch.Tensor | None = None
                ) -> torch.Tensor:
        prec = precursor_mz.to(torch.float64)
        parts = [self.fourier(mz),
                 torch.log(intensity.float().clamp_min(0) + self.cfg.intensity_eps)
                 .unsqueeze(-1) / 5.0]
        if self.cfg.neutral_losses:
            parts.append(self.fourier(prec.unsqueeze(1) - mz))
        tok = self.peak_mlp(torch.cat(parts, -1))
        if self.nominal is not None:
            tok = tok + self.nominal(self._nominal_index(mz))
            if self.nominal_loss is not None:
                tok = tok + self.nominal_loss(self._nominal_index(prec.unsqueeze(1) - mz))
        if self.cfg.precursor_in_tokens:
            p = self.prec_mlp(self.fourier(prec))  # (B, d)
            tok = tok + p.unsqueeze(1)
        else:  # the precursor then reaches the model only through the neutral losses
            p = tok.new_zeros(tok.shape[0], tok.shape[-1])
        globals_ = [(p + self.prec_token).unsqueeze(1)]
        if self.n_bins:
            globals_.append(self.binned_token(mz, intensity, pad_mask).unsqueeze(1))
        tok = torch.cat([*globals_, tok], 1)
        if self.adduct is not None:
            code = (adduct if adduct is not None
                    else torch.zeros(tok.shape[0], dtype=torch.long, device=tok.device))
            tok = tok + self.adduct(code).unsqueeze(1)
        pad = torch.cat([pad_mask.new_zeros(pad_mask.shape[0], len(globals_)), pad_mask], 1)
        tok = tok.masked_fill(pad.unsqueeze(-1), 0.0)
        h = self.transformer(tok, src_key_padding_mask=pad)
        return self.norm(self.pool(h, pad))
