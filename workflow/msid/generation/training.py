"""Training of the generation models with :class:`msid.train.Trainer`.

De novo (:func:`train_denovo`): (1) the decoder is pretrained as a mass-conditioned SMILES
language model on pool molecules minus the val/test structures; (2) the whole model
(shared spectral encoder + decoder) trains on the train fold's spectra with teacher forcing;
the best step by validation token log-likelihood (val fold) is kept.

GLMR (:func:`train_glmr`): starts from the de novo model; the spectral encoder stays frozen,
candidate molecules are encoded by the shipped Ranker's frozen molecule encoder; the fusion
module and the decoder learn to generate the true molecule from the spectrum and a candidate
set (the truth in it with probability ``p_true``, as Ranker top-K sets hold it at test).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from msid.digest import files_digest
from msid.generation.config import MAX_CANDIDATE_SLOTS, GenRunConfig
from msid.generation.data import (
    MoleculeDataset,
    SpectrumMoleculeDataset,
    collate_molecules,
    collate_spectrum_molecules,
    encode_candidates,
    fold_inchikeys,
    pretraining_molecules,
)
from msid.generation.model import SmilesDecoderModel
from msid.generation.modelio import load_generator, save_generator
from msid.generation.tokenizer import Tokenizer
from msid.models.config import TrainConfig


class TokenNLL:
    """Validation: mean per-token negative log-likelihood of the true molecules (and its
    negative, ``neg_nll``, the metric the Trainer maximises)."""

    def __init__(self, dataset: Dataset, collate: Callable, batch_size: int = 64) -> None:
        self.batches = [collate([dataset[i] for i in range(a, min(a + batch_size,
                                                                  len(dataset)))])
                        for a in range(0, len(dataset), batch_size)]

    @torch.no_grad()
    def __call__(self, model: SmilesDecoderModel) -> dict:
        dev = next(model.parameters()).device
        total, n, correct = 0.0, 0, 0
        for batch in self.batches:
            batch = {k: v.to(dev) for k, v in batch.items()}
            mem, keep = model.memory(batch)
            tokens = batch["tokens"]
            out = model.logits(tokens[:, :-1], model.memory_kv(mem), keep,
                               pointer=model.pointer(batch, mem)).float()
            target = tokens[:, 1:]
            real = target != 0
            nll = F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1),
                                  ignore_index=0, reduction="sum")
            total += float(nll)
            n += int(real.sum())
            correct += int(((out.argmax(-1) == target) & real).sum())
        nll = total / max(n, 1)
        return {"nll": nll, "neg_nll": -nll, "token_acc": correct / max(n, 1)}


def _pretrain_config(run: GenRunConfig) -> TrainConfig:
    p, t = run.pretrain, run.train
    return TrainConfig.from_dict({
        "batch_size": p.batch_size, "lr": p.lr, "max_steps": p.max_steps,
        "warmup_steps": min(100, p.max_steps // 10), "eval_every": 0,
        "checkpoint_every": max(p.max_steps // 4, 1), "seed": p.seed, "device": t.device,
        "bf16": t.bf16, "compile": t.compile, "num_threads": t.num_threads,
        "progress": t.progress, "log_every": t.log_every, "grad_clip": 1.0})


def train_denovo(train_store: str | os.PathLike, val_store: str | os.PathLike,
                 test_store: str | os.PathLike | None, index_path: str | os.PathLike,
                 config: dict | None, out_path: str | os.PathLike, *,
                 workdir: str | os.PathLike | None = None, log: Callable = print) -> dict:
    """Pretrain + train the de novo model; writes ``out_path`` + card + tokenizer JSON."""
    from msid.train import Trainer

    run = GenRunConfig.from_dict(config)
    out_path = Path(out_path)
    workdir = Path(workdir) if workdir else out_path.with_suffix(".train")
    torch.manual_seed(run.train.seed)
    t_all = time.perf_counter()
    held_out = fold_inchikeys([p for p in (val_store, test_store) if p])
    smiles, masses, left_out = pretraining_molecules(index_path, held_out,
                                                     run.pretrain.max_molecules,
                                                     run.pretrain.seed, log)
    tok = Tokenizer.build([*smiles, *store_smiles(train_store)], run.model.tokenizer,
                          run.model.max_len)
    ds_spec = SpectrumMoleculeDataset(train_store, tok, max_peaks=run.model.max_peaks,
                    adducts=run.train.adducts or None, max_items=run.train.max_train_spectra,
                    seed=run.train.seed)
    leak = held_out & {parse_ik14(s) for s in ds_spec.structures}
    if leak:  # the folds split by recorded InChIKey; a standardised parent may coincide
        n = ds_spec.drop_structures({i for i, s in enumerate(ds_spec.structures)
                                     if parse_ik14(s) in leak})
        log(f"[generation] {n} training spectra of {len(leak)} structure(s) left out: they "
            "standardise to a val/test structure")
    if not len(ds_spec):
        raise ValueError(f"{train_store}: no training spectra left (every structure is a "
                         "val/test structure, or none tokenises): train and val stores must "
                         "hold different structures")
    log(f"[generation] vocabulary {len(tok)} tokens; {len(ds_spec):,} training spectra, "
        f"{len(ds_spec.structures):,} structures")
    ds_mol = MoleculeDataset(smiles, masses, tok)
    model = SmilesDecoderModel(run.model, len(tok))
    key = {"run": run.to_dict(), "vocabulary": len(tok),
           "inputs": files_digest(train_store, val_store, test_store, index_path)}
    pre = Trainer(model, _pretrain_config(run), ds_mol, collate_fn=collate_molecules,
                  workdir=workdir / "pretrain", title="denovo pretraining", run_key=key,
                  log=log)
    pre_summary = pre.fit()
    val = SpectrumMoleculeDataset(val_store, tok, max_peaks=run.model.max_peaks,
                                  adducts=run.train.adducts or None,
                                  max_items=run.train.val_max_queries, seed=run.train.seed)
    validator = TokenNLL(val, collate_spectrum_molecules)
    trainer = Trainer(pre.model, run.train, ds_spec, collate_fn=collate_spectrum_molecules,
                      workdir=workdir / "spectra", evaluate=validator, metric="neg_nll",
                      title="denovo", run_key=key, log=log)
    summary = trainer.fit()
    metrics = {"val": summary["best"], "steps": summary["steps"],
               "best_step": summary["best_step"], "train_seconds": summary["train_seconds"],
               "pretrain_seconds": pre_summary["train_seconds"],
               "pretrain_steps": pre_summary["steps"],
               "wall_seconds": time.perf_counter() - t_all, "device": summary["device"]}
    training = {"train_store": str(train_store), "val_store": str(val_store),
                "pretraining": {"source": str(index_path), "molecules": len(ds_mol),
                                "val_test_structures_left_out": left_out,
                                "rule": "pool minus every val/test structure (InChIKey "
                                        "first block)"},
                "n_train_spectra": len(ds_spec), "n_train_structures": len(ds_spec.structures),
                "run_config": run.to_dict()}
    save_generator(trainer.model.cpu(), tok, out_path, family="denovo", training=training,
                   metrics=metrics)
    _copy_history(workdir / "spectra", out_path)
    log(f"[generation] wrote {out_path} ({metrics})")
    return metrics


def store_smiles(store: str | os.PathLike) -> list[str]:
    """Flat SMILES of the distinct structures of a store (for the tokenizer's vocabulary)."""
    from msid.chem.structures import parse_structure
    from msid.store import SpectrumStore

    with SpectrumStore(store) as st:
        uniq = set(st.metadata["smiles"].astype(str))
    return sorted(p.smiles_flat for s in uniq if s and (p := parse_structure(s)) is not None)


def parse_ik14(smiles: str) -> str:
    from msid.chem.structures import parse_structure

    st = parse_structure(smiles)
    return st.inchikey14 if st else ""


def _copy_history(workdir: Path, out_path: Path) -> None:
    import shutil

    for name, suffix in (("history.json", ".history.json"), ("loss.png", ".loss.png")):
        if (workdir / name).exists():
            shutil.copyfile(workdir / name, out_path.with_suffix(suffix))


# -- GLMR -----------------------------------------------------------------------------------------
class CandidateSpectra(Dataset):
    """Spectra + their molecules + a candidate set per item: frozen encodings (rows of
    ``enc``), or for the copy fusion the candidates' token ids (``tokens``, with tags
    ``slots``: random per training set, so that every tag trains and none means a rank)."""

    def __init__(self, base: SpectrumMoleculeDataset, enc: np.ndarray | None,
                 cand_rows: list[np.ndarray] | None = None,
                 tokens: list[list[np.ndarray]] | None = None,
                 slots: list[np.ndarray] | None = None) -> None:
        self.base, self.enc, self.cand_rows = base, enc, cand_rows
        self.tokens, self.slots = tokens, slots
        self.struct_of_item = base.struct_of_item

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        it = self.base[i]
        if self.tokens is not None:
            it["cand_tokens"] = self.tokens[i]
            it["cand_slots"] = None if self.slots is None else self.slots[i]
        else:
            it["cand_enc"] = self.enc[self.cand_rows[i]]
            it["cand_dim"] = self.enc.shape[1]
        return it


def candidate_sets_for(ds: SpectrumMoleculeDataset, index_path: str | os.PathLike, k: int,
                       p_true: float, seed: int, ppm: float = 10.0,
                       allowed: Callable[[str], bool] | None = None) -> list[list[str]]:
    """Per item: up to ``k`` same-mass pool molecules, holding the truth with prob. ``p_true``,
    in random order (order carries no hint). ``allowed(inchikey14)``: which pool molecules
    may be candidates (for training: the train fold's only)."""
    from msid.chem.candidates import CandidateIndex, candidate_set
    from msid.chem.structures import parse_structure

    index = CandidateIndex(index_path)
    rng = np.random.default_rng(seed)
    per_struct: dict[int, list[str]] = {}
    out = []
    for i in range(len(ds)):
        s = int(ds.struct_of_item[i])
        if s not in per_struct:
            st = parse_structure(ds.structures[s])
            per_struct[s] = [c.smiles_flat for c in
                             candidate_set(index, mass=st.exact_mass, ppm=ppm, max_n=2 * k,
                                           true=st)[1:]
                             if allowed is None or allowed(c.inchikey14)]
        others = per_struct[s]
        take = list(rng.choice(others, min(len(others), k), replace=False)) if others else []
        if rng.random() < p_true:
            take = [ds.structures[s], *take[:k - 1]]
        rng.shuffle(take)
        out.append([str(x) for x in take])
    return out


_GLMR_DATA: dict = {}


def train_glmr(train_store: str | os.PathLike, val_store: str | os.PathLike,
               index_path: str | os.PathLike, denovo_path: str | os.PathLike,
               ranker_path: str | os.PathLike, config: dict | None,
               out_path: str | os.PathLike, *, fusion: str = "cross",
               workdir: str | os.PathLike | None = None, log: Callable = print) -> dict:
    """Train GLMR's fusion + decoder from the de novo model; writes ``out_path`` (+ card,
    tokenizer). The Ranker's file is recorded in the card (stage 1 uses it at inference)."""
    from msid.models.methods import ModelRanking
    from msid.train import Trainer

    run = GenRunConfig.from_dict(config)
    g = run.glmr
    if fusion == "copy" and g.train_k > MAX_CANDIDATE_SLOTS:
        raise ValueError(f"glmr train_k {g.train_k}: the copy fusion tags at most "
                         f"{MAX_CANDIDATE_SLOTS} candidates")
    out_path = Path(out_path)
    workdir = Path(workdir) if workdir else out_path.with_suffix(".train")
    t_all = time.perf_counter()
    base, tok, dcard = load_generator(denovo_path, family="denovo")
    ranker = ModelRanking.from_file("ranker", ranker_path)
    cand_dim = int(ranker.embed_molecules(["C"]).shape[1])
    mcfg = base.cfg.__class__.from_dict({**base.cfg.to_dict(), "fusion": fusion,
                                          "cand_dim": cand_dim})
    torch.manual_seed(run.train.seed)  # the fusion's new weights: from the seed, not the process
    model = SmilesDecoderModel(mcfg, len(tok))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"unexpected de novo weights: {unexpected}")
    model.freeze_encoder()

    from msid.models.training import train_fold_filter

    in_train = train_fold_filter(train_store, log)

    def with_candidates(store, max_items, seed, train: bool = False) -> CandidateSpectra:
        ds = SpectrumMoleculeDataset(store, tok, max_peaks=mcfg.max_peaks,
                                     adducts=run.train.adducts or None, max_items=max_items,
                                     seed=seed)
        # training candidates from the train fold only: no val/test structure trains GLMR
        sets = candidate_sets_for(ds, index_path, g.train_k, g.p_true, seed,
                                  allowed=in_train if train else None)
        if fusion == "copy":
            tokens = [encode_candidates(tok, lst) for lst in sets]
            rng = np.random.default_rng(seed)
            slots = ([rng.choice(MAX_CANDIDATE_SLOTS, len(t), replace=False) for t in tokens]
                     if train else None)
            return CandidateSpectra(ds, None, tokens=tokens, slots=slots)
        uniq = list(dict.fromkeys(s for lst in sets for s in lst))
        enc = ranker.embed_molecules(uniq).astype(np.float32) if uniq else \
            np.zeros((0, cand_dim), np.float32)
        row = {s: i for i, s in enumerate(uniq)}
        return CandidateSpectra(ds, enc, [np.array([row[s] for s in lst], np.int64)
                                          for lst in sets])

    t0 = time.perf_counter()
    key = (str(train_store), str(val_store), str(index_path), dcard["weights_sha256"],
           str(ranker_path), repr(g), run.train.seed, run.train.val_max_queries,
           tuple(run.train.adducts), fusion == "copy")
    if key not in _GLMR_DATA:  # the fusion ablations train on the same sets
        _GLMR_DATA.clear()
        _GLMR_DATA[key] = (with_candidates(train_store, g.max_train_spectra, run.train.seed,
                                           train=True),
                           with_candidates(val_store, run.train.val_max_queries,
                                           run.train.seed + 1))
    ds, val = _GLMR_DATA[key]
    log(f"[glmr] {len(ds):,} training spectra with {g.train_k} candidates each "
        f"({time.perf_counter() - t0:.1f} s)")
    steps = g.max_steps or max(run.train.max_steps // 2, 1)
    tcfg = TrainConfig.from_dict({**run.train.to_dict(), "max_steps": steps,
                                  "eval_every": min(run.train.eval_every, max(steps // 4, 1))})
    trainer = Trainer(model, tcfg, ds, collate_fn=collate_spectrum_molecules,
                      workdir=workdir / fusion, evaluate=TokenNLL(val, collate_spectrum_molecules),
                      metric="neg_nll", title=f"glmr {fusion}", log=log,
                      run_key={"run": run.to_dict(), "fusion": fusion, "n_train": len(ds),
                               "denovo": dcard["weights_sha256"],
                               "inputs": files_digest(train_store, val_store, index_path,
                                                      ranker_path)})
    summary = trainer.fit()
    metrics = {"val": summary["best"], "steps": summary["steps"],
               "best_step": summary["best_step"], "train_seconds": summary["train_seconds"],
               "wall_seconds": time.perf_counter() - t_all, "device": summary["device"],
               "missing_from_denovo": len(missing)}
    training = {"train_store": str(train_store), "val_store": str(val_store),
                "denovo_model": str(denovo_path), "denovo_sha256": dcard["weights_sha256"],
                "ranker_model": str(ranker_path), "fusion": fusion,
                "frozen": "spectral encoder (+ spectrum projection, mass token); Ranker "
                          "molecule encoder for candidates",
                "n_train_spectra": len(ds), "run_config": run.to_dict()}
    save_generator(trainer.model.cpu(), tok, out_path, family="glmr", training=training,
                   metrics=metrics, extra={"glmr": {"k": g.k, "beam_width": g.beam_width,
                                                    "weight": g.weight,
                                                    "similarity": g.similarity}})
    _copy_history(workdir / fusion, out_path)
    log(f"[glmr] wrote {out_path} ({metrics})")
    return metrics


__all__ = ["train_denovo", "train_glmr"]
