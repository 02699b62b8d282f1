"""Spectrum-conditioned SMILES decoder, and GLMR's candidate fusion.

Memory (what the decoder attends to): a mass token (Fourier features of the neutral mass, via
the shared :class:`msid.models.encoder.FourierFeatures`), ``n_memory`` spectrum tokens (the
pooled embedding of the shared :class:`msid.models.encoder.SpectrumEncoder`, projected) and, for
GLMR, candidate tokens fused per ``fusion``:

* ``cross``: the spectrum tokens attend (as queries) to the candidates' frozen encodings (keys
  and values); the fused tokens join the memory;
* ``concat``: every candidate's projected encoding is a memory token;
* ``average``: their masked mean is one memory token;
* ``copy``: every token of every candidate's SMILES is a memory token (token + position +
  candidate tag embeddings, and the token before it, so that a key says "follows this token at
  that position"), and a pointer-generator head mixes the vocabulary distribution with a copy
  distribution over those tokens (See et al., 2017): the decoder can write out a candidate
  whole, so generating picks among the candidates, not only near them.

Batches without ``intensity`` (decoder pretraining on molecules alone) get the mass token only.
The pre-norm decoder layers keep a key/value cache, so beam search costs one token per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msid.generation.config import MAX_CANDIDATE_SLOTS, GenModelConfig
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
        if cfg.fusion == "copy":
            self.slot = nn.Embedding(MAX_CANDIDATE_SLOTS, d)
            self.prev_tok = nn.Embedding(vocab_size, d)
            self.ptr_q = nn.Linear(d, d)
            self.ptr_k = nn.Linear(d, d)
            self.ptr_gate = nn.Linear(d, 1)
        elif cfg.fusion != "none":
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
            if self.cfg.fusion == "copy" and "cand_tokens" in batch:
                parts.append(self._candidate_tokens(batch))
                keep.append((batch["cand_tokens"] != 0).reshape(b, -1))
            elif self.cfg.fusion != "none" and "cand_enc" in batch:
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

    def _candidate_tokens(self, batch: dict) -> torch.Tensor:
        """Copy fusion: (B, K*L, d) embeddings of the candidates' tokens (B, K, L)."""
        ct = batch["cand_tokens"]
        b, k, n = ct.shape
        slots = batch.get("cand_slots")
        if slots is None:
            slots = torch.arange(k, device=ct.device).expand(b, k)
        pos = torch.arange(n, device=ct.device).clamp_max(self.cfg.max_len - 1)
        prev = F.pad(ct[..., :-1], (1, 0))  # the token each one follows (pad before <bos>)
        x = (self.tok(ct) + self.prev_tok(prev) + self.pos(pos)
             + self.slot(slots.clamp_max(MAX_CANDIDATE_SLOTS - 1)).unsqueeze(2)
             + self.kind.weight[2])
        return x.reshape(b, k * n, -1)

    def pointer(self, batch: dict, memory: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Copy fusion: (pointer keys (B, M, d), token ids (B, M)) of the candidate tokens, the
        last M memory tokens; None without candidates or for other fusions."""
        if self.cfg.fusion != "copy" or "cand_tokens" not in batch:
            return None
        ids = batch["cand_tokens"].reshape(memory.shape[0], -1)
        return self.ptr_k(memory[:, -ids.shape[1]:]), ids

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.memory_kv(memory) for layer in self.layers]

    # -- decoding ----------------------------------------------------------------------------
    def logits(self, tokens: torch.Tensor, mem_kv: list, mem_keep: torch.Tensor,
               caches: list[dict] | None = None, start: int = 0,
               pointer: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V); with ``pointer`` (copy fusion) log-probabilities of the
        vocabulary distribution mixed with the copy distribution (softmax leaves them as they
        are, so callers treat both alike)."""
        t = tokens.shape[1]
        pos = torch.arange(start, start + t, device=tokens.device).clamp_max(self.cfg.max_len - 1)
        x = self.tok(tokens) + self.pos(pos)
        for i, layer in enumerate(self.layers):
            x = layer(x, mem_kv[i], mem_keep, None if caches is None else caches[i])
        h = self.norm(x)
        out = self.head(h)
        if pointer is None:
            return out
        keys, ids = pointer
        target = ids >= 2  # a copy writes a token or <eos> (ids 2+), never <pad> or <bos>
        s = (self.ptr_q(h) @ keys.transpose(1, 2)).float() / keys.shape[-1] ** 0.5  # (B, T, M)
        s = s.masked_fill(~target.unsqueeze(1), -torch.inf)
        a = torch.softmax(s, -1).nan_to_num(0.0)
        copy = torch.zeros(*out.shape, dtype=a.dtype, device=a.device).scatter_add_(
            2, ids.unsqueeze(1).expand(-1, t, -1), a)
        gate = torch.sigmoid(self.ptr_gate(h).float())  # share of the vocabulary distribution
        gate = torch.where(target.any(1).view(-1, 1, 1), gate, torch.ones_like(gate))
        p = gate * torch.softmax(out.float(), -1) + (1 - gate) * copy
        return torch.log(p.clamp_min(1e-12))

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        mem, keep = self.memory(batch)
        tokens = batch["tokens"]
        out = self.logits(tokens[:, :-1], self.memory_kv(mem), keep,
                          pointer=self.pointer(batch, mem))
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
