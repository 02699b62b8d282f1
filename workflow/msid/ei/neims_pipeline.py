"""One run of NEIMS v2: teacher, MLP baseline and distilled student trained on the same folds,
then scored together on the test fold (the leaderboard rows come from this one run)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from msid.atomic import write_text
from msid.digest import files_digest
from msid.ei.neims import NeimsConfig, mol_graph
from msid.ei.neims_eval import TestSet, decoys_by_mass, dense_rows, score_method
from msid.ei.neims_train import (
    NeimsDataset,
    NeimsModel,
    fit,
    predict_sqrt,
    save_neims,
    store_items,
)
from msid.ei.nominal import ABOVE_ION_SHARE
from msid.folds import fold_of
from msid.models.config import TrainConfig, config_from_dict, settings
from msid.train import torch_threads


@dataclass
class NeimsRunConfig:
    """Settings of one training + evaluation run (``ei_prediction:`` in the config)."""

    max_mz: int = 500
    teacher: dict = field(default_factory=lambda: {"hidden": 512, "gnn_hidden": 128,
                                                   "gnn_layers": 4, "n_layers": 2})
    student: dict = field(default_factory=lambda: {"hidden": 512, "n_layers": 2,
                                                   "n_experts": 4})
    mlp: dict = field(default_factory=lambda: {"hidden": 512, "n_layers": 2})
    train: dict = field(default_factory=lambda: {"max_steps": 1500, "batch_size": 64,
                                                 "lr": 1e-3, "eval_every": 250,
                                                 "warmup_steps": 100})
    max_train_seconds: dict = field(default_factory=dict)  # per kind; 0/absent: no limit
    student_steps_factor: float = 1.5  # the student sees more batches (distillation extras)
    distill_extra: int = 5000  # train-fold pool molecules with teacher soft targets only
    #: soft targets: the teacher's MC-dropout mean, or the mean of the teacher and the MLP
    #: baseline on the sqrt scale (ensemble distillation; their disagreement joins the std)
    distill_from: str = "teacher"
    student_ablation: bool = True  # also train the other student, for its leaderboard row
    #: score the predictions with the molecular ion's isotope peaks (msid.ei.predict), as
    #: msid predicts; the student also gets a row without them
    isotope_peaks: bool = True
    #: spectra with a larger share of their intensity above the structure's molecular ion
    #: (M + 8, past its isotope peaks) stay out of training and test: spectra of derivatives
    #: (TMS, methoximes) annotated with the parent compound, or of another structure; NEIMS
    #: predicts nothing above M (1.0 keeps every spectrum)
    max_above_ion: float = ABOVE_ION_SHARE
    mc_samples: int = 8
    decoys_per_mass: int = 20
    num_threads: int = 1
    seed: int = 0
    licence: str = ""
    attribution: str = ""  # whom the models credit (the training records' MassBank contributors)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.distill_from not in DISTILL_FROM:
            raise ValueError(f"distill_from must be one of {DISTILL_FROM}, "
                             f"not '{self.distill_from}'")
        # each network's and the training's settings: a mistyped key is an error, not a
        # default that trains silently
        for kind in ("teacher", "student", "mlp", "train"):
            try:
                if kind == "train":
                    config_from_dict(TrainConfig, self.train)
                else:
                    config_from_dict(NeimsConfig, {"kind": kind, "max_mz": self.max_mz,
                                                   **settings(NeimsConfig, getattr(self, kind))})
            except ValueError as e:
                raise ValueError(f"{kind}: {e}") from None

    @classmethod
    def from_dict(cls, d: dict | None) -> NeimsRunConfig:
        """Settings from a config mapping; an unknown key at any level is an error naming it."""
        return config_from_dict(cls, d)


DISTILL_FROM = ("teacher", "ensemble")


def soft_targets(teacher: NeimsModel, mlp: NeimsModel, smiles: list[str], mc_samples: int
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Soft targets (mean, std; sqrt scale) per :data:`DISTILL_FROM` source: the teacher's
    MC-dropout mean and std; the teacher-MLP ensemble's mean, with half their difference
    added to the std in quadrature (where they disagree the student trusts them less)."""
    t_mean, t_std = predict_sqrt(teacher, smiles, mc_samples=mc_samples)
    m_mean, _ = predict_sqrt(mlp, smiles)
    half = (t_mean - m_mean) / 2
    return {"teacher": (t_mean, t_std),
            "ensemble": (t_mean - half, np.sqrt(np.square(t_std) + np.square(half)))}


def read_pool(path: str | os.PathLike, limit: int = 0) -> list[str]:
    """SMILES of a molecule file (TSV/CSV with a smiles column, gz allowed)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt") as fh:
        header = fh.readline().rstrip("\n")
        sep = "\t" if "\t" in header else ","
        cols = [c.lower() for c in header.split(sep)]
        j = cols.index("smiles")
        for line in fh:
            parts = line.rstrip("\n").split(sep)
            if len(parts) > j and parts[j]:
                out.append(parts[j])
                if limit and len(out) >= limit:
                    break
    return out


def _key14(smiles: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToInchiKey(mol)[:14] if mol is not None else ""


def speed(model: NeimsModel, smiles: list[str], batch_size: int = 512) -> float:
    """Predictions per second from SMILES (parse and featurisation included, the prediction
    path of :mod:`msid.ei.predict`) on this process's threads."""
    from msid.ei.predict import predict_smiles

    predict_smiles(model, smiles[:batch_size], batch_size)  # warm-up
    t0 = time.perf_counter()
    predict_smiles(model, smiles, batch_size)
    return len(smiles) / (time.perf_counter() - t0)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's weights (names, shapes, values), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def evaluate(store: str | os.PathLike, tr, te, pool_smiles: list[str],
             models: dict[str, NeimsModel], labels: dict[str, str], cfg: NeimsRunConfig
             ) -> tuple[list[dict], int]:
    """(leaderboard rows, decoys in each library) of ``models`` (kind -> model) on the test
    fold ``te``: each scored on its own library (measured ``tr`` spectra + its predictions of
    the test structures and of pool decoys of their nominal masses). With
    ``cfg.isotope_peaks`` the predictions carry the molecular ion's isotope peaks (as every
    msid prediction does) and the student gets a second row without them (the ablation).
    Each row names its ``kind``."""
    from rdkit import Chem

    from msid.chem.isotopes import molecule_formula
    from msid.ei.predict import add_isotope_peaks

    test = TestSet(te.smiles, [k[:14] for k in te.inchikey],
                   np.array([mol_graph(s).mass for s in te.smiles]),
                   dense_rows(store, te.rows, cfg.max_mz))
    train_lib = dense_rows(store, tr.rows, cfg.max_mz)
    train_keys = [k[:14] for k in tr.inchikey]
    train_mass = np.array([mol_graph(s).mass for s in tr.smiles])
    masses = {int(m) for m in test.mass}
    pool_mass = np.array([(g.mass if (g := mol_graph(s)) is not None and int(g.mass) in masses
                           else -1) for s in pool_smiles])
    decoys = decoys_by_mass(pool_smiles, pool_mass, masses, set(te.smiles),
                            cfg.decoys_per_mass, cfg.seed)
    decoy_keys = [_key14(s) for s in decoys]
    keep = [i for i, k in enumerate(decoy_keys) if k and k not in set(test.key14)]
    decoys = [decoys[i] for i in keep]
    decoy_keys = [decoy_keys[i] for i in keep]
    decoy_mass = np.array([mol_graph(s).mass for s in decoys])
    bench_smiles = (decoys + te.smiles)[:1000]
    formulas = {s: molecule_formula(Chem.MolFromSmiles(s)) for s in te.smiles + decoys}
    rows = []
    variants = [(k, cfg.isotope_peaks) for k in models]
    if cfg.isotope_peaks and "student" in models:
        variants.append(("student", False))
    for kind, isotopes in variants:
        model = models[kind]

        def spectra(smiles: list[str], model: NeimsModel = model,
                    isotopes: bool = isotopes) -> np.ndarray:
            p = np.square(predict_sqrt(model, smiles)[0])
            p = p / np.maximum(p.max(1, keepdims=True), 1e-12)
            return add_isotope_peaks(p, [formulas[s] for s in smiles]) if isotopes else p

        label = labels[kind] + ("" if isotopes or not cfg.isotope_peaks
                                else " (ablation: no isotope peaks above M)")
        row = score_method(label, spectra(te.smiles), test, spectra(decoys), decoy_mass,
                           decoy_keys, train_lib, train_keys, train_mass, seed=cfg.seed)
        row["predictions_per_s"] = speed(model, bench_smiles)
        row["isotope_peaks"] = isotopes
        row["kind"] = kind
        rows.append(row)
    return rows, len(decoys)


def run(store: str | os.PathLike, out_dir: str | os.PathLike, *, pool: str | os.PathLike,
        bde_cache: str | os.PathLike | None = None, cfg: NeimsRunConfig | None = None,
        names: dict[str, str] | None = None, run_name: str = "neims_run.json",
        log=print) -> list[dict]:
    """Train teacher, MLP and student on ``store``'s train fold (val fold for model selection),
    write ``<out_dir>/<name>.safetensors`` (+ cards) and return leaderboard rows."""
    from msid.ei.bde import read_cache

    cfg = cfg or NeimsRunConfig()
    names = names or {"teacher": "neims_teacher", "student": "neims_student",
                      "mlp": "neims_mlp"}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(torch_threads(cfg.num_threads), 1))
    tr, va, te = (store_items(store, (f,), cfg.max_mz, max_above_ion=cfg.max_above_ion)
                  for f in ("train", "val", "test"))
    above_ion = {"train": tr.above_ion, "val": va.above_ion, "test": te.above_ion}
    log(f"EI spectra: train {len(tr.rows)}, val {len(va.rows)}, test {len(te.rows)}; left out "
        f"with more than {cfg.max_above_ion:.0%} of their intensity above the structure's "
        f"molecular ion (a derivative's spectrum, or another structure's): {above_ion}")
    bde, bad = read_cache(bde_cache) if bde_cache else ({}, {})
    n_bde = sum(k in bde for k in set(tr.inchikey))
    log(f"BDE targets for {n_bde} of {len(set(tr.inchikey))} training molecules "
        f"({len(bad)} unhandled by ALFABET)")
    tbase = {"seed": cfg.seed, "num_threads": cfg.num_threads, "progress": cfg.progress,
             # a killed, timed-out or requeued job resumes each model from its last checkpoint
             # (out_dir/work-<kind>/ckpt) and skips the models it finished
             "checkpoint_every": 500, "val_max_queries": 500, **cfg.train}
    mk = {k: NeimsConfig.from_dict({"kind": k, "max_mz": cfg.max_mz, **getattr(cfg, k)})
          for k in ("teacher", "student", "mlp")}
    fits = {}
    timings = {}
    data_key = {**files_digest(store, pool, bde_cache), "max_mz": cfg.max_mz}
    for kind in ("teacher", "mlp"):
        ds = NeimsDataset(tr, mk[kind], bde=bde)
        dv = NeimsDataset(va, mk[kind])
        tk = {**tbase, "max_train_seconds": float(cfg.max_train_seconds.get(kind, 0))}
        fits[kind] = fit(mk[kind], TrainConfig(**tk), ds, dv, out_dir / f"work-{kind}",
                         names[kind], data_key=data_key)
        timings[kind] = fits[kind].seconds
        log(f"{kind}: {fits[kind].summary['steps']} steps in {fits[kind].seconds:.0f} s, "
            f"val cosine {fits[kind].summary.get('best_metric')}")
    # distillation: teacher MC-dropout soft targets on the training molecules + train-fold
    # pool molecules (never a val/test structure)
    pool_smiles = read_pool(pool)
    extra = []
    if cfg.distill_extra:
        rng = np.random.default_rng(cfg.seed)
        for i in rng.permutation(len(pool_smiles)):
            s = pool_smiles[i]
            g = mol_graph(s)
            if g is None or g.mass > cfg.max_mz or fold_of(_key14(s)) != "train":
                continue
            extra.append(s)
            if len(extra) >= cfg.distill_extra:
                break
    t0 = time.perf_counter()
    targets = soft_targets(fits["teacher"].model, fits["mlp"].model, tr.smiles + extra,
                           cfg.mc_samples)
    timings["teacher_soft_targets"] = time.perf_counter() - t0
    dv = NeimsDataset(va, mk["student"])
    scfg = {**tbase, "max_steps": int(tbase["max_steps"] * cfg.student_steps_factor),
            "max_train_seconds": float(cfg.max_train_seconds.get("student", 0))}
    other = next(x for x in DISTILL_FROM if x != cfg.distill_from)
    students = {"student": cfg.distill_from}
    if cfg.student_ablation:
        students["student_ablation"] = other
    for kind, source in students.items():
        soft, soft_std = targets[source]
        ds = NeimsDataset(tr, mk["student"], extra_smiles=extra, soft=soft, soft_std=soft_std)
        fits[kind] = fit(mk["student"], TrainConfig(**scfg), ds, dv, out_dir / f"work-{kind}",
                         names["student"] if kind == "student" else
                         f"{names['student']}_from_{source}",
                         data_key={**data_key, "distilled_from": source,
                                   "distill_extra": len(extra), "mc_samples": cfg.mc_samples,
                                   # the soft targets' sources: a student distilled from
                                   # another teacher or MLP is never resumed
                                   "teacher": weights_digest(fits["teacher"].model),
                                   "mlp": weights_digest(fits["mlp"].model)})
        timings[kind] = fits[kind].seconds
        log(f"{kind} (distilled from the {source}): {fits[kind].summary['steps']} steps in "
            f"{timings[kind]:.0f} s (+{timings['teacher_soft_targets']:.0f} s soft targets on "
            f"{len(soft)} molecules)")
    # evaluation on the test fold, one library per method
    kinds = [k for k in ("teacher", "student", "mlp", "student_ablation") if k in fits]
    source_words = {"teacher": "the teacher alone", "ensemble": "the teacher-MLP ensemble"}
    labels = {**names, "student_ablation": f"{names['student']} (ablation: distilled from "
                                            f"{source_words[other]})"}
    rows, n_decoys = evaluate(store, tr, te, pool_smiles,
                              {k: fits[k].model for k in kinds}, labels, cfg)
    for row in rows:
        kind = row["kind"]
        row["train_seconds"] = timings[kind]
        if kind == "student_ablation" or row["isotope_peaks"] != cfg.isotope_peaks:
            continue  # leaderboard rows, not shipped models
        model = fits[kind].model
        metrics = {k: row[k] for k in ("cosine", "weighted_cosine", "recall@1", "recall@10")}
        training = {"store": str(store), "summary": fits[kind].summary,
                    "n_train_spectra": len(tr.rows), "max_above_ion": cfg.max_above_ion,
                    "train_spectra_left_out_above_ion": tr.above_ion,
                    "n_distill_extra": len(extra)
                    if kind == "student" else 0, "train_config": scfg if kind == "student"
                    else tbase, "seconds": timings[kind],
                    **({"distilled_from": cfg.distill_from} if kind == "student" else {})}
        save_neims(model, out_dir / f"{names[kind]}.safetensors", training=training,
                   metrics=metrics, licence=cfg.licence, attribution=cfg.attribution)
        log(f"{names[kind]}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            + f", {row['predictions_per_s']:.0f} predictions/s")
    write_text(out_dir / run_name, json.dumps(
        {"config": asdict(cfg), "rows": rows, "timings": timings, "n_decoys": n_decoys,
         "n_bde_molecules": n_bde, "n_spectra": {"train": len(tr.rows), "val": len(va.rows),
                                                 "test": len(te.rows)},
         "left_out_above_ion": above_ion}, indent=1, default=float) + "\n")
    return rows


def _row_kind(method: str) -> str:
    """The model kind of a run's leaderboard row ('' for an ablation student: not shipped)."""
    if "ablation" in method:
        return ""
    return next((k for k in ("teacher", "student", "mlp") if f"_{k}" in method), "")


#: what a rescore says changed, unless its caller says
RESCORE_WHY = ("scored with the current evaluation (msid.ei.neims_eval: the molecular ion's "
               "isotope peaks, recall@k over structures, CIs resampling test structures); the "
               "student without isotope peaks is the ablation row")


def rescore(run_json: str | os.PathLike, store: str | os.PathLike, pool: str | os.PathLike,
            out: str | os.PathLike, log=print, why: str = RESCORE_WHY) -> list[dict]:
    """Score a finished run's models again, without training: its config, folds and decoys,
    the current evaluation (:func:`evaluate`; the molecular ion's isotope peaks). The models
    are read from beside ``run_json`` under their rows' names; training times are kept, the
    rows replaced, and ``rescored`` says what changed."""
    from msid.ei.neims_train import load_neims

    run_json = Path(run_json)
    old = json.loads(run_json.read_text())
    # a run from before max_above_ion was scored on every spectrum: so it is scored again
    cfg = NeimsRunConfig.from_dict({"max_above_ion": 1.0, **old["config"], "progress": False})
    names = {k: r["method"] for r in old["rows"] if (k := _row_kind(r["method"]))}
    models = {k: load_neims(run_json.parent / f"{n}.safetensors")[0] for k, n in names.items()}
    torch.set_num_threads(max(torch_threads(cfg.num_threads), 1))
    tr, te = (store_items(store, (f,), cfg.max_mz, max_above_ion=cfg.max_above_ion)
              for f in ("train", "test"))
    rows, n_decoys = evaluate(store, tr, te, read_pool(pool), models, names, cfg)
    for row in rows:
        row["train_seconds"] = old["timings"].get(row["kind"], float("nan"))
    log("\n".join(f"{r['method']}: cosine {r['cosine']:.3f}, weighted cosine "
                   f"{r['weighted_cosine']:.3f}, recall@1 {r['recall@1']:.3f}" for r in rows))
    write_text(out, json.dumps(
        {**old, "config": asdict(cfg), "rows": rows, "n_decoys": n_decoys,
         "rescored": {"from": run_json.name, "store": files_digest(store, pool),
                      "why": why}}, indent=1, default=float) + "\n")
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m msid.ei.neims_pipeline",
                                 description="score a finished NEIMS run's models again")
    ap.add_argument("run_json")
    ap.add_argument("--store", required=True, help="the run's EI spectrum store")
    ap.add_argument("--pool", required=True, help="the run's decoy pool")
    ap.add_argument("--out", required=True)
    ap.add_argument("--why", default=RESCORE_WHY, help="what changed (kept in the run file)")
    a = ap.parse_args()
    rescore(a.run_json, a.store, a.pool, a.out, why=a.why)
