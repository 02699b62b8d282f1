"""Training entry point for every family: :func:`train_model` (what ``msid train`` calls).

Builds the training dataset from a store, the validation candidate sets (mass window, true
molecule included, like the benchmark), the ranker's hard negatives (same-mass molecules from
the candidate index), runs :class:`msid.train.Trainer` and writes the model file + card.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msid.chem.structures import Structure, parse_structure
from msid.digest import files_digest
from msid.metrics import expected_hit
from msid.models.config import RunConfig
from msid.models.features import FeatureBank, MolFeaturizer
from msid.models.retrieval import RetrievalModel, build_model, fingerprint_f1
from msid.spectra_dataset import SpectraDataset, collate_spectra, spectrum_item


def featurizers(cfg) -> tuple[MolFeaturizer, MolFeaturizer]:
    """(target bits featurizer, molecule-input featurizer) for a ModelConfig."""
    bits = MolFeaturizer(cfg.fp_bits, cfg.fp_radius, "bits")
    kind = cfg.mol_fp if cfg.family == "ranker" else "bits"
    return bits, (bits if kind == "bits" else MolFeaturizer(cfg.fp_bits, cfg.fp_radius, kind))


# -- validation ---------------------------------------------------------------------------------
@dataclass
class CandidateQueries:
    """Queries (spectrum items) with candidate lists and the index of the true one (-1: absent)."""

    items: list[dict]
    candidates: list[list[str]]  # flat SMILES
    true_index: list[int]
    true_smiles: list[str]
    query_ids: list[str]


def candidate_queries(store: str | os.PathLike, candidates: dict[str, list[Structure]],
                      max_peaks: int, rows: Sequence[int] | None = None) -> CandidateQueries:
    """Spectra of ``store`` whose id has a candidate list (``candidates`` as produced by
    :func:`msid.candidate_sets.candidates_for_queries`)."""
    from msid.store import SpectrumStore

    out = CandidateQueries([], [], [], [], [])
    with SpectrumStore(store) as st:
        md = st.metadata
        rows = range(len(st)) if rows is None else rows
        for r in rows:
            qid = str(md["id"].iat[r])
            if qid not in candidates:
                continue
            mz, inten = st.peaks(int(r))
            out.items.append(spectrum_item(mz, inten, float(md["precursor_mz"].iat[r]),
                                           max_peaks, str(md["adduct"].iat[r])))
            cands = candidates[qid]
            true = parse_structure(str(md["smiles"].iat[r]))
            ik = true.inchikey14 if true else ""
            out.candidates.append([c.smiles_flat for c in cands])
            out.true_index.append(next((i for i, c in enumerate(cands) if c.inchikey14 == ik),
                                       -1))
            out.true_smiles.append(true.smiles_flat if true else "")
            out.query_ids.append(qid)
    return out


def build_val_candidates(store: str | os.PathLike, index_path: str | os.PathLike, *,
                         adducts: Sequence[str], max_queries: int, max_candidates: int = 256,
                         ppm: float = 10.0, seed: int = 0, max_peaks: int = 64,
                         min_candidates: int = 1) -> CandidateQueries:
    """Validation queries of ``store`` with mass candidate sets (true included); queries with
    fewer than ``min_candidates`` candidates are left out."""
    from msid.benchmark import BenchmarkConfig, select_queries
    from msid.candidate_sets import candidates_for_queries
    from msid.chem.candidates import CandidateIndex
    from msid.store import SpectrumStore

    with SpectrumStore(store) as st:
        rows = select_queries(st, BenchmarkConfig(adducts=list(adducts), max_queries=max_queries,
                                                  seed=seed))
        cands = candidates_for_queries(st, rows, index=CandidateIndex(index_path), kind="mass",
                                       ppm=ppm, max_n=max_candidates, include_true=True,
                                       seed=seed)
    cands = {q: c for q, c in cands.items() if len(c) >= min_candidates}
    return candidate_queries(store, cands, max_peaks, rows)


def spectrum_blind(queries: CandidateQueries, seed: int = 0) -> CandidateQueries:
    """Control: the same queries and candidates, each query given the peaks of a query of
    another structure (precursor and adduct kept), as the benchmark's spectrum-blind control.
    A model that reads the spectrum scores clearly lower here."""
    from msid.benchmark import blind_donors

    donor = blind_donors(np.array(queries.true_smiles, dtype=object), seed)
    items = [{**it, "mz": queries.items[d]["mz"], "intensity": queries.items[d]["intensity"]}
             for it, d in zip(queries.items, donor, strict=True)]
    return CandidateQueries(items, queries.candidates, queries.true_index, queries.true_smiles,
                            queries.query_ids)


class RetrievalValidator:
    """Hit@k of a model on prepared candidate queries (and fingerprint F1 for predictors)."""

    def __init__(self, queries: CandidateQueries, featurizer: MolFeaturizer,
                 target_bits: MolFeaturizer | None = None, batch_size: int = 256,
                 ks: Sequence[int] = (1, 5, 20)) -> None:
        self.q = queries
        self.ks = tuple(ks)
        self.batch_size = batch_size
        uniq: dict[str, int] = {}
        self.cand_rows = []
        for lst in queries.candidates:
            self.cand_rows.append(np.array([uniq.setdefault(s, len(uniq)) for s in lst],
                                           dtype=np.int64))
        self.bank = FeatureBank(list(uniq), featurizer)
        self.true_fp = (target_bits(queries.true_smiles) if target_bits is not None else None)

    def __len__(self) -> int:
        return len(self.q.items)

    @torch.no_grad()
    def encode_candidates(self, model: RetrievalModel, device: torch.device) -> torch.Tensor:
        outs = []
        for a in range(0, len(self.bank), 4096):
            feats = torch.from_numpy(self.bank.dense(np.arange(a, min(a + 4096,
                                                                      len(self.bank)))))
            outs.append(model.encode_molecules(feats.to(device)).float())
        return torch.cat(outs) if outs else torch.zeros(0, 1, device=device)

    @torch.no_grad()
    def __call__(self, model: RetrievalModel) -> dict:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        mol = self.encode_candidates(model, device)
        hits = {k: 0.0 for k in self.ks}
        f1s, n = [], 0
        for a in range(0, len(self), self.batch_size):
            items = self.q.items[a:a + self.batch_size]
            batch = {k: (v.to(device) if device.type != "mps" or v.dtype != torch.float64
                         else v.float().to(device))
                     for k, v in collate_spectra(items).items()}
            spec = model.encode_spectra(batch).float()
            if self.true_fp is not None and hasattr(model, "logits"):
                probs = torch.sigmoid(model.logits(batch).float())
                tgt = torch.from_numpy(self.true_fp[a:a + len(items)]).to(device)
                f1s.append(float(fingerprint_f1(probs, tgt)) * len(items))
            for j in range(len(items)):
                qi = a + j
                t = self.q.true_index[qi]
                n += 1
                if t < 0:
                    continue
                scores = mol[torch.from_numpy(self.cand_rows[qi]).to(device)] @ spec[j]
                # ties with the truth count at their expected value, never by list order
                s = scores[t]
                above = int((scores > s).sum())
                tied = int((scores == s).sum()) - 1
                for k in self.ks:
                    hits[k] += float(expected_hit(above, tied, k))
        if was_training:
            model.train()
        out = {f"hit@{k}": hits[k] / max(n, 1) for k in self.ks}
        if f1s:
            out["fp_f1"] = sum(f1s) / max(n, 1)
        return out


# -- ranker hard negatives ----------------------------------------------------------------------
class HardNegatives:
    """Per training structure: up to ``pool`` molecules close in mass, the negatives that
    matter when every candidate has the true molecule's mass.

    ``source="index"``: molecules of the same mass (``ppm``) from the candidate index.
    ``source="train"``: the other training structures nearest in mass. These come from the
    same distribution as the positives, so the model cannot learn "decoy-like molecules score
    low" (a prior that ranks without reading the spectrum). ``"both"``: half and half.
    ``allowed(inchikey14)``: which index molecules may be negatives (the train fold's: a
    val/test structure never enters training, not even as a negative).
    """

    def __init__(self, structures: Sequence[str], index_path: str | os.PathLike | None,
                 featurizer: MolFeaturizer, pool: int = 32, ppm: float = 10.0,
                 log: Callable = print, source: str = "index",
                 allowed: Callable[[str], bool] | None = None) -> None:
        t0 = time.perf_counter()
        ik_to_struct = {}
        parsed = [parse_structure(s) for s in structures]
        for i, st in enumerate(parsed):
            if st is not None:
                ik_to_struct.setdefault(st.inchikey14, i)
        mols: dict[str, int] = {}
        self.neg_struct: list[int] = []
        self.lists: list[np.ndarray] = []

        def add(smiles_flat: str, inchikey14: str) -> int:
            if smiles_flat not in mols:
                mols[smiles_flat] = len(mols)
                self.neg_struct.append(ik_to_struct.get(inchikey14, -1))
            return mols[smiles_flat]

        n_index = pool if source == "index" else (pool // 2 if source == "both" else 0)
        n_train = pool - n_index
        index = None
        if n_index:
            from msid.chem.candidates import CandidateIndex, candidate_set

            index = CandidateIndex(index_path)
        masses = np.array([st.exact_mass if st is not None else np.nan for st in parsed])
        order = np.argsort(masses, kind="stable")
        sorted_mass = masses[order]
        for st in parsed:
            rows = []
            if st is not None and index is not None:
                for max_n in (n_index + 1, 4 * n_index + 1):  # more when some are not allowed
                    got = candidate_set(index, mass=st.exact_mass, ppm=ppm, max_n=max_n,
                                        true=st)[1:]
                    found = [c for c in got if allowed is None or allowed(c.inchikey14)]
                    if len(found) >= n_index or len(got) < max_n - 1:  # enough, or all there
                        break
                rows += [add(c.smiles_flat, c.inchikey14) for c in found[:n_index]]
            if st is not None and n_train:
                pos = int(np.searchsorted(sorted_mass, st.exact_mass))
                lo, hi = max(pos - n_train - 1, 0), min(pos + n_train + 1, len(order))
                near = [j for j in order[lo:hi] if parsed[j] is not None
                        and parsed[j].inchikey14 != st.inchikey14]
                near.sort(key=lambda j: abs(masses[j] - st.exact_mass))
                rows += [add(parsed[j].smiles_flat, parsed[j].inchikey14)
                         for j in near[:n_train]]
            self.lists.append(np.array(rows, dtype=np.int64))
        self.bank = FeatureBank(list(mols), featurizer)
        self.neg_struct_arr = np.array(self.neg_struct, dtype=np.int64)
        sizes = np.array([len(x) for x in self.lists])
        log(f"[train] hard negatives: {len(mols):,} molecules for {len(structures):,} structures "
            f"(median {np.median(sizes) if len(sizes) else 0:.0f} per structure) in "
            f"{time.perf_counter() - t0:.1f} s")


class RankerBatches:
    """``prepare_batch`` for the ranker: positive molecule features + K hard negatives each."""

    def __init__(self, positives: FeatureBank, negatives: HardNegatives | None, k: int) -> None:
        self.pos, self.neg, self.k = positives, negatives, k

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        sid = batch["struct_idx"].numpy()
        b, k = len(sid), self.k
        batch["mol_pos"] = torch.from_numpy(self.pos.dense(sid))
        rows = np.zeros((b, k), np.int64)
        valid = np.zeros((b, k), bool)
        if self.neg is not None and k > 0:
            for i, s in enumerate(sid):
                lst = self.neg.lists[s]
                take = min(k, len(lst))
                if take:
                    rows[i, :take] = lst[rng.choice(len(lst), take, replace=False)]
                    valid[i, :take] = True
            feats = self.neg.bank.dense(rows.reshape(-1)) if len(self.neg.bank) else \
                np.zeros((b * k, self.pos.n_bits), np.float32)
            nstruct = np.where(valid, self.neg.neg_struct_arr[rows] if len(self.neg.bank)
                               else -1, -1)
        else:
            feats = np.zeros((b * k, self.pos.n_bits), np.float32)
            nstruct = np.full((b, k), -1)
        batch["mol_neg"] = torch.from_numpy(feats.reshape(b, k, self.pos.n_bits))
        batch["neg_valid"] = torch.from_numpy(valid)
        batch["neg_struct"] = torch.from_numpy(nstruct.astype(np.int64))
        return batch


# -- provenance: which structures a model trained on ---------------------------------------------
STRUCTURES_SUFFIX = ".train_structures.txt"


def structures_file(model_path: str | os.PathLike) -> Path:
    """The sidecar listing a model's training structures (InChIKey first blocks, sorted)."""
    return Path(model_path).with_suffix(STRUCTURES_SUFFIX)


def fold_settings(store: str | os.PathLike, max_depth: int = 8) -> dict:
    """The fold settings (salt, fractions) a store's fold column was assigned with, found by
    following its provenance back to the preprocessing step; ``{}`` where none is recorded."""
    from msid.store import SpectrumStore

    path: Path | None = Path(store)
    for _ in range(max_depth):
        if path is None or not path.exists():
            return {}
        with SpectrumStore(path) as st:
            prov = st.attrs.get("provenance") or {}
        folds = (prov.get("config") or {}).get("folds")
        if folds:
            return dict(folds)
        path = _provenance_input(path, prov.get("input") or "")
    return {}


def _provenance_input(store: Path, given: str) -> Path | None:
    """The file a store's provenance names as its input. A relative name is relative to the
    directory the workflow ran in, which need not be today's working directory: it is looked
    up there, then under each folder above the store. None where it is no store (the raw
    MGF/mzML a store was converted from holds no fold settings)."""
    if not given or not given.endswith(".h5"):
        return None
    p = Path(given)
    if p.is_absolute() or p.exists():
        return p
    for parent in store.resolve().parents:
        if (parent / p).exists():
            return parent / p
    return p


def training_keys(ds: SpectraDataset) -> list[str]:
    """Sorted InChIKey first blocks of a dataset's structures: those parsed from its SMILES and
    those its records carry (the fold key), so a disagreement between the two hides nothing."""
    from msid.store import SpectrumStore

    keys = set(ds.inchikey14)
    with SpectrumStore(ds.path) as st:
        recorded = st.metadata["inchikey"].astype(str).to_numpy()[ds.rows]
    keys |= {k[:14] for k in recorded if k}
    return sorted(keys)


def train_fold_spec(store: str | os.PathLike, log: Callable = print):
    """The :class:`~msid.folds.FoldSpec` a training store's folds were assigned with (from
    its provenance: the workflow's fold stores record it); None, said in the log, for a store
    that records none (a user's own training set: every structure in it may train)."""
    from msid.folds import FoldSpec

    folds = fold_settings(store)
    if not folds:
        log(f"[train] {store}: no fold settings in its provenance: every structure in it "
            "trains, and candidates are not checked against val/test folds")
        return None
    return FoldSpec(**folds)


def train_fold_filter(store: str | os.PathLike, log: Callable = print
                      ) -> Callable[[str], bool] | None:
    """``inchikey14 -> in the train fold`` under the store's fold settings (None: none
    recorded), for the molecules training draws besides its spectra (negatives, candidates)."""
    from msid.folds import fold_of

    spec = train_fold_spec(store, log)
    return None if spec is None else (lambda ik: fold_of(ik, spec) == "train")


def _train_fold_only(ds: SpectraDataset, store: str | os.PathLike, tcfg,
                     log: Callable) -> tuple[SpectraDataset, int]:
    """Drop training spectra whose normalised structure falls outside the train fold. Folds are
    assigned by each record's own InChIKey; a salt or other form whose normalised structure is
    a val/test structure (e.g. a sodium salt whose free acid is a test structure) would
    otherwise train on it."""
    from msid.folds import fold_of

    spec = train_fold_spec(store, log)
    if spec is None:
        return ds, 0
    bad = {i for i, k in enumerate(ds.inchikey14) if fold_of(k, spec) != "train"}
    keep = np.array([int(s) not in bad for s in ds.struct_of_item], dtype=bool)
    if keep.all():
        return ds, 0
    log(f"[train] {int((~keep).sum())} spectra of {len(bad)} structures outside the train fold "
        "(their normalised structure is a val/test structure) left out")
    return SpectraDataset(ds.path, max_peaks=ds.max_peaks, rows=ds.rows[keep],
                          fingerprints=ds.fingerprints, in_memory=ds._flat is not None,
                          seed=tcfg.seed), int((~keep).sum())


def structures_provenance(keys: Sequence[str], store: str | os.PathLike,
                          model_path: str | os.PathLike) -> dict:
    """What a model card records about its training structures: the fold salt and fractions,
    how many structures, a digest of their sorted InChIKey first blocks, and how many of them
    are outside the train fold under that salt (0 unless the folds leak). Writes the sidecar
    list beside the model (so a benchmark's queries can be checked against it)."""
    import hashlib

    from msid.atomic import write_text
    from msid.folds import FoldSpec, fold_of

    keys = sorted(set(keys))
    text = "\n".join(keys) + "\n"
    write_text(structures_file(model_path), text)
    folds = fold_settings(store)
    out = {"fold_salt": folds.get("salt", ""),
           "fold_fractions": {k: folds[k] for k in ("train", "val", "test") if k in folds},
           "n_structures": len(keys),
           "structures_sha256": hashlib.sha256(text.encode()).hexdigest(),
           "structures_file": structures_file(model_path).name}
    if folds:
        spec = FoldSpec(**folds)
        out["outside_train_fold"] = sum(fold_of(k, spec) != "train" for k in keys)
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _train_ensemble(family: str, members: list[dict], config: dict, train_store, val_store,
                    index_path, out_path: Path, *, workdir, val_queries, resume: bool,
                    stop_after_steps: int | None, log: Callable) -> dict:
    """Train each member (``config`` merged with its overrides) as a model of its own, then
    write one model file holding them all (:func:`write_ensemble`). Every member is validated
    (best step, early stopping) on the same queries, built from the ensemble's own train
    config."""
    workdir = Path(workdir) if workdir else out_path.with_suffix(".train")
    base = RunConfig.from_dict({**config, "family": family})
    if val_queries is None and val_store and base.train.val_max_queries:
        val_queries = build_val_candidates(val_store, index_path, adducts=base.train.adducts,
                                           max_queries=base.train.val_max_queries,
                                           max_candidates=base.train.val_max_candidates,
                                           seed=base.train.seed, max_peaks=base.model.max_peaks,
                                           min_candidates=base.train.val_min_candidates)
    # what every member is validated on, recorded in its run config (and so in the checks
    # that decide whether a checkpoint may be resumed)
    shared_val = {"train": {"val_max_queries": base.train.val_max_queries,
                            "val_max_candidates": base.train.val_max_candidates}}
    paths = []
    for i, over in enumerate(members):
        path = workdir / f"member-{i}.safetensors"
        log(f"[train] {family}: ensemble member {i + 1} of {len(members)}")
        m = train_model(family, train_store, val_store, index_path,
                        {**_merge(_merge(config, over), shared_val), "members": []}, path,
                        workdir=workdir / f"member-{i}", val_queries=val_queries,
                        resume=resume, stop_after_steps=stop_after_steps, log=log)
        if m.get("interrupted"):
            return m
        paths.append(path)
    return write_ensemble(family, paths, out_path, train_store=train_store,
                          val_queries=val_queries, log=log)


def write_ensemble(family: str, member_paths: Sequence[str | os.PathLike],
                   out_path: str | os.PathLike, *, train_store: str | os.PathLike,
                   val_queries: CandidateQueries | None = None,
                   log: Callable = print) -> dict:
    """One model file holding trained members of ``family`` (each a model file with its card,
    history and training-structures list beside it); the card keeps every member's config,
    training record and metrics, and the ensemble's own val metrics on ``val_queries``."""
    import json

    from msid.atomic import write_text
    from msid.modelfile import load_model, save_model
    from msid.models.config import ModelConfig
    from msid.models.retrieval import Ensemble

    out_path = Path(out_path)
    models, cards, histories = [], [], []
    for path in map(Path, member_paths):
        model, card = load_model(path)
        if card["family"] != family:
            raise ValueError(f"{path} is a {card['family']} model, not a {family}")
        models.append(model)
        cards.append(card)
        hist = path.with_suffix(".history.json")
        histories.append(json.loads(hist.read_text()) if hist.exists() else {})
    cfg = ModelConfig.from_dict({**cards[0]["config"], "family": family,
                                 "members": [c["config"] for c in cards]})
    ens = Ensemble(cfg)
    for slot, model in zip(ens.members, models, strict=True):
        slot.load_state_dict(model.state_dict())
    ens.eval()
    val = {}
    if val_queries is not None and val_queries.items:
        val = RetrievalValidator(val_queries, featurizers(cfg)[1])(ens)
    metrics = [c["metrics"] for c in cards]
    seconds = sum(m["train_seconds"] for m in metrics)
    spectra = sum(m["train_seconds"] * m["train_spectra_per_second"] for m in metrics)
    summary = {"val": val, "steps": sum(m["steps"] for m in metrics), "best_step": -1,
               "stopped_early": any(m["stopped_early"] for m in metrics),
               "train_seconds": seconds,
               "train_spectra_per_second": spectra / seconds if seconds else 0.0,
               "device": metrics[0]["device"], "members": metrics}
    keys: set[str] = set()
    for path in member_paths:
        keys |= set(structures_file(path).read_text().split())
    training = {"ensemble": f"{len(cards)} members trained apart; score = mean cosine",
                "members": [c["training"] for c in cards],
                "structures": structures_provenance(sorted(keys), train_store, out_path)}
    save_model(ens, out_path, family=family, config=cfg.to_dict(), training=training,
               metrics=summary)
    write_text(out_path.with_suffix(".history.json"),
               json.dumps({"title": f"{family} ensemble", "members": histories}, indent=1,
                          default=float) + "\n")
    log(f"[train] {family}: wrote {out_path} ({len(cards)} members; val {val})")
    return summary


# -- entry point --------------------------------------------------------------------------------
def train_model(family: str, train_store: str | os.PathLike, val_store: str | os.PathLike,
                index_path: str | os.PathLike, config: dict | None, out_path: str | os.PathLike,
                *, workdir: str | os.PathLike | None = None,
                val_queries: CandidateQueries | None = None, resume: bool = True,
                stop_after_steps: int | None = None, log: Callable = print) -> dict:
    """Train one model of ``family`` and write ``out_path`` (safetensors) + card + history.

    ``config``: ``{"size": "tiny"|"seed", "model": {...}, "train": {...}}`` overrides of the
    preset (see :class:`msid.models.config.RunConfig`). Checkpoints go to ``workdir`` (default
    ``<out_path without suffix>.train/``); a rerun resumes from the latest one. Returns the
    metrics: best validation metrics, steps, training throughput.
    """
    from msid.modelfile import save_model
    from msid.models.config import ENSEMBLES
    from msid.train import Trainer

    out_path = Path(out_path)
    config = dict(config or {})
    members = config.pop("members", None)
    if members is None:
        members = ENSEMBLES.get((family, config.get("size", "tiny")), [])
    if members:
        return _train_ensemble(family, members, config, train_store, val_store, index_path,
                               out_path, workdir=workdir, val_queries=val_queries,
                               resume=resume, stop_after_steps=stop_after_steps, log=log)
    run = RunConfig.from_dict({**config, "family": family})
    mcfg, tcfg = run.model, run.train
    torch.manual_seed(tcfg.seed)
    workdir = Path(workdir) if workdir else out_path.with_suffix(".train")
    target_bits, mol_feat = featurizers(mcfg)
    t0 = time.perf_counter()
    ds = SpectraDataset(train_store, max_peaks=mcfg.max_peaks, adducts=tcfg.adducts or None,
                        fingerprints=None if family == "ranker" else target_bits,
                        in_memory=True, max_items=tcfg.max_train_spectra, seed=tcfg.seed)
    ds, outside = _train_fold_only(ds, train_store, tcfg, log)
    in_train = train_fold_filter(train_store, lambda *_: None)  # said once, above
    log(f"[train] {family}: {len(ds):,} training spectra, {len(ds.structures):,} structures "
        f"({time.perf_counter() - t0:.1f} s)")
    if len(ds) == 0:
        raise ValueError(f"{train_store}: no labelled training spectra "
                         f"(adducts {tcfg.adducts or 'all'})")
    if val_queries is None and val_store and tcfg.val_max_queries:
        t0 = time.perf_counter()
        val_queries = build_val_candidates(val_store, index_path, adducts=tcfg.adducts,
                                           max_queries=tcfg.val_max_queries,
                                           max_candidates=tcfg.val_max_candidates,
                                           seed=tcfg.seed, max_peaks=mcfg.max_peaks,
                                           min_candidates=tcfg.val_min_candidates)
        log(f"[train] validation: {len(val_queries.items)} queries "
            f"({time.perf_counter() - t0:.1f} s)")
        if not val_queries.items:  # early stopping and the best step would mean nothing
            raise ValueError(
                f"{val_store}: no validation query with at least {tcfg.val_min_candidates} "
                f"candidates (adducts {tcfg.adducts or 'all'}, first {tcfg.val_max_queries} "
                "queries): lower train.val_min_candidates or raise train.val_max_queries")
    validator = (RetrievalValidator(val_queries, mol_feat, target_bits)
                 if val_queries is not None and val_queries.items else None)
    prepare = None
    if family == "ranker":
        negs = (HardNegatives(ds.structures, index_path, mol_feat, tcfg.hard_negative_pool,
                              tcfg.hard_negative_ppm, log=log,
                              source=tcfg.hard_negative_source,
                              allowed=in_train)
                if (index_path or tcfg.hard_negative_source == "train")
                and tcfg.n_hard_negatives > 0 else None)
        prepare = RankerBatches(FeatureBank(ds.structures, mol_feat), negs,
                                tcfg.n_hard_negatives if negs is not None else 0)
    model = build_model(mcfg)
    trainer = Trainer(model, tcfg, ds, collate_fn=collate_spectra, workdir=workdir,
                      prepare_batch=prepare, evaluate=validator, metric="hit@1", title=family,
                      run_key={"model": mcfg.to_dict(),
                               "inputs": files_digest(train_store, val_store, index_path)},
                      log=log)
    summary = trainer.fit(resume=resume, stop_after_steps=stop_after_steps)
    if summary.get("interrupted"):
        return summary
    metrics = {"val": summary["best"], "steps": summary["steps"],
               "best_step": summary["best_step"], "stopped_early": summary["stopped_early"],
               "train_seconds": summary["train_seconds"],
               "train_spectra_per_second": summary["spectra_per_second"],
               "device": summary["device"]}
    training = {
        "train_store": str(train_store), "val_store": str(val_store or ""),
        "candidate_index": str(index_path or ""),
        "n_train_spectra": len(ds), "n_train_structures": len(ds.structures),
        "adducts": tcfg.adducts, "split": "train fold for training, val fold for early stopping "
        "(structure-disjoint folds, InChIKey first block)",
        "n_val_queries": len(val_queries.items) if val_queries is not None else 0,
        "train_config": tcfg.to_dict(),
        "structures": {**structures_provenance(training_keys(ds), train_store, out_path),
                       "spectra_dropped_outside_train_fold": outside},
    }
    save_model(trainer.model.cpu(), out_path, family=family, config=mcfg.to_dict(),
               training=training, metrics=metrics)
    for name, suffix in (("history.json", ".history.json"), ("loss.png", ".loss.png")):
        if (workdir / name).exists():
            shutil.copyfile(workdir / name, out_path.with_suffix(suffix))
    log(f"[train] {family}: wrote {out_path} (val {summary['best']})")
    return metrics
