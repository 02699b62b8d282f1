"""One Trainer for every model family: AdamW + warmup/cosine, accumulation, clipping, EMA,
checkpoints that resume bit-for-bit on CPU, early stopping on a validation metric, history + plot.

The model supplies ``loss(batch) -> (loss, logs)``; the caller supplies the training dataset and
its collate function, an optional ``prepare_batch(batch, rng)`` (e.g. hard negatives), and an
optional ``evaluate(model) -> metrics`` (validation Hit@1). The data order and every random draw
of step ``s`` depend only on the seed and ``s`` (epoch permutations seeded by (seed, epoch),
torch and numpy generators re-seeded per micro-batch), so a run restarted from a checkpoint
produces the same weights as one that was never interrupted (exactly, on CPU).

Checkpoints (``<workdir>/ckpt/step-<n>/``) hold ``model.safetensors`` (+ ``ema.safetensors``),
``optim.pt`` (optimizer + scheduler state, loaded with ``torch.load(weights_only=True)``) and
``state.json`` (step, early-stopping state, history). ``<workdir>/ckpt/latest`` names the newest
complete one; a kill mid-write leaves the previous one in place.

Checkpoints resume only the run that wrote them: ``<workdir>/run.json`` records the training
settings (less those that change how it runs, not what it computes), the model's class, its
parameter shapes, a digest of the source file that defines it, and the caller's ``run_key``
(model config, data). When a new Trainer finds checkpoints from another run there, it moves
them aside to ``ckpt.stale`` and training starts afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from msid.atomic import atomic_path, write_text
from msid.modelfile import load_tensors, save_tensors
from msid.models.config import TrainConfig
from msid.parallel import JOB_THREADS
from msid.progress import progress_bar

#: CUDA_VISIBLE_DEVICES naming devices (indices or GPU/MIG UUIDs), not "", "-1" or "NoDevFiles"
_GPU_IDS = re.compile(r"(?:\d+|GPU-[\w-]+|MIG-[\w/-]+)(?:,(?:\d+|GPU-[\w-]+|MIG-[\w/-]+))*")


def torch_threads(configured: int, workers: int = 0) -> int:
    """Intra-op threads to train with: where a workflow job says how many CPUs it was given
    (:data:`JOB_THREADS`), those less its data-loading workers (at least 1), so that more CPUs
    asked of the scheduler are used; else the configured number (0: torch's default)."""
    job = os.environ.get(JOB_THREADS, "")
    if job.isdigit() and int(job) > 0:
        return max(1, int(job) - workers)
    return configured


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if _GPU_IDS.fullmatch(visible):  # a scheduler gave this job a GPU that torch cannot use
        why = ("a CPU build of pytorch" if torch.version.cuda is None else
               f"a CUDA {torch.version.cuda} build that finds no usable device (driver?)")
        warnings.warn(f"this job was given GPU(s) {visible} (CUDA_VISIBLE_DEVICES) but torch "
                      f"{torch.__version__} is {why}: training on the CPU", RuntimeWarning,
                      stacklevel=2)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def derived_seed(*parts: object) -> int:
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)


class StepBatchSampler(Sampler):
    """Endless batches of indices; micro-batch ``m`` is a pure function of (seed, m).

    With ``groups`` (a group id per item, e.g. its structure) an epoch visits every group once,
    through one of its items drawn at random: structures with many spectra no longer dominate.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0,
                 groups: np.ndarray | None = None) -> None:
        self.members: list[np.ndarray] | None = None
        n_units = n
        if groups is not None:
            groups = np.asarray(groups)
            order = np.argsort(groups, kind="stable")
            bounds = np.flatnonzero(np.diff(groups[order])) + 1
            self.members = np.split(order, bounds) if len(order) else []
            n_units = len(self.members)
        if n_units < batch_size:
            batch_size = n_units
        self.n, self.bs, self.seed, self.start = n_units, batch_size, seed, start
        self.per_epoch = max(n_units // batch_size, 1)

    def _perm(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng(derived_seed(self.seed, "epoch", epoch))
        perm = rng.permutation(self.n)
        if self.members is None:
            return perm
        return np.array([self.members[g][rng.integers(len(self.members[g]))] for g in perm],
                        dtype=np.int64)

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        epoch, perm = -1, None
        while True:
            e, pos = divmod(m, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._perm(e)
            yield perm[pos * self.bs:(pos + 1) * self.bs].tolist()
            m += 1

    def __len__(self) -> int:  # endless; DataLoader only needs this for len()
        return 1 << 62


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine to ``min_ratio`` at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _to_device(batch: dict, device: torch.device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            if device.type == "mps" and v.dtype == torch.float64:
                v = v.float()
            out[k] = v.to(device, non_blocking=True)
        else:
            out[k] = v
    return out


def plot_history(history: dict, path: str | os.PathLike) -> Path | None:
    """Loss curve (and validation metrics on a second axis) to a PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    train = history.get("train", [])
    val = history.get("val", [])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss",
                color="tab:blue")
    if any("loss" in r for r in val):
        ax.plot([r["step"] for r in val if "loss" in r], [r["loss"] for r in val if "loss" in r],
                label="val loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    for key, color in (("hit@1", "tab:green"), ("hit@5", "tab:olive"), ("fp_f1", "tab:red")):
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            ax2.plot(*zip(*pts, strict=True), "o-", label=f"val {key}", color=color)
    ax2.set_ylabel("validation metric")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    ax.set_title(history.get("title", "training"))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


#: training settings that change how a run goes, not what it computes (a resume may differ)
RUNTIME_ONLY = ("progress", "num_threads", "num_workers", "log_every")


def run_stamp(model: torch.nn.Module, cfg: TrainConfig, run_key: dict | None = None) -> str:
    """What identifies a training run, as JSON (see the module docstring)."""
    try:
        source = Path(inspect.getfile(type(model))).read_bytes()
    except (TypeError, OSError):
        source = b""
    train = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_ONLY}
    return json.dumps({"train": train, "run": run_key or {},
                       "model": {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                                 "source_sha256": hashlib.sha256(source).hexdigest(),
                                 "parameters": {k: list(v.shape)
                                                for k, v in model.state_dict().items()}}},
                      sort_keys=True, default=str)


class Trainer:
    """Train ``model`` on ``dataset``; see the module docstring."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, dataset: Dataset, *,
                 collate_fn: Callable, workdir: str | os.PathLike,
                 prepare_batch: Callable[[dict, np.random.Generator], dict] | None = None,
                 evaluate: Callable[[torch.nn.Module], dict] | None = None,
                 metric: str = "hit@1", title: str = "training", run_key: dict | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        threads = torch_threads(cfg.num_threads, cfg.num_workers)
        if self.device.type == "cpu" and threads > 0:
            torch.set_num_threads(threads)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.prepare_batch = prepare_batch
        self.evaluate = evaluate
        self.metric = metric
        self.title = title
        self.workdir = Path(workdir)
        self.ckpt_dir = self.workdir / "ckpt"
        self.log = log
        self._check_run(run_stamp(model, cfg, run_key), log)
        self.cuda = self.device.type == "cuda"
        self.use_bf16 = bool(cfg.bf16 and self.cuda)
        decay, no_decay = [], []
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=tuple(cfg.betas), fused=self.cuda or None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio))
        self.ema: dict[str, torch.Tensor] | None = None
        if cfg.ema_decay > 0:
            skip = set(getattr(model, "ema_skip", ()))  # training state, not weights
            self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()
                        if v.dtype.is_floating_point and k not in skip}
        self.loss_fn = model.loss
        if cfg.compile and self.cuda:
            self.loss_fn = torch.compile(model.loss)
        self.step = 0
        self.best: dict = {"metric": None, "step": -1, "bad_evals": 0, "metrics": {}}
        self.history: dict = {"title": title, "train": [], "val": []}
        self.train_seconds = 0.0
        self.spectra_seen = 0
        self.stopped_early = False
        self.finished = False  # the run ended (steps, early stop or time budget): resumes as is
        self._window: list[dict] = []  # per-step logs since the last history record

    # -- checkpoints -----------------------------------------------------------------------
    def _check_run(self, stamp: str, log: Callable[[str], None]) -> None:
        path = self.workdir / "run.json"
        if self.ckpt_dir.exists() and (not path.exists() or path.read_text() != stamp):
            stale = self.workdir / "ckpt.stale"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(self.ckpt_dir, stale)
            log(f"[{self.title}] {self.ckpt_dir}: checkpoints from another configuration "
                f"moved to {stale}; training from scratch")
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_text(path, stamp)

    def _state_json(self) -> dict:
        return {"step": self.step, "best": self.best, "history": self.history,
                "train_seconds": self.train_seconds, "spectra_seen": self.spectra_seen,
                "stopped_early": self.stopped_early, "seed": self.cfg.seed,
                "window": self._window, "finished": self.finished}

    def save_checkpoint(self) -> Path:
        """Write a checkpoint and point ``latest`` at it, then remove the older ones. A
        finished run's is written under its own name (``step-N-final``), never over the
        ``step-N`` that ``latest`` may still name: a kill while saving leaves one whole."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        name = f"step-{self.step:08d}" + ("-final" if self.finished else "")
        final = self.ckpt_dir / name
        tmp = self.ckpt_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_tensors(self.model.state_dict(), tmp / "model.safetensors")
        if self.ema is not None:
            save_tensors(self.ema, tmp / "ema.safetensors")
        torch.save({"optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        write_text(tmp / "state.json", json.dumps(self._state_json(), default=float))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(self.ckpt_dir / "latest", final.name + "\n")
        for old in self.ckpt_dir.glob("step-*"):  # keep the newest only
            if old.name != final.name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        ptr = self.ckpt_dir / "latest"
        if not ptr.exists():
            return None
        path = self.ckpt_dir / ptr.read_text().strip()
        return path if (path / "state.json").exists() else None

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self.model.load_state_dict(load_tensors(path / "model.safetensors"))
        if self.ema is not None and (path / "ema.safetensors").exists():
            self.ema = {k: v.to(self.device) for k, v in
                        load_tensors(path / "ema.safetensors").items()}
        state = torch.load(path / "optim.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        js = json.loads((path / "state.json").read_text())
        self.step = int(js["step"])
        self.best = js["best"]
        self.history = js["history"]
        self.train_seconds = float(js["train_seconds"])
        self.spectra_seen = int(js["spectra_seen"])
        self.stopped_early = bool(js.get("stopped_early", False))
        self.finished = bool(js.get("finished", False))
        self._window = list(js.get("window", []))

    # -- EMA / evaluation ------------------------------------------------------------------
    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.cfg.ema_decay
        for k, v in self.model.state_dict().items():
            if k in self.ema:
                self.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)

    def eval_weights(self) -> dict[str, torch.Tensor]:
        """The weights to evaluate and keep: EMA when enabled, else the live ones."""
        sd = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            sd.update({k: v.clone() for k, v in self.ema.items()})
        return sd

    def _run_eval(self) -> dict:
        if self.evaluate is None:
            return {}
        live = None
        if self.ema is not None:
            live = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.eval_weights())
        self.model.eval()
        # float32, not bf16 autocast: bf16 scores collapse close candidates into ties, which
        # would move Hit@1 (best step, early stopping, the card) away from the benchmark's
        with torch.no_grad():
            metrics = self.evaluate(self.model)
        self.model.train()
        rec = {"step": self.step, **{k: float(v) for k, v in metrics.items()}}
        self.history["val"].append(rec)
        value = metrics.get(self.metric)
        if value is not None:
            if self.best["metric"] is None or value > self.best["metric"] + 1e-12:
                self.best = {"metric": float(value), "step": self.step, "bad_evals": 0,
                             "metrics": rec}
                self.workdir.mkdir(parents=True, exist_ok=True)
                save_tensors(self.eval_weights(), self.workdir / "best.safetensors")
            else:
                self.best["bad_evals"] += 1
        if live is not None:
            self.model.load_state_dict(live)
        return rec

    def write_history(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_text(self.workdir / "history.json",
                   json.dumps(self.history, indent=1, default=float) + "\n")
        plot_history(self.history, self.workdir / "loss.png")

    # -- training --------------------------------------------------------------------------
    def fit(self, resume: bool = True, stop_after_steps: int | None = None) -> dict:
        """Train to ``max_steps`` (or early stop). ``stop_after_steps`` ends the call after that
        many optimizer steps without finishing (what a kill looks like; for tests)."""
        cfg = self.cfg
        if resume and (ck := self.latest_checkpoint()) is not None:
            self.load_checkpoint(ck)
            self.log(f"[{self.title}] resuming from {ck} (step {self.step} of {cfg.max_steps}; "
                     "same configuration and data)" + (": it had finished, nothing to train"
                                                       if self.finished else ""))
        if self.finished:  # nothing to train: no loader, whose start draws from torch's RNG
            return self._finish()
        accum = max(cfg.grad_accum, 1)
        groups = (getattr(self.dataset, "struct_of_item", None)
                  if cfg.sample_by == "structure" else None)
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed,
                                   start=self.step * accum, groups=groups)
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                            num_workers=cfg.num_workers, pin_memory=self.cuda,
                            persistent_workers=False)
        batches = iter(loader)
        self.model.train()
        bar = progress_bar(total=cfg.max_steps, initial=self.step, desc=f"train {self.title}",
                           unit=" steps", disable=not cfg.progress, mininterval=1)
        window = self._window
        done_here = 0
        try:
            while self.step < cfg.max_steps and not self.stopped_early:
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                total, logs, n_seen = 0.0, {}, 0
                for a in range(accum):
                    m = self.step * accum + a
                    torch.manual_seed(derived_seed(cfg.seed, "micro", m))
                    batch = next(batches)
                    if self.prepare_batch is not None:
                        rng = np.random.default_rng(derived_seed(cfg.seed, "batch", m))
                        batch = self.prepare_batch(batch, rng)
                    batch = _to_device(batch, self.device)
                    with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                        enabled=self.use_bf16):
                        loss, lg = self.loss_fn(batch)
                    (loss / accum).backward()
                    total += float(loss.detach()) / accum
                    n_seen += int(batch["mz"].shape[0])
                    for k, v in lg.items():
                        logs[k] = logs.get(k, 0.0) + float(v) / accum
                if cfg.grad_clip > 0:
                    gnorm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                                 cfg.grad_clip))
                else:
                    gnorm = float("nan")
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self._update_ema()
                self.step += 1
                done_here += 1
                self.spectra_seen += n_seen
                self.train_seconds += time.perf_counter() - t0
                window.append({"loss": total, "grad_norm": gnorm, **logs})
                if self.step % max(cfg.log_every, 1) == 0 or self.step == cfg.max_steps:
                    rec = {"step": self.step, "lr": self.scheduler.get_last_lr()[0],
                           **{k: float(np.mean([w[k] for w in window])) for k in window[0]}}
                    self.history["train"].append(rec)
                    window.clear()
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                bar.update(1)
                if cfg.eval_every and (self.step % cfg.eval_every == 0
                                       or self.step == cfg.max_steps):
                    rec = self._run_eval()
                    if rec:
                        bar.write(f"[{self.title}] step {self.step}: " + ", ".join(
                            f"{k}={v:.4f}" for k, v in rec.items() if k != "step"))
                    if cfg.patience and self.best["bad_evals"] >= cfg.patience:
                        self.stopped_early = True
                    self.write_history()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if cfg.max_train_seconds and self.train_seconds >= cfg.max_train_seconds:
                    bar.write(f"[{self.title}] time budget reached at step {self.step}")
                    break
                if stop_after_steps is not None and done_here >= stop_after_steps:
                    return {"interrupted": True, "step": self.step}
        finally:
            bar.close()
            del batches
        return self._finish()

    def _finish(self) -> dict:
        """After the loop (or on resuming a finished run): the last evaluation, the history,
        a final checkpoint (once), and the best (or EMA) weights in the model."""
        if self.evaluate is not None and (not self.history["val"]
                                          or self.history["val"][-1]["step"] != self.step):
            self._run_eval()
        self.write_history()
        if not self.finished:
            self.finished = True
            if self.cfg.checkpoint_every:  # a rerun (a retried job) finds the run finished
                self.save_checkpoint()
        best_path = self.workdir / "best.safetensors"
        if self.best["metric"] is not None and best_path.exists():
            self.model.load_state_dict(load_tensors(best_path))
        elif self.ema is not None:
            self.model.load_state_dict(self.eval_weights())
        self.model.eval()
        return self.summary()

    def summary(self) -> dict:
        """What a model card records of the run: steps, best evaluation, whether patience or
        the time budget ended it before ``max_steps`` (a budget-cut run depends on the
        machine's speed), and the device and CPU threads it trained with (the thread count
        changes float reductions, so the weights, though not the data order)."""
        budget = self.cfg.max_train_seconds
        return {"steps": self.step, "best_step": self.best["step"],
                "best_metric": self.best["metric"], "best": self.best["metrics"],
                "stopped_early": self.stopped_early,
                "stopped_by_time_budget": bool(budget and self.train_seconds >= budget
                                               and self.step < self.cfg.max_steps),
                "train_seconds": self.train_seconds,
                "spectra_seen": self.spectra_seen,
                "spectra_per_second": self.spectra_seen / max(self.train_seconds, 1e-9),
                "device": str(self.device), "cpu_threads": torch.get_num_threads()}
