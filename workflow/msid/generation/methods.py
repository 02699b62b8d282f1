"""The ``denovo`` and ``glmr`` identification methods (registered in :mod:`msid.methods`).

``denovo`` proposes its own molecules (no candidates): beam search, top-k distinct valid
canonical molecules, filtered by the precursor (formula when the query carries one, else
neutral mass within the precursor tolerance). With ``use_formula`` on (default), a query's
formula also constrains decoding to its heavy atoms (:mod:`msid.generation.beam`); a query
whose constrained beams hold no valid molecule is decoded again without the constraint. With
``fallback`` on (default), a query whose beams all miss the precursor gets its unfiltered
molecules, each flagged in ``note``. The beams are then re-ranked by a retrieval model that
reads the spectrum (``rescore_with``, default the shipped Ranker: beam score + ``rescore_weight``
x its cosine), as MSNovelist ranks its generated structures by fingerprint fit.

``glmr`` ranks given candidates: stage 1 the shipped Ranker's top-K; stage 2 the GLMR decoder
generates molecules from the spectrum fused with those K candidates; stage 3 each of the K
candidates scores Ranker cosine + ``weight`` x its best Tanimoto (Morgan) to a generated
molecule. Candidates beyond the top K follow in the Ranker's order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from msid.chem.adducts import mass_da, mass_ppm, neutral_mass
from msid.chem.fingerprints import tanimoto_many
from msid.chem.structures import Structure
from msid.generation.beam import Generated, beam_search, distinct_valid, heavy_atoms
from msid.generation.data import candidate_tokens, encode_candidates
from msid.generation.modelio import default_path, load_generator
from msid.methods import MethodResources, Query, register
from msid.rankings import RankedCandidate
from msid.spectra_dataset import collate_spectra, spectrum_item

PROTON = 1.007276
# de novo defaults, chosen on 200 val-fold spectra with the shipped tiny model (mean top-1
# Tanimoto; resources/models/README.md): beam 10 0.157, beam 30 0.193, beam 50 0.208; beam 50
# re-ranked by the Ranker's cosine x 5 0.225 (x 10: 0.222; x 2: 0.205 and x 100: 0.212 at
# beam 30; the FP FFN's x 10: 0.208 at beam 30); beam 100 x 5 0.248 (~0.5 s per query)
BEAM_WIDTH = 100
RESCORE_WITH = "ranker"
RESCORE_WEIGHT = 5.0
FILTER_MISS = "no generated molecule within the precursor tolerance: unfiltered"


def query_mass(q: Query) -> float:
    """Neutral mass of the query's precursor (ion mode's default adduct; NaN if unknown)."""
    m = neutral_mass(q.precursor_mz, q.adduct, q.ion_mode, q.charge)
    if not math.isfinite(m) and q.precursor_mz and math.isfinite(q.precursor_mz):
        m = q.precursor_mz + (PROTON if q.ion_mode == "negative" else -PROTON)
    return m


def problem(q: Query) -> str:
    """Why a query cannot be generated for ('' when it can)."""
    if not q.precursor_mz or not math.isfinite(q.precursor_mz) or q.precursor_mz <= 0:
        return "no precursor m/z"
    if len(q.mz) == 0:
        return "no peaks"
    return ""


def spectrum_batch(model, queries: Sequence[Query]) -> dict:
    items = [spectrum_item(q.mz, q.intensity, q.precursor_mz, model.cfg.max_peaks, q.adduct)
             for q in queries]
    batch = collate_spectra(items)
    batch["mass"] = torch.tensor([query_mass(q) for q in queries], dtype=torch.float64)
    return batch


class DeNovo:
    name = "denovo"
    needs_candidates = False
    needs_library = False

    def __init__(self, model, tok, card: dict, *, beam_width: int = 10, top_k: int = 10,
                 filter_precursor: bool = True, fallback: bool = True, tol_da: float = 0.01,
                 tol_ppm: float = 10.0, batch_size: int = 16, use_formula: bool = True,
                 rescorer=None, rescore_weight: float = 0.0) -> None:
        self.model, self.tok, self.card = model.eval(), tok, card
        self.beam_width = max(beam_width, top_k)
        self.top_k = top_k
        self.filter, self.fallback = filter_precursor, fallback
        self.tol_da, self.tol_ppm = tol_da, tol_ppm
        self.batch_size = batch_size
        self.use_formula = use_formula
        self.rescorer, self.rescore_weight = rescorer, float(rescore_weight)
        self.stats = {"queries": 0, "filter_miss": 0, "no_valid": 0, "formula_constrained": 0,
                      "formula_unfinished": 0}

    def why_empty(self, query: Query, candidates) -> str:
        if self.filter and not self.fallback:
            return problem(query) or "no valid generated molecule within the precursor tolerance"
        return problem(query) or "no valid molecule generated"

    def generate(self, queries: Sequence[Query]) -> list[list[Generated]]:
        out: list[list[Generated]] = [[] for _ in queries]
        ok = [i for i, q in enumerate(queries) if not problem(q)]
        for a in range(0, len(ok), self.batch_size):
            idx = ok[a:a + self.batch_size]
            qs = [queries[i] for i in idx]
            budgets = [heavy_atoms(q.formula) if self.use_formula else None for q in qs]
            self.stats["formula_constrained"] += sum(x is not None for x in budgets)
            beams = beam_search(self.model, self.tok, spectrum_batch(self.model, qs),
                                self.beam_width, atom_budgets=budgets)
            # a formula the decoder could not complete into a valid molecule: decode freely
            redo = [j for j, (bud, b) in enumerate(zip(budgets, beams, strict=True))
                    if bud is not None and not distinct_valid(b, 1, filter_precursor=False)[0]]
            if redo:
                again = beam_search(self.model, self.tok,
                                    spectrum_batch(self.model, [qs[j] for j in redo]),
                                    self.beam_width)
                for j, b in zip(redo, again, strict=True):
                    beams[j] = b
                self.stats["formula_unfinished"] += len(redo)
            kept = []
            for q, b in zip(qs, beams, strict=True):
                self.stats["queries"] += 1
                mass = query_mass(q)
                formula = q.formula if self.use_formula else ""
                ion = (q.precursor_mz, q.adduct, q.ion_mode, q.charge)
                mols, _ = distinct_valid(  # tolerances on the precursor m/z, as everywhere
                    b, self.beam_width, mass=mass, formula=formula,
                    tol_da=mass_da(self.tol_da, *ion), tol_ppm=mass_ppm(self.tol_ppm, *ion),
                    filter_precursor=self.filter)
                if not mols and self.filter and self.fallback:
                    mols, _ = distinct_valid(b, self.beam_width, filter_precursor=False)
                    mols = [Generated(m.structure, m.score - 1e3) for m in mols]  # flagged
                    self.stats["filter_miss"] += 1
                if not mols:
                    self.stats["no_valid"] += 1
                kept.append(mols)
            for i, mols in zip(idx, self._rescored(qs, kept), strict=True):
                out[i] = mols[:self.top_k]
        return out

    def _rescored(self, qs: Sequence[Query], mols: list[list[Generated]]
                  ) -> list[list[Generated]]:
        """Each query's molecules re-ranked by a retrieval model reading the spectrum
        (MSNovelist's idea): score = beam score + weight x the model's spectrum-molecule
        cosine. One batched call for the queries' spectra."""
        if self.rescorer is None or self.rescore_weight == 0:
            return mols
        ranked = self.rescorer.rank_many(list(qs), [[m.structure for m in ms] for ms in mols])
        out = []
        for ms, rs in zip(mols, ranked, strict=True):
            cos = {r.inchikey: r.score for r in rs}
            ms = [Generated(m.structure, m.score + self.rescore_weight
                            * cos.get(m.structure.inchikey, 0.0)) for m in ms]
            out.append(sorted(ms, key=lambda m: -m.score))
        return out

    def rank_many(self, queries: Sequence[Query], candidates) -> list[list[RankedCandidate]]:
        res = []
        for mols in self.generate(queries):
            res.append([RankedCandidate(m.structure.smiles_flat, m.structure.inchikey,
                                        float(math.exp(m.score)) if m.score > -100 else 0.0,
                                        note=FILTER_MISS if m.score <= -100 else "")
                        for m in mols])
        return res

    def rank(self, query: Query, candidates) -> list[RankedCandidate]:
        return self.rank_many([query], [candidates])[0]


class GLMR:
    name = "glmr"
    needs_candidates = True
    needs_library = False

    def __init__(self, model, tok, card: dict, ranker, *, k: int | None = None,
                 beam_width: int | None = None, weight: float | None = None,
                 similarity: str | None = None, batch_size: int = 16) -> None:
        g = card.get("glmr", {})
        self.model, self.tok, self.card, self.ranker = model.eval(), tok, card, ranker
        self.k = int(k if k is not None else g.get("k", 40))
        self.beam_width = int(beam_width if beam_width is not None else g.get("beam_width", 5))
        self.weight = float(weight if weight is not None else g.get("weight", 0.1))
        self.similarity = str(similarity or g.get("similarity", "tanimoto"))
        if self.similarity not in ("tanimoto", "likelihood"):
            raise ValueError("glmr similarity must be 'tanimoto' or 'likelihood'")
        self.batch_size = batch_size
        self.seconds = 0.0
        self.last_similarity: dict[str, np.ndarray] = {}  # query id -> top-K similarities
        #: query id -> InChIKeys of the top-K candidates a generated molecule is (same
        #: InChIKey first block): how often stage 2 picks among the candidates at all. Tanimoto
        #: similarity only (the likelihood mode generates nothing)
        self.last_copied: dict[str, list[str]] = {}

    def why_empty(self, query: Query, candidates) -> str:
        return "no candidates" if not candidates else (problem(query) or "no answer")

    @torch.inference_mode()
    def _likelihoods(self, batch: dict, tops: list[list[RankedCandidate]]) -> list[np.ndarray]:
        """Per query: each top-K candidate's per-token likelihood (geometric mean of token
        probabilities) under the decoder conditioned on the spectrum and the K candidates."""
        mem, keep = self.model.memory(batch)
        pointer = self.model.pointer(batch, mem)
        out = []
        for j, top in enumerate(tops):
            ids = [self.tok.encode(c.smiles) for c in top]
            ok = [n for n, x in enumerate(ids) if x is not None]
            sim = np.zeros(len(top))
            if ok:
                seqs = [torch.tensor(ids[n]) for n in ok]
                tokens = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
                m = mem[j:j + 1].expand(len(ok), -1, -1)
                kp = keep[j:j + 1].expand(len(ok), -1)
                ptr = None if pointer is None else tuple(
                    x[j:j + 1].expand(len(ok), *x.shape[1:]) for x in pointer)
                logits = self.model.logits(tokens[:, :-1], self.model.memory_kv(m), kp,
                                           pointer=ptr).float()
                logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None])[..., 0]
                real = (tokens[:, 1:] != 0).float()
                mean = (logp * real).sum(1) / real.sum(1).clamp_min(1)
                sim[ok] = mean.exp().numpy()
            out.append(sim)
        return out

    def rank_many(self, queries: Sequence[Query], candidates: Sequence[list[Structure] | None]
                  ) -> list[list[RankedCandidate]]:
        t0 = time.perf_counter()
        stage1 = self.ranker.rank_many(list(queries), list(candidates))
        out: list[list[RankedCandidate]] = [list(r) for r in stage1]
        todo = [i for i, (q, r) in enumerate(zip(queries, stage1, strict=True))
                if r and not problem(q)]
        for a in range(0, len(todo), self.batch_size):
            idx = todo[a:a + self.batch_size]
            qs = [queries[i] for i in idx]
            tops = [stage1[i][:self.k] for i in idx]
            batch = spectrum_batch(self.model, qs)
            if self.model.cfg.fusion == "copy":  # the candidates' tokens, to copy from
                batch["cand_tokens"], batch["cand_slots"] = candidate_tokens(
                    [encode_candidates(self.tok, [c.smiles for c in t]) for t in tops])
            else:
                k = max(len(t) for t in tops)
                enc = np.zeros((len(idx), k, self.model.cfg.cand_dim), np.float32)
                mask = np.zeros((len(idx), k), bool)
                for j, t in enumerate(tops):
                    enc[j, :len(t)] = self.ranker.embed_molecules([c.smiles for c in t])
                    mask[j, :len(t)] = True
                batch["cand_enc"] = torch.from_numpy(enc)
                batch["cand_mask"] = torch.from_numpy(mask)
            if self.similarity == "likelihood":
                sims = self._likelihoods(batch, tops)
            else:
                beams = beam_search(self.model, self.tok, batch, self.beam_width)
                sims = []
                for i, top, b in zip(idx, tops, beams, strict=True):
                    gen, _ = distinct_valid(b, self.beam_width, filter_precursor=False)
                    cands = [c.smiles for c in top]
                    sim = np.zeros(len(top))
                    for g in gen:
                        sim = np.maximum(sim, tanimoto_many(g.structure.smiles_flat, cands))
                    sims.append(sim)
                    made = {g.structure.inchikey14 for g in gen}
                    self.last_copied[queries[i].query_id] = [
                        c.inchikey for c in top if c.inchikey[:14] in made]
            for i, top, sim in zip(idx, tops, sims, strict=True):
                self.last_similarity[queries[i].query_id] = sim
                scores = np.array([c.score for c in top]) + self.weight * sim
                order = np.argsort(-scores, kind="stable")
                head = [RankedCandidate(top[o].smiles, top[o].inchikey, float(scores[o]))
                        for o in order]
                floor = float(scores.min()) if len(scores) else 0.0
                tail = [RankedCandidate(c.smiles, c.inchikey, floor - 1.0 - (1.0 - c.score))
                        for c in stage1[i][self.k:]]
                out[i] = head + tail
        self.seconds += time.perf_counter() - t0
        return out

    def rank(self, query: Query, candidates) -> list[RankedCandidate]:
        return self.rank_many([query], [candidates])[0]


def _flag(opts: dict, key: str, default: bool) -> bool:
    """A yes/no option as YAML writes it (true/false); a string such as "false" is an error,
    not a truthy value."""
    value = opts.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"denovo option {key} must be true or false, not {value!r}")
    return value


def _threads(opts: dict) -> None:
    if int(opts.get("num_threads", 0)) > 0:
        torch.set_num_threads(int(opts["num_threads"]))


@register("denovo")
def _denovo(res: MethodResources) -> DeNovo:
    from msid.models.methods import FAMILY_METHODS, ModelRanking, default_model_path

    opts = res.options or {}
    _threads(opts)
    model, tok, card = load_generator(res.model_path or default_path("denovo"), "denovo")
    rescorer = None
    name = str(opts.get("rescore_with", RESCORE_WITH) or "")
    weight = float(opts.get("rescore_weight", RESCORE_WEIGHT))
    if name and weight:
        if name not in FAMILY_METHODS:
            raise ValueError(f"denovo rescore_with must be one of {FAMILY_METHODS}, not '{name}'")
        rescorer = ModelRanking.from_file(name, opts.get("rescore_model")
                                          or default_model_path(name))
    return DeNovo(model, tok, card, beam_width=int(opts.get("beam_width", BEAM_WIDTH)),
                  top_k=int(opts.get("top_k", 10)),
                  filter_precursor=_flag(opts, "filter", True),
                  fallback=_flag(opts, "fallback", True),
                  tol_da=float(opts.get("tol_da", 0.01)), tol_ppm=float(opts.get("tol_ppm", 10.0)),
                  use_formula=_flag(opts, "use_formula", True), rescorer=rescorer,
                  rescore_weight=weight)


@register("glmr")
def _glmr(res: MethodResources) -> GLMR:
    from msid.models.methods import ModelRanking, default_model_path

    opts = res.options or {}
    _threads(opts)
    model, tok, card = load_generator(res.model_path or default_path("glmr"), "glmr")
    ranker = ModelRanking.from_file("ranker", opts.get("ranker_model")
                                    or default_model_path("ranker"))
    return GLMR(model, tok, card, ranker, k=opts.get("k"), beam_width=opts.get("beam_width"),
                weight=opts.get("weight"), similarity=opts.get("similarity"))
