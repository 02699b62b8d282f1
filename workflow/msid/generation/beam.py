"""Beam search over SMILES tokens: top-k distinct, RDKit-valid, canonical molecules per query.

Finished beams are decoded, parsed with RDKit (:func:`msid.chem.structures.parse_structure`:
standardised, canonical, stereo removed) and de-duplicated by InChIKey first block; beams that
do not parse are dropped, never returned. The optional precursor filter keeps molecules whose
formula equals the query's (when the query carries one) or else whose neutral mass is within
the precursor tolerance of the query's neutral mass.

Given a molecular formula (``atom_budgets``), decoding is constrained to it: a token whose heavy
atoms exceed what the formula has left is masked, and ``<eos>`` is allowed only once every heavy
atom is placed, so every finished beam has the formula's heavy atoms (hydrogens follow from
the bonds; the precursor filter then checks the whole formula). SMILES tokenizers only: a
SELFIES token's meaning depends on the tokens before it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from pyteomics.mass import Composition

from msid.chem.structures import Structure, parse_structure
from msid.generation.model import SmilesDecoderModel
from msid.generation.tokenizer import Tokenizer


@dataclass
class Generated:
    structure: Structure
    score: float  # length-normalised log-probability of the beam


_TOKEN_ELEMENT = re.compile(r"^\[?\d*([A-Z][a-z]?|[a-z][a-z]?)")
_CHARGE = re.compile(r"[+-]\d*$")


def heavy_atoms(formula: str) -> dict[str, int] | None:
    """Heavy-atom counts of a molecular formula (pyteomics' parser; a trailing charge is
    ignored), or None when it does not parse."""
    f = _CHARGE.sub("", (formula or "").strip())
    if not f:
        return None
    try:
        comp = Composition(formula=f)
    except Exception:  # pyteomics raises its own error class for any unparseable formula
        return None
    if any(not re.fullmatch(r"[A-Z][a-z]?", e) for e in comp):
        return None
    return {e: int(n) for e, n in comp.items() if e != "H" and n > 0}


def token_element(token: str) -> str:
    """The heavy atom a SMILES token places ('' for bonds, rings, branches, H and specials)."""
    if token.startswith("<"):
        return ""
    m = _TOKEN_ELEMENT.match(token)
    if not m:
        return ""
    el = m.group(1)
    if not token.startswith("["):
        el = el[0]  # outside brackets only B, C, N, O, S, P, F, I, Cl, Br and aromatic b c n o s p
        if token in ("Cl", "Br"):
            el = token
    el = el.capitalize()
    return "" if el == "H" else el


@lru_cache(maxsize=8)
def _token_table(itos: tuple[str, ...]) -> tuple[tuple[str, ...], torch.Tensor]:
    """(elements, (V, E) count of each element placed by each token)."""
    els = [token_element(t) for t in itos]
    elements = tuple(sorted({e for e in els if e}))
    table = torch.zeros(len(itos), len(elements), dtype=torch.long)
    for i, e in enumerate(els):
        if e:
            table[i, elements.index(e)] = 1
    return elements, table


def budget_tensor(tok: Tokenizer, budgets: Sequence[dict[str, int] | None]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(remaining (B, E), constrained (B,) bool, token table (V, E)) for a batch of formulas.
    A formula with an element no token can place is left unconstrained."""
    elements, table = _token_table(tuple(tok.itos))
    rem = torch.zeros(len(budgets), len(elements), dtype=torch.long)
    on = torch.zeros(len(budgets), dtype=torch.bool)
    if tok.kind != "smiles":
        return rem, on, table
    for i, b in enumerate(budgets):
        if not b or any(e not in elements for e in b):
            continue
        on[i] = True
        for e, n in b.items():
            rem[i, elements.index(e)] = n
    return rem, on, table


@torch.inference_mode()
def beam_search(model: SmilesDecoderModel, tok: Tokenizer, batch: dict, beam_width: int = 10,
                max_len: int | None = None, length_alpha: float = 0.6,
                atom_budgets: Sequence[dict[str, int] | None] | None = None
                ) -> list[list[tuple[str, float]]]:
    """Per query: (decoded string, score) of its ``beam_width`` best finished beams, best first.
    ``atom_budgets`` (per query, heavy-atom counts or None) constrains decoding to a formula."""
    model.eval()
    mem, keep = model.memory(batch)
    pointer = model.pointer(batch, mem)
    b, w = mem.shape[0], beam_width
    if pointer is not None:
        pointer = tuple(x.repeat_interleave(w, 0) for x in pointer)
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
    rem, on, table = budget_tensor(tok, atom_budgets or [None] * b)
    rem, on, table = (rem.to(dev).repeat_interleave(w, 0), on.to(dev).repeat_interleave(w, 0),
                      table.to(dev))
    for step in range(max_len - 1):
        logp = model.logits(last, mem_kv, keep, caches, start=step, pointer=pointer)[:, -1].float()
        logp = torch.log_softmax(logp, -1)
        logp[:, tok.pad] = -math.inf
        logp[:, tok.bos] = -math.inf
        logp[:, tok.unk] = -math.inf  # a token the vocabulary lacks: never a generated one
        if bool(on.any()):  # formula: no token beyond the atoms left, <eos> only when none are
            over = (table.unsqueeze(0) > rem.unsqueeze(1)).any(-1)  # (B*W, V)
            over[:, tok.eos] = rem.sum(-1) > 0
            logp = logp.masked_fill(over & on.unsqueeze(1), -math.inf)
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
        rem, on = rem[src] - table[nxt], on[src]
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
