"""Decoding PepTRM's per-position distributions into peptides.

- greedy: the most probable token at every position, up to the first end token;
- beam: the most probable sequences (mean log-probability, end token included) whose mass
  matches the precursor within ``ppm`` (isotope errors 0..``isotopes`` allowed); beams heavier
  than the precursor are pruned as they grow. When no beam matches, the greedy sequence is
  returned with its confidence lowered by 1 (Casanovo's convention for mass-mismatched peptides).

Tokens that may only open a sequence (N-terminal modifications, pyro-Glu and
pyro-carbamidomethyl residues: :attr:`Vocab.first_only_ids`) are ruled out after it.

With PepTRM's ion evidence (``evidence``), a position's distribution depends on the residue
mass of the tokens before it, so both decoders go left to right and re-score every partial
sequence with its own prefix.

Confidence: exp(mean log-probability) of the chosen tokens (end token included), in (0, 1];
per token (``aa_scores``, Casanovo's per-residue scores): the probability the decoder gave it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np

from msid.peptides.physics import ISOTOPE, WATER, Vocab


@dataclass
class Decoded:
    tokens: list[str]
    score: float
    mass_ok: bool
    aa_scores: list[float] = field(default_factory=list)  # per token, in (0, 1]; [] when the
    #                                                       decoder gives none (the DP)
    #: the next-best mass-matching sequences, best first (beam search with ``top_n`` > 1)
    alternatives: list[Decoded] = field(default_factory=list)


def mass_ok(residue_sum: float, precursor_mass: float, ppm: float, isotopes: int) -> bool:
    m = residue_sum + WATER
    return any(abs(m - (precursor_mass - k * ISOTOPE)) <= ppm * 1e-6 * precursor_mass
               for k in range(isotopes + 1))


def _valid_positions(ids: list[int], vocab: Vocab) -> bool:
    """Tokens that only open a sequence do (:attr:`Vocab.first_only_ids`), and a residue
    follows an N-terminal modification."""
    first, nterm = set(vocab.first_only_ids), set(vocab.nterm_ids)
    return all(i not in first for i in ids[1:]) and bool([i for i in ids if i not in nterm])


def _after_first(row: np.ndarray, first_only: list[int]) -> np.ndarray:
    """``row`` with the tokens that may only open a sequence ruled out."""
    row = row.copy()
    row[first_only] = -np.inf
    return row


Evidence = Callable[[np.ndarray], np.ndarray]
"""``prefix masses (n,) -> (n, V)`` logit terms for n partial sequences of one spectrum."""
ManyEvidence = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(spectrum indices (n,), prefix masses (n,)) -> (n, V)``: the same for many spectra."""
# A search yields (prefix masses) whenever it needs evidence terms and is sent them (or None).
Search = Generator[np.ndarray, "np.ndarray | None", Decoded]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _rows(scores: np.ndarray, k: int, n: int, ev: np.ndarray | None) -> np.ndarray:
    """Log-probabilities at position ``k`` for ``n`` partial sequences: ``scores`` as given
    (log-probabilities) without evidence terms ``ev``, else softmax(logits + ev)."""
    if ev is None:
        return np.broadcast_to(scores[k], (n, scores.shape[1]))
    return log_softmax(scores[k][None, :] + ev)


def _greedy_search(scores: np.ndarray, vocab: Vocab, precursor_mass: float, ppm: float,
                   isotopes: int, with_evidence: bool) -> Search:
    nterm, first_only = set(vocab.nterm_ids), vocab.first_only_ids
    masses = vocab.masses
    chosen: list[int] = []
    lp: list[float] = []
    m = 0.0
    for k in range(scores.shape[0]):
        ev = (yield np.array([m])) if with_evidence else None
        row = _rows(scores, k, 1, ev)[0]
        if chosen:
            row = _after_first(row, first_only)
        i = int(row.argmax())
        if i == 0:
            lp.append(float(row[0]))
            break
        chosen.append(i)
        lp.append(float(row[i]))
        m += float(masses[i])
    if chosen and all(c in nterm for c in chosen):
        chosen = []
    tokens = vocab.decode(chosen)
    ok = bool(tokens) and mass_ok(float(masses[chosen].sum()), precursor_mass, ppm, isotopes)
    score = float(np.exp(np.mean(lp))) if lp else 0.0
    aa = [float(np.exp(x)) for x in lp[:len(chosen)]]
    return Decoded(tokens, score if ok else score - 1.0, ok, aa)


def _beam_search(scores: np.ndarray, vocab: Vocab, precursor_mass: float, beam_size: int,
                 per_position: int, ppm: float, isotopes: int, with_evidence: bool,
                 top_n: int = 1) -> Search:
    masses = vocab.masses
    target = precursor_mass - WATER
    tol = ppm * 1e-6 * precursor_mass + isotopes * ISOTOPE
    first_only = vocab.first_only_ids
    # (sum logp, ids, mass, logp per id)
    beams: list[tuple[float, list[int], float, list[float]]] = [(0.0, [], 0.0, [])]
    finished: list[tuple[float, list[int], list[float]]] = []
    for pos in range(scores.shape[0]):
        ev = (yield np.array([b[2] for b in beams])) if with_evidence else None
        rows = _rows(scores, pos, len(beams), ev)
        nxt = []
        for (slp, ids, m, lps), row in zip(beams, rows, strict=True):
            if ids:
                row = _after_first(row, first_only)
            for c in np.argsort(-row)[:per_position]:
                c = int(c)
                lp = slp + float(row[c])
                if c == 0:
                    if ids and mass_ok(m, precursor_mass, ppm, isotopes) \
                            and _valid_positions(ids, vocab):
                        finished.append((lp / (len(ids) + 1), ids, lps))
                    continue
                m2 = m + float(masses[c])
                if m2 > target + tol:
                    continue
                nxt.append((lp, [*ids, c], m2, [*lps, float(row[c])]))
        nxt.sort(key=lambda b: -b[0])
        beams = nxt[:beam_size]
        if not beams:
            break
    for slp, ids, m, lps in beams:  # sequences filling every position
        if mass_ok(m, precursor_mass, ppm, isotopes) and _valid_positions(ids, vocab):
            finished.append((slp / len(ids), ids, lps))
    if not finished:
        return (yield from _greedy_search(scores, vocab, precursor_mass, ppm, isotopes,
                                          with_evidence))
    finished.sort(key=lambda f: -f[0])
    ranked, seen = [], set()
    for f in finished:  # one row per distinct sequence, best first
        if tuple(f[1]) not in seen:
            seen.add(tuple(f[1]))
            ranked.append(Decoded(vocab.decode(f[1]), float(np.exp(f[0])), True,
                                  [float(np.exp(x)) for x in f[2]]))
        if len(ranked) == top_n:
            break
    ranked[0].alternatives = ranked[1:]
    return ranked[0]


def _run(search: Search, evidence: Evidence | None) -> Decoded:
    try:
        prefix = next(search)
        while True:
            prefix = search.send(evidence(prefix) if evidence is not None else None)
    except StopIteration as done:
        return done.value


def greedy(scores: np.ndarray, vocab: Vocab, precursor_mass: float, ppm: float = 50.0,
           isotopes: int = 1, evidence: Evidence | None = None) -> Decoded:
    """``scores``: (max_len, V) log-probabilities, or logits when ``evidence`` is given (then
    each position's token is chosen given the residue mass of the tokens chosen before it)."""
    return _run(_greedy_search(scores, vocab, precursor_mass, ppm, isotopes,
                               evidence is not None), evidence)


def beam(scores: np.ndarray, vocab: Vocab, precursor_mass: float, beam_size: int = 10,
         per_position: int = 5, ppm: float = 50.0, isotopes: int = 1,
         evidence: Evidence | None = None, top_n: int = 1) -> Decoded:
    """``scores`` as for :func:`greedy`; each beam's candidates are the ``per_position`` most
    probable tokens of its own distribution. ``top_n`` > 1 keeps the next-best distinct
    mass-matching sequences in ``alternatives``."""
    return _run(_beam_search(scores, vocab, precursor_mass, beam_size, per_position, ppm,
                             isotopes, evidence is not None, top_n), evidence)


def decode_many(scores: Sequence[np.ndarray], vocab: Vocab, precursor_masses: Sequence[float],
                decoding: str = "beam", beam_size: int = 10, per_position: int = 5,
                ppm: float = 50.0, isotopes: int = 1,
                evidence: ManyEvidence | None = None, top_n: int = 1) -> list[Decoded]:
    """:func:`beam` or :func:`greedy` over many spectra in lockstep: the partial sequences of
    every spectrum get their evidence terms from one ``evidence`` call per step."""
    if decoding not in ("beam", "greedy"):
        raise ValueError(f"decoding must be beam or greedy, not '{decoding}'")
    with_ev = evidence is not None
    searches = [_beam_search(sc, vocab, pm, beam_size, per_position, ppm, isotopes, with_ev,
                             top_n)
                if decoding == "beam" else _greedy_search(sc, vocab, pm, ppm, isotopes, with_ev)
                for sc, pm in zip(scores, precursor_masses, strict=True)]
    out: list[Decoded | None] = [None] * len(searches)
    pending: dict[int, np.ndarray] = {}

    def advance(i: int, sent: np.ndarray | None, first: bool = False) -> None:
        try:
            pending[i] = next(searches[i]) if first else searches[i].send(sent)
        except StopIteration as done:
            pending.pop(i, None)
            out[i] = done.value

    for i in range(len(searches)):
        advance(i, None, first=True)
    while pending:  # (searches without evidence never wait: they are done already)
        assert evidence is not None
        order = list(pending)
        prefixes = [pending[i] for i in order]
        idx = np.repeat(order, [len(p) for p in prefixes])
        ev = evidence(idx, np.concatenate(prefixes))
        start = 0
        for i, p in zip(order, prefixes, strict=True):
            advance(i, ev[start:start + len(p)])
            start += len(p)
    assert all(d is not None for d in out)
    return out  # type: ignore[return-value]
