"""Train PepTRM (msid.train.Trainer), save it as a model file (msid.modelfile), load it back,
and run it over spectra.

Training data: the train fold (by peptide sequence) of the annotated MGF files, plus synthetic
spectra added to every batch by the curriculum (msid.peptides.synthetic). Validation: beam
decoding of the val fold (as runs decode), amino-acid recall (Casanovo conventions).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from msid.digest import files_digest
from msid.modelfile import (
    ModelFileError,
    card_path,
    load_tensors,
    save_model,
    verified_card,
)
from msid.models.config import TrainConfig, settings
from msid.peptides.data import PeptideSpectrum, read_annotated_mgf, split_by_sequence
from msid.peptides.decode import Decoded, ManyEvidence, decode_many, log_softmax
from msid.peptides.metrics import score_predictions, summary
from msid.peptides.model import SIZES, PepTRM, PepTRMConfig, tensorize
from msid.peptides.physics import Vocab, neutral_from_mz
from msid.peptides.synthetic import CurriculumConfig, curriculum_batch
from msid.train import Trainer

FAMILY = "peptrm"

TRAIN_DEFAULTS = {"batch_size": 16, "lr": 5e-4, "warmup_steps": 100, "max_steps": 3000,
                  "ema_decay": 0.995, "eval_every": 250, "checkpoint_every": 250,
                  "num_threads": 1, "log_every": 10}


class _Spectra(Dataset):
    def __init__(self, spectra: list[PeptideSpectrum]) -> None:
        self.spectra = spectra

    def __len__(self) -> int:
        return len(self.spectra)

    def __getitem__(self, i: int) -> PeptideSpectrum:
        return self.spectra[i]


def _collate(items: list[PeptideSpectrum]) -> dict:
    return {"items": items, "mz": torch.zeros(len(items), 1)}


class CurriculumBatches:
    """``prepare_batch`` for the Trainer: real spectra + synthetic ones of the current stage.
    Micro-batch ``m``'s stage depends only on ``m`` (resumable)."""

    def __init__(self, cfg: PepTRMConfig, vocab: Vocab, cur: CurriculumConfig,
                 train_tokens: list[list[str]], total_micro: int, start: int = 0) -> None:
        self.cfg, self.vocab, self.cur = cfg, vocab, cur
        self.train_tokens, self.total, self.m = train_tokens, max(total_micro, 1), start

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        synth = curriculum_batch(self.train_tokens, self.cur, self.m / self.total, rng,
                                 self.cfg.max_len)
        self.m += 1
        return tensorize(list(batch["items"]) + synth, self.cfg, self.vocab)


@torch.no_grad()
def step_logits(model: PepTRM, spectra: list[PeptideSpectrum], batch_size: int = 64,
                all_steps: bool = False) -> Iterator[tuple[np.ndarray, ManyEvidence | None]]:
    """Per batch of spectra: the transformer's (B, max_len, V) logits of the last step, or
    (B, T, max_len, V), with the batch's ion-evidence function for the decoders (None without
    the term)."""
    model.eval()
    dev = next(model.parameters()).device
    for k in range(0, len(spectra), batch_size):
        b = tensorize(spectra[k:k + batch_size], model.cfg, model.vocab, with_tokens=False)
        b = {key: v.to(dev) for key, v in b.items()}
        steps = model(b)
        logits = (torch.stack([s.float() for s in steps], 1) if all_steps
                  else steps[-1].float()).cpu().numpy()
        yield logits, _evidence_fn(model, b)


def _evidence_fn(model: PepTRM, batch: dict) -> ManyEvidence | None:
    if model.evidence is None:
        return None

    @torch.no_grad()
    def evidence(idx: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(idx, dtype=torch.long, device=batch["mz"].device)
        sub = {key: v.index_select(0, rows) for key, v in batch.items()}
        pre = torch.as_tensor(prefix, dtype=torch.float32, device=rows.device)[:, None]
        return model.evidence(sub, pre)[:, 0].float().cpu().numpy()

    return evidence


COMPONENTS = ("both", "transformer", "evidence")


def predict(model: PepTRM, spectra: list[PeptideSpectrum], decoding: str = "beam",
            beam_size: int = 10, ppm: float = 50.0, isotopes: int = 1,
            batch_size: int = 64, components: str = "both", top_n: int = 1) -> list[Decoded]:
    """Decode ``spectra``. ``components`` (an ablation; runs use both): ``transformer`` drops the
    ion-evidence term, ``evidence`` zeroes the transformer's logits. ``top_n`` (beam): the
    next-best sequences of each spectrum in its ``alternatives``."""
    if components not in COMPONENTS:
        raise ValueError(f"components must be one of {COMPONENTS}, not '{components}'")
    out: list[Decoded] = []
    for k, (logits, ev) in enumerate(step_logits(model, spectra, batch_size)):
        chunk = spectra[k * batch_size:(k + 1) * batch_size]
        if components == "transformer":
            ev = None
        elif components == "evidence" and ev is not None:
            logits = np.zeros_like(logits)
        out += decode_many(_scores(logits, ev), model.vocab, _masses(chunk), decoding,
                           beam_size, ppm=ppm, isotopes=isotopes, evidence=ev, top_n=top_n)
    return out


def _scores(logits: np.ndarray, ev: ManyEvidence | None) -> list[np.ndarray]:
    """What the decoders take: logits beside an evidence term, else log-probabilities."""
    return list(logits if ev is not None else log_softmax(logits))


def _masses(spectra: list[PeptideSpectrum]) -> list[float]:
    return [neutral_from_mz(s.precursor_mz, s.charge) for s in spectra]


def per_step_metrics(model: PepTRM, spectra: list[PeptideSpectrum],
                     batch_size: int = 64) -> list[dict]:
    """Greedy-decoding metrics of every supervision step's prediction."""
    dec: list[list[Decoded]] = [[] for _ in range(model.cfg.T)]
    for k, (logits, ev) in enumerate(step_logits(model, spectra, batch_size, all_steps=True)):
        chunk = spectra[k * batch_size:(k + 1) * batch_size]
        for t in range(model.cfg.T):
            dec[t] += decode_many(_scores(logits[:, t], ev), model.vocab, _masses(chunk),
                                  "greedy", evidence=ev)
    rows = []
    for t in range(model.cfg.T):
        sc = score_predictions([d.tokens for d in dec[t]], [d.score for d in dec[t]],
                               [s.tokens for s in spectra])
        rows.append({"step": t + 1, **summary(sc)})
    return rows


def model_config(config: dict) -> PepTRMConfig:
    size = config.get("size", "tiny")
    if size not in SIZES:
        raise ValueError(f"unknown PepTRM size '{size}' (choose from {sorted(SIZES)})")
    return PepTRMConfig.from_dict({**SIZES[size], **settings(PepTRMConfig, config.get("model"))})


def train_peptrm(data: list[str | os.PathLike], config: dict, out: str | os.PathLike,
                 log: Callable[[str], None] = print) -> dict:
    """Train on the train fold of ``data`` (annotated MGF); write ``out`` + card + history."""
    out = Path(out)
    cfg = model_config(config)
    tcfg = TrainConfig.from_dict({**TRAIN_DEFAULTS, **settings(TrainConfig, config.get("train"))})
    cur = CurriculumConfig.from_dict(config.get("curriculum"))
    folds_cfg = {"val": 0.1, "test": 0.1, **(config.get("folds") or {})}
    vocab = Vocab.default()
    read = read_annotated_mgf(data)
    folds = split_by_sequence(read.spectra, folds_cfg["val"], folds_cfg["test"])
    train = [s for s in folds["train"] if len(s.tokens) <= cfg.max_len]
    val = folds["val"]
    log(f"PepTRM: {len(read.spectra)} annotated spectra ({len(read.quarantine)} quarantined); "
        f"train {len(train)}, val {len(val)}; size {config.get('size', 'tiny')}")
    if not train:
        raise ValueError(f"PepTRM: no training spectra in {', '.join(map(str, data))} "
                         f"({len(read.spectra)} annotated spectra with a SEQ= peptide, "
                         f"{len(read.quarantine)} quarantined; {len(folds['train'])} in the "
                         f"train fold, the rest longer than max_len {cfg.max_len})")
    torch.manual_seed(tcfg.seed)
    model = PepTRM(cfg, vocab)
    workdir = out.parent / f".{out.stem}.work"

    def evaluate(m: torch.nn.Module) -> dict:
        dec = predict(m, val)  # beam search, as runs decode
        return summary(score_predictions([d.tokens for d in dec], [d.score for d in dec],
                                         [s.tokens for s in val]))

    accum = max(tcfg.grad_accum, 1)
    batches = CurriculumBatches(cfg, vocab, cur, [s.tokens for s in train],
                                tcfg.max_steps * accum)
    trainer = Trainer(model, tcfg, _Spectra(train), collate_fn=_collate, workdir=workdir,
                      prepare_batch=batches, evaluate=evaluate if val else None,
                      metric="aa_recall", title="PepTRM", log=log,
                      run_key={"model": cfg.to_dict(), "curriculum": asdict(cur),
                               "folds": folds_cfg, "data": files_digest(*data)})
    if (ck := trainer.latest_checkpoint()) is not None:
        batches.m = json.loads((ck / "state.json").read_text())["step"] * accum
    t0 = time.perf_counter()
    summ = trainer.fit()
    wall = time.perf_counter() - t0
    steps = per_step_metrics(model, val) if val else []
    card = save_model(model, out, family=FAMILY,
                      config={"model": cfg.to_dict(), "vocab": list(vocab.tokens),
                              "size": config.get("size", "tiny")},
                      training={"train": asdict(tcfg), "curriculum": asdict(cur),
                                "data": [Path(p).name for p in data],
                                "split": {"by": "peptide sequence (I=L)", **folds_cfg},
                                "n_train_spectra": len(train), "n_val_spectra": len(val),
                                "wall_seconds": wall, **summ},
                      metrics={"val": summ.get("best", {}), "val_per_step": steps})
    hist = workdir / "history.json"
    if hist.exists():
        shutil.copyfile(hist, out.with_suffix(".history.json"))
    log(json.dumps({"steps": summ["steps"], "train_seconds": summ["train_seconds"],
                    "best": summ.get("best")}, default=float))
    return card


def load_peptrm(path: str | os.PathLike, map_location: str = "cpu") -> tuple[PepTRM, dict]:
    """(model in eval mode, card): hash checked against the card, safetensors only."""
    path = Path(path)
    card = verified_card(path, FAMILY)
    try:
        cfg = PepTRMConfig.from_dict(card["config"]["model"])
        vocab = Vocab(tuple(card["config"]["vocab"]))
        model = PepTRM(cfg, vocab)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ModelFileError(card_path(path), f"model card config is invalid ({e})") from e
    tensors = load_tensors(path)  # its own ModelFileError for an unreadable file
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ModelFileError(path, f"weights do not fit the card's architecture ({e})") from e
    return model.to(map_location).eval(), card
