"""Beam search over SMILES tokens: top-k distinct, RDKit-valid, canonical molecules per query.

Finished beams are decoded, parsed with RDKit (:func:`msid.chem.structures.parse_structure`:
standardised, canonical, stereo removed) and de-duplicated by InChIKey first block; beams that
do not parse are dropped, never returned. The optional precursor filter keeps molecules whose
formula equals the query's (when the query carries one) or else whose neutral mass is within
the precursor tolerance of the query's neutral mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from msid.chem.structures import Structure, parse_structure
from msid.generation.model import SmilesDecoderModel
from msid.generation.tokenizer import Tokenizer


@dataclass
class Generated:
    structure: Structure
    score: float  # length-normalised log-probability of the beam


@torch.inference_mode()
def beam_search(model: SmilesDecoderModel, tok: Tokenizer, batch: dict, beam_width: int = 10,
                max_len: int | None = None, length_alpha: float = 0.6
                ) -> list[list[tuple[str, float]]]:
    """Per query: (decoded string, score) of its ``beam_width`` best finished beams, best first."""
    model.eval()
    mem, keep = model.memory(batch)
    b, w = mem.shape[0], beam_width
    mem = mem.repeat_interleave(w, 0)
    keep = keep.repeat_interleave(w, 0)
    mem_kv = model.memory_kv(mem)
    max_len = min(max_len or model.cfg.max_len, model.cfg.max_len)
    dev = mem.device
    seqs = torch.full((b * w, 1), tok.bos, dtype=torch.long, device=dev)
    scores = torch.zeros(b, w, device=dev)
    scores[:, 1:] = -math.inf  # all beams start identical: keep one
    done = torch.zeros(b * w, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b * w, device=dev)
    caches: list[dict] = [{} for _ in model.layers]
    last = seqs
    v = len(tok)
    for step in range(max_len - 1):
        logp = model.logits(last, mem_kv, keep, caches, start=step)[:, -1].float()
        logp = torch.log_softmax(logp, -1)
        logp[:, tok.pad] = -math.inf
        logp[:, tok.bos] = -math.inf
        # a finished beam only extends with <pad> at no cost
        fin = torch.full((v,), -math.inf, device=dev)
        fin[tok.pad] = 0.0
        logp = torch.where(done.unsqueeze(1), fin, logp)
        cand = (scores.reshape(b * w, 1) + logp).reshape(b, w * v)
        top, idx = cand.topk(w, dim=1)
        src = (idx // v) + torch.arange(b, device=dev).unsqueeze(1) * w
        nxt = (idx % v).reshape(-1)
        src = src.reshape(-1)
        seqs = torch.cat([seqs[src], nxt.unsqueeze(1)], 1)
        done = done[src] | (nxt == tok.eos)
        lengths = lengths[src] + (nxt != tok.pad).float()
        for c in caches:
            c["k"], c["v"] = c["k"][src], c["v"][src]
        scores = top
        last = nxt.unsqueeze(1)
        if bool(done.all()):
            break
    norm = scores.reshape(-1) / lengths.clamp_min(1).pow(length_alpha)
    out = []
    for q in range(b):
        rows = []
        for j in range(w):
            r = q * w + j
            if not bool(done[r]) or not math.isfinite(float(scores.reshape(-1)[r])):
                continue
            rows.append((tok.decode(seqs[r, 1:].tolist()), float(norm[r])))
        rows.sort(key=lambda x: -x[1])
        out.append(rows)
    return out


def distinct_valid(beams: list[tuple[str, float]], k: int, *, mass: float = math.nan,
                   formula: str = "", tol_da: float = 0.01, tol_ppm: float = 10.0,
                   filter_precursor: bool = True) -> tuple[list[Generated], int]:
    """Top-``k`` distinct valid molecules of one query's beams (best first), filtered by the
    precursor when asked. Returns (molecules, number dropped by the filter)."""
    out: list[Generated] = []
    seen: set[str] = set()
    dropped = 0
    tol = max(tol_da, tol_ppm * 1e-6 * mass) if math.isfinite(mass) else math.inf
    for text, score in beams:
        st = parse_structure(text)
        if st is None or not st.inchikey or st.inchikey14 in seen:
            continue
        seen.add(st.inchikey14)
        if filter_precursor:
            if formula:
                ok = st.formula == formula
            else:
                ok = not math.isfinite(mass) or abs(st.exact_mass - mass) <= tol
            if not ok:
                dropped += 1
                continue
        out.append(Generated(st, score))
        if len(out) >= k:
            break
    return out, dropped
