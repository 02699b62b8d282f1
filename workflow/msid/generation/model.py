"""Spectrum-conditioned SMILES decoder, and GLMR's candidate fusion.

Memory (what the decoder attends to): a mass token (Fourier features of the neutral mass, via
the shared :class:`msid.models.encoder.FourierFeatures`), ``n_memory`` spectrum tokens (the
pooled embedding of the shared :class:`msid.models.encoder.SpectrumEncoder`, projected) and, for
GLMR, candidate tokens fused per ``fusion``:

* ``cross``: the spectrum tokens attend (as queries) to the candidates' frozen encodings (keys
  and values); the fused tokens join the memory;
* ``concat``: every candidate's projected encoding is a memory token;
* ``average``: their masked mean is one memory token.

Batches without ``intensity`` (decoder pretraining on molecules alone) get the mass token only.
The pre-norm decoder layers keep a key/value cache, so beam search costs one token per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msid.generation.config import GenModelConfig
from msid.models.encoder import FourierFeatures, SpectrumEncoder


class DecoderLayer(nn.Module):
    def __init__(self, d: int, n_heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.h = n_heads
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.q2 = nn.Linear(d, d)
        self.kv2 = nn.Linear(d, 2 * d)
        self.o2 = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        return x.view(n, t, self.h, d // self.h).transpose(1, 2)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv2(memory).chunk(2, -1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, mem_kv: tuple[torch.Tensor, torch.Tensor],
                mem_keep: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        n, t, d = x.shape
        p = self.p if self.training else 0.0
        q, k, v = (self._heads(z) for z in self.qkv(self.n1(x)).chunk(3, -1))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=p,
                                           is_causal=cache is None and t > 1)
        x = x + self.drop(self.o(a.transpose(1, 2).reshape(n, t, d)))
        q = self._heads(self.q2(self.n2(x)))
        a = F.scaled_dot_product_attention(q, *mem_kv, attn_mask=mem_keep[:, None, None, :],
                                           dropout_p=p)
        x = x + self.drop(self.o2(a.transpose(1, 2).reshape(n, t, d)))
        return x + self.drop(self.ff(self.n3(x)))


class SmilesDecoderModel(nn.Module):
    """``loss(batch)`` for the Trainer; ``memory(batch)`` + ``step`` for beam search."""

    def __init__(self, cfg: GenModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        d = cfg.d_model
        self.encoder = SpectrumEncoder(cfg.encoder)
        self.spec_proj = nn.Linear(cfg.encoder.d_model, cfg.n_memory * d)
        self.mass_fourier = FourierFeatures(cfg.mass_freqs, 1e-3, 1e3)
        self.mass_mlp = nn.Sequential(nn.Linear(self.mass_fourier.n_out, d), nn.GELU(),
                                      nn.Linear(d, d))
        self.kind = nn.Embedding(3, d)  # memory token type: mass, spectrum, candidate
        self.mem_norm = nn.LayerNorm(d)
        self.tok = nn.Embedding(vocab_size, d)
        self.pos = nn.Embedding(cfg.max_len, d)
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.n_heads, d * cfg.ff_mult, cfg.dropout)
                                    for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size)
        if cfg.fusion != "none":
            if cfg.cand_dim <= 0:
                raise ValueError("GLMR fusion needs cand_dim (size of the candidate encodings)")
            self.cand_proj = nn.Sequential(nn.Linear(cfg.cand_dim, d), nn.GELU(),
                                           nn.Linear(d, d))
            if cfg.fusion == "cross":
                self.fuse = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout,
                                                  batch_first=True)
                self.fuse_norm = nn.LayerNorm(d)

    # -- memory ------------------------------------------------------------------------------
    def memory(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory (B, M, d), keep mask (B, M) True at real tokens)."""
        mass = batch["mass"]
        b = mass.shape[0]
        d = self.cfg.d_model
        dev = mass.device
        parts = [self.mass_mlp(self.mass_fourier(mass)).unsqueeze(1)
                 + self.kind.weight[0]]
        keep = [torch.ones(b, 1, dtype=torch.bool, device=dev)]
        if "intensity" in batch:
            h = self.encoder(batch["mz"], batch["intensity"], batch["pad_mask"],
                             batch["precursor_mz"], batch.get("adduct"))
            spec = self.spec_proj(h).view(b, self.cfg.n_memory, d) + self.kind.weight[1]
            parts.append(spec)
            keep.append(torch.ones(b, self.cfg.n_memory, dtype=torch.bool, device=dev))
            if self.cfg.fusion != "none" and "cand_enc" in batch:
                cand = self.cand_proj(batch["cand_enc"].float()) + self.kind.weight[2]
                cmask = batch["cand_mask"]  # (B, K) True at real candidates
                if self.cfg.fusion == "concat":
                    parts.append(cand)
                    keep.append(cmask)
                elif self.cfg.fusion == "average":
                    w = cmask.float().unsqueeze(-1)
                    parts.append((cand * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
                                 .clamp_min(1.0))
                    keep.append(cmask.any(1, keepdim=True))
                else:
                    empty = ~cmask.any(1)
                    kpm = ~cmask.clone()
                    kpm[empty, 0] = False  # an empty set attends to padding, then is masked
                    fused, _ = self.fuse(spec, cand, cand, key_padding_mask=kpm,
                                         need_weights=False)
                    parts.append(self.fuse_norm(fused + spec))
                    keep.append((~empty).unsqueeze(1).expand(b, self.cfg.n_memory))
        return self.mem_norm(torch.cat(parts, 1)), torch.cat(keep, 1)

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.memory_kv(memory) for layer in self.layers]

    # -- decoding ----------------------------------------------------------------------------
    def logits(self, tokens: torch.Tensor, mem_kv: list, mem_keep: torch.Tensor,
               caches: list[dict] | None = None, start: int = 0) -> torch.Tensor:
        t = tokens.shape[1]
        pos = torch.arange(start, start + t, device=tokens.device).clamp_max(self.cfg.max_len - 1)
        x = self.tok(tokens) + self.pos(pos)
        for i, layer in enumerate(self.layers):
            x = layer(x, mem_kv[i], mem_keep, None if caches is None else caches[i])
        return self.head(self.norm(x))

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        mem, keep = self.memory(batch)
        tokens = batch["tokens"]
        out = self.logits(tokens[:, :-1], self.memory_kv(mem), keep)
        target = tokens[:, 1:]
        loss = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), target.reshape(-1),
                               ignore_index=0)
        with torch.no_grad():
            real = target != 0
            acc = ((out.argmax(-1) == target) & real).sum() / real.sum().clamp_min(1)
        return loss, {"token_acc": float(acc)}

    def freeze_encoder(self) -> None:
        """GLMR: the spectral encoder (and its projection, the mass token) stay as trained."""
        for mod in (self.encoder, self.spec_proj, self.mass_mlp):
            for p in mod.parameters():
                p.requires_grad_(False)
