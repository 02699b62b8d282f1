"""LLM2Vec-style training of the EI spectrum embedder, in up to three stages, on one Trainer.

1. **MNTP** (masked next-token prediction): tokens of spectrum texts are masked and predicted
   from the hidden state of the token *before* them (output embeddings tied to the input ones).
2. **SimCSE** (unsupervised): the same text encoded twice with different dropout masks is its
   own positive, the rest of the batch are negatives.
3. **Supervised contrastive**: a spectrum and another spectrum of the same compound (InChIKey
   first block) are a positive pair; the batch's other pairs are in-batch negatives and every
   anchor brings one hard negative: a spectrum of a training structure of similar mass
   (``hard_negatives: mass``) or one whose spectra are most like the anchor structure's by
   weighted cosine (``hard_negatives: spectrum``: the confusions a spectral search makes).

For a decoder-only base (Llama, ...) stages 1 and 2 always run; for an encoder (MiniLM) they run
when ``EmbeddingTrainConfig.stages`` says so and the ablation keeps them where they help on val.
Validation metric: recall@1 of val-fold queries against a library holding one other spectrum of
each val structure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from msid.digest import files_digest
from msid.ei.embedding import EmbeddingConfig, SpectrumEmbedder
from msid.io.licences import model_licence_and_attribution
from msid.models.config import TrainConfig, config_from_dict
from msid.train import RUNTIME_ONLY, Trainer, torch_threads

STAGES = ("mntp", "simcse", "supervised")


@dataclass
class EmbeddingTrainConfig:
    stages: list[str] = field(default_factory=lambda: ["mntp", "simcse", "supervised"])
    mntp_steps: int = 60
    simcse_steps: int = 60
    supervised_steps: int = 300
    batch_size: int = 32
    lr: float = 5e-5
    mask_prob: float = 0.2
    temperature: float = 0.05
    hard_negatives: str = "mass"  # mass | spectrum (see the module docstring)
    hard_negative_pool: int = 8  # training structures nearest in molecular mass / spectrum
    val_queries: int = 300
    eval_every: int = 100
    # steps between checkpoints (0: none): a killed, timed-out or requeued job resumes its
    # stage from the last one (<workdir>/<stage>/ckpt), a finished stage is not trained again
    checkpoint_every: int = 100
    num_threads: int = 1
    device: str = "auto"
    seed: int = 0
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict | None) -> EmbeddingTrainConfig:
        cfg = config_from_dict(cls, d)
        bad = set(cfg.stages) - set(STAGES)
        if bad:
            raise ValueError(f"unknown training stages {sorted(bad)} (known: {STAGES})")
        if cfg.hard_negatives not in ("mass", "spectrum"):
            raise ValueError(f"hard_negatives must be 'mass' or 'spectrum', got "
                             f"'{cfg.hard_negatives}'")
        return cfg


@dataclass
class EISpectra:
    """Spectra texts with their structure key and molecular mass (for hard negatives)."""

    texts: list[str]
    ik14: np.ndarray  # str
    mass: np.ndarray  # float, molecular (exact) mass of the structure
    peaks: list[tuple[np.ndarray, np.ndarray]] | None = None  # nominal; for spectrum negatives


class _Items(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _collate(items: list[int]) -> dict:
    return {"items": torch.tensor(items, dtype=torch.long)}


class StageModel(nn.Module):
    """The embedder plus the loss of the current stage (what the Trainer calls)."""

    def __init__(self, embedder: SpectrumEmbedder, stage: str, cfg: EmbeddingTrainConfig
                 ) -> None:
        super().__init__()
        self.embedder = embedder
        self.stage = stage
        self.cfg = cfg

    def state_dict(self, *a, **k):  # checkpoints and best weights hold the embedder only
        return self.embedder.state_dict(*a, **k)

    def load_state_dict(self, sd, strict: bool = True, assign: bool = False):
        return self.embedder.load_state_dict(sd, strict=strict, assign=assign)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        if self.stage == "mntp":
            return self._mntp(batch)
        if self.stage == "simcse":
            return self._contrastive(batch["input_ids"], batch["attention_mask"],
                                     batch["input_ids"], batch["attention_mask"])
        return self._contrastive(batch["input_ids"], batch["attention_mask"],
                                 batch["pos_ids"], batch["pos_mask"])

    def _mntp(self, batch: dict) -> tuple[torch.Tensor, dict]:
        emb = self.embedder
        h = emb.hidden(batch["input_ids"], batch["attention_mask"])
        w = emb.backbone.get_input_embeddings().weight
        logits = h[:, :-1] @ w.T + emb.mntp_bias  # position i predicts token i+1
        labels = batch["labels"][:, 1:]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           labels.reshape(-1), ignore_index=-100)
        return loss, {"mntp": float(loss.detach())}

    def _contrastive(self, a_ids, a_mask, b_ids, b_mask) -> tuple[torch.Tensor, dict]:
        za = self.embedder(a_ids, a_mask)
        zb = self.embedder(b_ids, b_mask)  # positives (first n) + hard negatives (rest)
        n = za.shape[0]
        logits = za @ zb.T / self.cfg.temperature
        target = torch.arange(n, device=za.device)
        loss = nn.functional.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"acc": float(acc)}


def _mask_tokens(tok: dict, tokenizer, prob: float, rng: np.random.Generator) -> dict:
    ids = tok["input_ids"].clone()
    special = np.array([[t in tokenizer.all_special_ids for t in row] for row in ids.tolist()])
    draw = (rng.random(ids.shape) < prob) & ~special & (tok["attention_mask"].numpy() == 1)
    draw[:, 0] = False  # the first token has no predecessor
    mask = torch.from_numpy(draw)
    labels = torch.where(mask, ids, torch.full_like(ids, -100))
    mask_id = tokenizer.mask_token_id
    if mask_id is None:  # decoder tokenizers: mask with a fixed ordinary token
        mask_id = tokenizer.unk_token_id or tokenizer.eos_token_id
    ids[mask] = mask_id
    return {"input_ids": ids, "attention_mask": tok["attention_mask"], "labels": labels}


def _hard_negative_table(data: EISpectra, rows: np.ndarray, pool: int
                         ) -> tuple[list[np.ndarray], dict[str, int]]:
    """For each training structure: the ``pool`` other structures nearest in mass."""
    keys, first = np.unique(data.ik14[rows], return_index=True)
    mass = data.mass[rows][first]
    order = np.argsort(mass)
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    near = []
    for g in range(len(keys)):
        p = pos[g]
        lo, hi = max(p - pool, 0), min(p + pool + 1, len(order))
        cand = [c for c in order[lo:hi] if c != g]
        cand.sort(key=lambda c: abs(mass[c] - mass[g]))
        near.append(np.array(cand[:pool], dtype=np.int64))
    return near, {k: i for i, k in enumerate(keys)}


def _spectral_negative_table(data: EISpectra, rows: np.ndarray, pool: int,
                             block: int = 2048) -> tuple[list[np.ndarray], dict[str, int]]:
    """For each training structure: the ``pool`` other structures whose spectra come closest
    to one of its own by weighted cosine (over the training spectra, best match first)."""
    from msid.ei.search import spectrum_matrix

    if data.peaks is None:
        raise ValueError("hard_negatives: spectrum needs EISpectra.peaks")
    keys = np.unique(data.ik14[rows])
    key_index = {k: i for i, k in enumerate(keys)}
    owner = np.array([key_index[str(k)] for k in data.ik14[rows]])
    vec = spectrum_matrix([data.peaks[int(r)] for r in rows], "weighted-cosine")
    best = np.full((len(keys), len(keys)), -1.0, dtype=np.float32)  # structure x structure
    by_key = np.argsort(owner, kind="stable")
    col_bounds = np.r_[0, np.cumsum(np.bincount(owner, minlength=len(keys)))][:-1]
    for start in range(0, vec.shape[0], block):
        sim = (vec[start:start + block] @ vec.T).toarray().astype(np.float32)
        per_key = np.maximum.reduceat(sim[:, by_key], col_bounds, axis=1)  # spectrum x key
        mine = owner[start:start + block]
        rows_by_key = np.argsort(mine, kind="stable")
        keys_here, first = np.unique(mine[rows_by_key], return_index=True)
        reduced = np.maximum.reduceat(per_key[rows_by_key], first, axis=0)  # key x key
        best[keys_here] = np.maximum(best[keys_here], reduced)
    np.fill_diagonal(best, -np.inf)
    near = [np.argsort(-best[g], kind="stable")[:pool].astype(np.int64)
            for g in range(len(keys))]
    return near, key_index


def recall_at_1(embedder: SpectrumEmbedder, data: EISpectra, queries: np.ndarray,
                library: np.ndarray) -> float:
    q = embedder.encode_texts([data.texts[i] for i in queries])
    lib = embedder.encode_texts([data.texts[i] for i in library])
    best = (q @ lib.T).argmax(1)
    return float(np.mean(data.ik14[library][best] == data.ik14[queries]))


def val_split(data: EISpectra, rows: np.ndarray, n_max: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Queries (one spectrum of each multi-spectrum structure) and a library (all the rest)."""
    rng = np.random.default_rng(seed)
    by_key: dict[str, list[int]] = {}
    for r in rows:
        by_key.setdefault(str(data.ik14[r]), []).append(int(r))
    queries, library = [], []
    for _k, members in sorted(by_key.items()):
        if len(members) >= 2 and len(queries) < n_max:
            q = members[int(rng.integers(len(members)))]
            queries.append(q)
            library += [m for m in members if m != q]
        else:
            library += members
    return np.array(queries, dtype=np.int64), np.array(library, dtype=np.int64)


def train_embedder(data: EISpectra, train_rows: np.ndarray, val_rows: np.ndarray,
                   emb_cfg: EmbeddingConfig, cfg: EmbeddingTrainConfig,
                   workdir: str | Path, log: Callable[[str], None] = print,
                   data_key: dict | None = None) -> tuple[SpectrumEmbedder, dict]:
    """Run the configured stages in order; returns the embedder and a training summary.
    ``data_key`` (the training files' digests) joins each stage's run key: a checkpoint of a
    run on other data or settings is never resumed."""
    embedder = SpectrumEmbedder(emb_cfg)
    stages = list(cfg.stages)
    if embedder.is_decoder:  # causal attention: the unsupervised stages are not optional
        stages = sorted(set(stages) | {"mntp", "simcse"}, key=STAGES.index)
    vq, vl = val_split(data, val_rows, cfg.val_queries, cfg.seed)
    torch.set_num_threads(max(torch_threads(cfg.num_threads), 1))
    summary: dict = {"stages": stages, "val_queries": len(vq), "val_library": len(vl),
                     "base_model": emb_cfg.base_model, "per_stage": {}}
    t_start = time.perf_counter()
    summary["val_recall@1_base"] = recall_at_1(embedder, data, vq, vl)
    log(f"base model: val recall@1 {summary['val_recall@1_base']:.3f} "
        f"({len(vq)} queries, {len(vl)} library spectra)")
    tok = embedder.tokenizer
    texts = data.texts
    train_rows = np.asarray(train_rows)
    near, key_index = (_spectral_negative_table if cfg.hard_negatives == "spectrum"
                       else _hard_negative_table)(data, train_rows, cfg.hard_negative_pool)
    groups: dict[int, list[int]] = {}
    for r in train_rows:
        groups.setdefault(key_index[str(data.ik14[r])], []).append(int(r))
    multi = np.array(sorted(g for g, m in groups.items() if len(m) >= 2), dtype=np.int64)

    def tokenize(rows: Sequence[int]) -> dict:
        return dict(embedder.tokenize([texts[i] for i in rows]))

    def evaluate(_model: nn.Module) -> dict:
        return {"recall@1": recall_at_1(embedder, data, vq, vl)}

    for stage in stages:
        steps = {"mntp": cfg.mntp_steps, "simcse": cfg.simcse_steps,
                 "supervised": cfg.supervised_steps}[stage]
        if steps <= 0:
            continue
        if stage == "supervised":
            if len(multi) < 2:
                raise ValueError("supervised stage needs training structures with >= 2 spectra")
            n_items = len(multi)

            def prepare(batch: dict, rng: np.random.Generator) -> dict:
                anchors, positives, negatives = [], [], []
                for g in multi[batch["items"].numpy()]:
                    a, p = rng.choice(groups[int(g)], size=2, replace=False)
                    anchors.append(int(a))
                    positives.append(int(p))
                    ng = int(near[int(g)][rng.integers(len(near[int(g)]))])
                    negatives.append(int(rng.choice(groups[ng])))
                ta, tb = tokenize(anchors), tokenize(positives + negatives)
                return {"input_ids": ta["input_ids"], "attention_mask": ta["attention_mask"],
                        "pos_ids": tb["input_ids"], "pos_mask": tb["attention_mask"],
                        "mz": ta["input_ids"]}  # the Trainer counts spectra by batch["mz"]
        else:
            n_items = len(train_rows)

            def prepare(batch: dict, rng: np.random.Generator, stage: str = stage) -> dict:
                rows = train_rows[batch["items"].numpy()]
                t = tokenize(rows)
                out = (_mask_tokens(t, tok, cfg.mask_prob, rng) if stage == "mntp" else
                       {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]})
                out["mz"] = t["input_ids"]
                return out

        tcfg = TrainConfig(batch_size=cfg.batch_size, lr=cfg.lr, max_steps=steps,
                           warmup_steps=max(steps // 10, 1), eval_every=(
                               cfg.eval_every if stage == "supervised" else 0),
                           checkpoint_every=cfg.checkpoint_every, seed=cfg.seed,
                           device=cfg.device,
                           num_threads=cfg.num_threads, progress=cfg.progress, log_every=10,
                           weight_decay=0.01, min_lr_ratio=0.1)
        model = StageModel(embedder, stage, cfg)
        trainer = Trainer(model, tcfg, _Items(n_items), collate_fn=_collate,
                          workdir=Path(workdir) / stage, prepare_batch=prepare,
                          evaluate=evaluate if stage == "supervised" else None,
                          metric="recall@1", title=f"llm4ms {stage}",
                          run_key={"data": data_key or {}, "stages": stages,
                                   "embedding": asdict(emb_cfg),
                                   "train": {k: v for k, v in asdict(cfg).items()
                                             if k not in RUNTIME_ONLY}},
                          log=log)
        res = trainer.fit()
        embedder = model.embedder
        res["val_recall@1_after"] = recall_at_1(embedder, data, vq, vl)
        log(f"{stage}: {res['steps']} steps, {res['train_seconds']:.0f} s, "
            f"val recall@1 {res['val_recall@1_after']:.3f}")
        summary["per_stage"][stage] = {k: v for k, v in res.items() if k != "best"}
    summary["train_seconds"] = time.perf_counter() - t_start
    summary["val_recall@1"] = recall_at_1(embedder, data, vq, vl)
    summary["config"] = asdict(cfg)
    return embedder.eval(), summary


def train_from_files(files: Sequence[str | Path], out: str | Path, emb_cfg: EmbeddingConfig,
                     cfg: EmbeddingTrainConfig, workdir: str | Path,
                     log: Callable[[str], None] = print) -> dict:
    """Train on the train fold of the EI spectra in ``files`` (MSP/MGF/stores) and write the
    model file ``out`` (+ card, + ``.history.json``). Returns the card."""
    import json

    from msid.atomic import write_text
    from msid.ei.embedding import save_embedder, spectrum_to_text
    from msid.ei.search import library_store_path
    from msid.ei.search_eval import load_pool, split_pool

    stores = [library_store_path(f) for f in files]
    pool = load_pool(stores)
    split = split_pool(pool)
    data = EISpectra([spectrum_to_text(m, i, emb_cfg.top_k_peaks, emb_cfg.intensity_scale,
                                       emb_cfg.peak_selection)
                      for m, i in pool.peaks], pool.ik14, pool.metadata["mass"].to_numpy(),
                     pool.peaks)
    log(f"{len(pool.peaks)} EI spectra: {len(split.train)} train, {len(split.val)} val "
        f"(test fold held out: {int((pool.metadata['fold'] == 'test').sum())})")
    embedder, summary = train_embedder(data, split.train, split.val, emb_cfg, cfg, workdir, log,
                                       data_key=files_digest(*files))
    # from the records' own LICENSE lines and MassBank accessions
    licence, credit = model_licence_and_attribution(files)
    training = {"data": [str(f) for f in files], "split": "InChIKey first block, "
                "msid.folds.fold_of (train 0.8 / val 0.1 / test 0.1)",
                "n_train_spectra": len(split.train), "n_val_spectra": len(split.val),
                "licence_of_training_data": licence, **summary}
    card = save_embedder(embedder, out, training=training,
                         metrics={"val_recall@1": summary["val_recall@1"],
                                  "val_recall@1_base": summary["val_recall@1_base"]},
                         extra={"licence": licence, "attribution": credit})
    history = {s: json.loads((Path(workdir) / s / "history.json").read_text())
               for s in summary["stages"] if (Path(workdir) / s / "history.json").exists()}
    write_text(Path(out).with_suffix(".history.json"), json.dumps(history, indent=1) + "\n")
    return card
