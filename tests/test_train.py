"""Training on real MassBank spectra: loss goes down, checkpoints resume exactly, train_model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from msid.models.config import RunConfig
from msid.models.features import FeatureBank, MolFeaturizer
from msid.models.retrieval import build_model
from msid.models.training import (
    HardNegatives,
    RankerBatches,
    RetrievalValidator,
    build_val_candidates,
    train_model,
)
from msid.spectra_dataset import SpectraDataset, collate_spectra
from msid.train import StepBatchSampler, Trainer, lr_factor

RES = __import__("conftest").RESOURCES

TINY_MODEL = {"encoder": {"d_model": 32, "n_layers": 1, "n_heads": 2, "n_freqs": 16},
              "fp_bits": 1024, "mol_hidden": 128, "head_hidden": 128, "emb_dim": 64,
              "max_peaks": 32}


def _massbank_every(d: Path, every: int) -> Path:
    """Every ``every``-th shipped MassBank ESI record, converted and preprocessed with
    structure folds into ``d``/lib.h5."""
    from msid.convert import convert_file
    from msid.preprocess import PreprocessConfig, preprocess_store

    blocks, cur, k = [], [], 0
    with gzip.open(RES / "massbank_esi" / "massbank_esi_msms.mgf.gz", "rt") as fh:
        for line in fh:
            cur.append(line)
            if line.startswith("END IONS"):
                if k % every == 0:
                    blocks.append("".join(cur))
                cur, k = [], k + 1
    (d / "sample.mgf").write_text("\n".join(blocks))
    convert_file(d / "sample.mgf", d / "raw.h5", progress=False)
    preprocess_store(d / "raw.h5", d / "lib.h5",
                     PreprocessConfig(require_structure=True, assign_folds=True), progress=False)
    return d / "lib.h5"


@pytest.fixture(scope="session")
def massbank_small(tmp_path_factory):
    """~1,300 real MassBank ESI spectra (every 50th record, so many structures), converted and
    preprocessed with structure folds; returns the path of the train-fold and val-fold stores."""
    from msid.benchmark import split_folds

    d = tmp_path_factory.mktemp("massbank_small")
    split_folds(_massbank_every(d, 50), {"train": d / "train.h5", "val": d / "val.h5"})
    return d / "train.h5", d / "val.h5"


def _ranker_setup(train_store, pool_index, n_items=300, **train):
    run = RunConfig.from_dict({"family": "ranker", "size": "tiny", "model": TINY_MODEL,
                               "train": {"batch_size": 32, "progress": False,
                                         "warmup_steps": 5, **train}})
    feat = MolFeaturizer(run.model.fp_bits, run.model.fp_radius, run.model.mol_fp)
    ds = SpectraDataset(train_store, max_peaks=32, adducts=["[M+H]+"], in_memory=True,
                        max_items=n_items)
    negs = HardNegatives(ds.structures, pool_index, feat, pool=8, log=lambda *_: None)
    prep = RankerBatches(FeatureBank(ds.structures, feat), negs, 3)
    return run, ds, prep


def test_sampler_and_schedule():
    s = StepBatchSampler(10, 4, seed=3)
    it = iter(s)
    first = [next(it) for _ in range(6)]  # 2 batches per epoch
    assert all(len(b) == 4 for b in first)
    assert len(set(first[0] + first[1])) == 8
    again = iter(StepBatchSampler(10, 4, seed=3, start=3))
    assert next(again) == first[3]
    # by structure: an epoch visits each group once, through one of its members
    groups = np.array([0, 0, 0, 0, 1, 2, 2, 3, 3, 3])
    g = iter(StepBatchSampler(10, 2, seed=1, groups=groups))
    epoch = next(g) + next(g)
    assert sorted(groups[epoch].tolist()) == [0, 1, 2, 3]
    epochs = [next(g) + next(g) for _ in range(30)]
    assert len({i for e in epochs for i in e if groups[i] == 0}) > 1  # members vary
    assert next(iter(StepBatchSampler(10, 2, seed=1, start=4, groups=groups))) == epochs[1][:2]
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)


def test_tiny_ranker_training_loss_goes_down(massbank_small, pool_index, tmp_path):
    train_store, _val_store = massbank_small
    run, ds, prep = _ranker_setup(train_store, pool_index, n_items=400, max_steps=40, lr=2e-3,
                                  eval_every=0, checkpoint_every=0, log_every=1)
    assert len(ds) >= 300 and len(ds.structures) > 50
    torch.manual_seed(0)
    model = build_model(run.model)
    trainer = Trainer(model, run.train, ds, collate_fn=collate_spectra, workdir=tmp_path,
                      prepare_batch=prep, title="ranker")
    summary = trainer.fit()
    losses = [r["loss"] for r in trainer.history["train"]]
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    assert summary["spectra_per_second"] > 0 and summary["steps"] == 40
    assert (tmp_path / "history.json").exists() and (tmp_path / "loss.png").exists()
    # it learned something: the true structure beats same-mass decoys more often than chance
    vq = build_val_candidates(train_store, pool_index, adducts=["[M+H]+"], max_queries=60,
                              max_peaks=32)
    feat = MolFeaturizer(run.model.fp_bits, run.model.fp_radius, run.model.mol_fp)
    metrics = RetrievalValidator(vq, feat)(model)
    sizes = np.array([len(c) for c in vq.candidates])
    assert metrics["hit@1"] > np.mean(1 / sizes)


def test_checkpoint_resume_reproduces_weights(massbank_small, pool_index, tmp_path):
    train_store, _ = massbank_small
    kw = dict(n_items=200, max_steps=12, checkpoint_every=4, eval_every=0, ema_decay=0.9,
              grad_accum=2, batch_size=16)

    def trainer(workdir):
        run, ds, prep = _ranker_setup(train_store, pool_index, **kw)
        torch.manual_seed(123)
        model = build_model(run.model)
        return Trainer(model, run.train, ds, collate_fn=collate_spectra, workdir=workdir,
                       prepare_batch=prep, title="ranker")

    a = trainer(tmp_path / "a")
    a.fit()
    b = trainer(tmp_path / "b")
    out = b.fit(stop_after_steps=6)  # "killed" after step 6; last checkpoint is step 4
    assert out["interrupted"] and b.latest_checkpoint().name == "step-00000004"
    c = trainer(tmp_path / "b")  # a fresh process would do exactly this
    c.fit()
    assert c.step == a.step == 12
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
    for k in a.ema:
        assert torch.equal(a.ema[k], c.ema[k]), k
    la = [r["loss"] for r in a.history["train"]]
    lc = [r["loss"] for r in c.history["train"]]
    assert la == lc
    final = c.latest_checkpoint()  # the finished run's own, written beside step 12's, not over
    assert final.name == "step-00000012-final" and [p.name for p in final.parent.glob("step-*")
                                                    ] == [final.name]
    state = torch.load(final / "optim.pt", weights_only=True)
    assert "optimizer" in state
    # another run (here: another caller key, as a changed model config or data would give)
    # never resumes those checkpoints: they move aside and training starts at step 0
    logs: list[str] = []
    run, ds, prep = _ranker_setup(train_store, pool_index, **kw)
    d = Trainer(build_model(run.model), run.train, ds, collate_fn=collate_spectra,
                workdir=tmp_path / "b", prepare_batch=prep, title="ranker",
                run_key={"data": "other"}, log=logs.append)
    assert d.latest_checkpoint() is None and (tmp_path / "b" / "ckpt.stale").is_dir()
    assert any("another configuration" in m for m in logs)
    # a finished run (12 steps, the last checkpoint at 12 = 3 x 4) and one whose end is no
    # checkpoint step: a retried job resumes either as finished and trains nothing
    for steps in (12, 10):
        run, ds, prep = _ranker_setup(train_store, pool_index, **{**kw, "max_steps": steps})
        e = Trainer(build_model(run.model), run.train, ds, collate_fn=collate_spectra,
                    workdir=tmp_path / f"fin{steps}", prepare_batch=prep, title="ranker")
        e.fit()
        rng = torch.get_rng_state()  # where the run leaves torch's generator for its caller
        said: list[str] = []
        f = Trainer(build_model(run.model), run.train, ds, collate_fn=collate_spectra,
                    workdir=tmp_path / f"fin{steps}", prepare_batch=prep, title="ranker",
                    log=said.append)
        assert f.fit()["steps"] == steps and f.history == e.history
        assert any("it had finished, nothing to train" in m for m in said), said
        # ... and the resumed one leaves it there too (what NEIMS' soft targets draw next)
        assert torch.equal(torch.get_rng_state(), rng)
        for k, v in e.model.state_dict().items():
            assert torch.equal(v, f.model.state_dict()[k]), k


def test_train_model_writes_model_card_and_early_stops(massbank_small, pool_index, tmp_path):
    import msid.models.methods  # noqa: F401
    from msid.methods import MethodResources, make_method
    from msid.modelfile import load_model

    train_store, val_store = massbank_small
    out = tmp_path / "models" / "reconstructor.safetensors"
    cfg = {"size": "tiny", "model": TINY_MODEL,
           "train": {"max_steps": 12, "eval_every": 3, "checkpoint_every": 6, "batch_size": 32,
                     "patience": 1, "warmup_steps": 2, "progress": False,
                     "max_train_spectra": 300, "val_max_queries": 40, "lr": 0.0,
                     "val_min_candidates": 2}}
    metrics = train_model("reconstructor", train_store, val_store, pool_index, cfg, out,
                          log=lambda *_: None)
    # lr 0: no improvement after the first evaluation -> stopped after patience=1
    assert metrics["stopped_early"] and metrics["steps"] == 6 and metrics["best_step"] == 3
    assert 0 <= metrics["val"]["hit@1"] <= 1 and "fp_f1" in metrics["val"]
    assert metrics["train_spectra_per_second"] > 0
    _model, card = load_model(out, family="reconstructor")
    assert card["training"]["n_train_spectra"] == 300
    assert card["metrics"]["val"]["hit@1"] == metrics["val"]["hit@1"]
    assert card["config"]["fp_bits"] == 1024 and card["weights_sha256"]
    hist = json.loads(out.with_suffix(".history.json").read_text())
    assert [r["step"] for r in hist["val"]] == [3, 6]
    assert out.with_suffix(".loss.png").stat().st_size > 1000
    m = make_method("reconstructor", MethodResources(model_path=str(out)))
    assert m.model.cfg.fp_bits == 1024
    # the same run again resumes its finished checkpoint (no new steps); a changed model
    # config never loads those weights: the checkpoints move aside and training restarts
    logs: list[str] = []
    again = train_model("reconstructor", train_store, val_store, pool_index, cfg, out,
                        log=logs.append)
    assert again["steps"] == 6 and not any("another configuration" in m for m in logs)
    changed = {**cfg, "model": {**TINY_MODEL, "fp_bits": 512}}
    other = train_model("reconstructor", train_store, val_store, pool_index, changed, out,
                        log=logs.append)
    assert any("another configuration" in m for m in logs)
    assert other["steps"] == 6 and load_model(out)[1]["config"]["fp_bits"] == 512
    assert (out.with_suffix(".train") / "ckpt.stale").is_dir()
    # the same config on other data (the training store rewritten in place, as a changed
    # library or preprocessing gives) never resumes the old weights either
    import shutil

    from msid.store import SpectrumStore, subset_store

    data = tmp_path / "train.h5"
    shutil.copy(train_store, data)
    train_model("reconstructor", data, val_store, pool_index, changed, out, log=logs.append)
    with SpectrumStore(train_store) as st:
        n = len(st)
    subset_store(train_store, data, list(range(1, n)))
    logs.clear()
    train_model("reconstructor", data, val_store, pool_index, changed, out, log=logs.append)
    assert any("another configuration" in m for m in logs)


def test_hard_negatives_from_training_structures(massbank_small, pool_index):
    from msid.chem.structures import parse_structure

    train_store, _ = massbank_small
    feat = MolFeaturizer(256, 2, "count")
    ds = SpectraDataset(train_store, max_peaks=32, adducts=["[M+H]+"], in_memory=True)
    mass = np.array([parse_structure(s).exact_mass for s in ds.structures])
    train = HardNegatives(ds.structures, None, feat, pool=4, source="train",
                          log=lambda *_: None)
    spans = []
    for i, lst in enumerate(train.lists):
        assert len(lst) == 4
        structs = train.neg_struct_arr[lst]
        assert (structs >= 0).all() and i not in structs  # other training structures only
        spans.append(np.abs(mass[structs] - mass[i]).max())
    # the nearest in mass: closer than four random training structures would be
    rand = np.random.default_rng(0).choice(len(mass), (len(mass), 4))
    assert np.median(spans) < 0.2 * np.median(np.abs(mass[rand] - mass[:, None]).max(1))
    both = HardNegatives(ds.structures, pool_index, feat, pool=4, source="both",
                         log=lambda *_: None)
    n_train = [int((both.neg_struct_arr[lst] >= 0).sum()) for lst in both.lists]
    assert max(n_train) <= 4 and np.mean(n_train) >= 1.5  # about half from each source
    # only allowed (train-fold) molecules become negatives: here, InChIKeys before "M"
    some = HardNegatives(ds.structures, pool_index, feat, pool=4, source="index",
                         log=lambda *_: None, allowed=lambda ik: ik < "M")
    used = {some.bank.smiles[j] for lst in some.lists for j in lst}
    assert used and all(parse_structure(s).inchikey14 < "M" for s in used)
    plain = HardNegatives(ds.structures, pool_index, feat, pool=4, source="index",
                          log=lambda *_: None)
    kept = [sum(parse_structure(plain.bank.smiles[j]).inchikey14 < "M" for j in lst)
            for lst in plain.lists]
    # more are fetched to make up for those left out
    assert all(len(a) >= k for a, k in zip(some.lists, kept, strict=True))
    assert sum(len(a) for a in some.lists) > sum(kept)


def test_bench_models_prints_training_and_ranking_throughput(massbank_small, pool_index,
                                                              tmp_path):
    """The throughput benchmark's model part on real spectra: every family trains and ranks."""
    from msid.bench import bench_models
    train_store, _ = massbank_small  # lib.h5 beside it holds every fold, like the bench's store
    out = bench_models(str(train_store.parent / "lib.h5"), pool_index, tmp_path, n_queries=20,
                       train_steps=3, families=["ranker", "fp_ffn"])
    assert out["train_spectra"] > 0
    for name in ("random", "ranker", "fp_ffn"):
        assert out[name]["rank_queries_per_s"] > 0 and out[name]["queries"] > 0
    for fam in ("ranker", "fp_ffn"):
        assert out[fam]["train_steps"] == 3 and out[fam]["train_spectra_per_s"] > 0


@pytest.mark.parametrize("family", ["ranker", "reconstructor"])
def test_ensemble_trains_members_and_scores_their_mean(family, massbank_small, pool_index,
                                                       tmp_path):
    from msid.modelfile import load_model
    from msid.spectra_dataset import collate_spectra as collate

    train_store, val_store = massbank_small
    out = tmp_path / f"{family}.safetensors"
    cfg = {"size": "tiny", "model": TINY_MODEL,
           "train": {"max_steps": 4, "eval_every": 2, "checkpoint_every": 0, "batch_size": 16,
                     "warmup_steps": 1, "progress": False, "max_train_spectra": 200,
                     "val_max_queries": 20},
           "members": [{}, {"model": {"encoder": {"adduct_embedding": True}},
                            "train": {"adducts": [], "seed": 1, "val_max_queries": 5}}]}
    if family == "reconstructor":  # validated like the shipped preset (the hard setting)
        cfg["train"]["val_min_candidates"] = 2
    metrics = train_model(family, train_store, val_store, pool_index, cfg, out,
                          log=lambda *_: None)
    assert len(metrics["members"]) == 2 and metrics["steps"] == 8
    assert 0 <= metrics["val"]["hit@1"] <= 1
    ens, card = load_model(out, family=family)
    assert len(card["config"]["members"]) == 2 and len(card["training"]["members"]) == 2
    assert card["config"]["members"][1]["encoder"]["adduct_embedding"] is True
    # members share the ensemble's validation queries, and their run configs say so (a member's
    # own val_max_queries would otherwise be recorded but not used)
    for i in range(2):
        run_cfg = json.loads((tmp_path / f"{family}.train" / f"member-{i}" / "run.json")
                             .read_text())
        assert run_cfg["train"]["val_max_queries"] == 20
    singles = [load_model(tmp_path / f"{family}.train" / f"member-{i}.safetensors")[0]
               for i in range(2)]
    ds = SpectraDataset(val_store, max_peaks=ens.cfg.max_peaks, max_items=8)
    batch = collate([ds[i] for i in range(len(ds))])
    feats = torch.from_numpy(MolFeaturizer(TINY_MODEL["fp_bits"], 2, ens.mol_input)(
        ds.structures))
    with torch.no_grad():
        got = ens.encode_spectra(batch) @ ens.encode_molecules(feats).T
        want = sum(m.encode_spectra(batch) @ m.encode_molecules(feats).T for m in singles) / 2
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_baselines_have_no_ensembles():
    from msid.models.config import ModelConfig

    member = ModelConfig(family="fp_ffn").to_dict()
    with pytest.raises(ValueError, match="ranker and reconstructor families"):
        ModelConfig.from_dict({"family": "fp_ffn", "members": [member, member]})


def test_validator_counts_ties_at_chance(massbank_small, pool_index):
    """The training validator: a model whose spectrum embedding ignores the spectrum and whose
    molecule embedding is constant ties every candidate, and scores chance-level Hit@1."""
    import torch

    q = build_val_candidates(massbank_small[1], pool_index, adducts=["[M+H]+"],
                             max_queries=40, max_peaks=32)
    assert len(q.items) > 10

    class Constant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def encode_spectra(self, batch):
            return torch.ones(batch["mz"].shape[0], 4)

        def encode_molecules(self, feats):
            return torch.ones(feats.shape[0], 4)

    val = RetrievalValidator(q, MolFeaturizer(256, 2, "bits"))(Constant())
    chance = np.mean([1.0 / len(c) if t >= 0 else 0.0
                      for c, t in zip(q.candidates, q.true_index, strict=True)])
    assert val["hit@1"] == pytest.approx(chance)  # not 1 (ties to the truth), not 0
    assert 0 < val["hit@1"] < 1


@pytest.fixture(scope="session")
def massbank_medium(tmp_path_factory):
    """~10,800 real MassBank ESI spectra (every 6th record), preprocessed with structure folds:
    (train-fold store, held-out store of the val and test folds)."""
    from msid.benchmark import split_folds
    from msid.store import SpectrumStore, subset_store

    d = tmp_path_factory.mktemp("massbank_medium")
    lib = _massbank_every(d, 6)
    split_folds(lib, {"train": d / "train.h5"})
    with SpectrumStore(lib) as st:
        held = np.flatnonzero(st.metadata["fold"].isin(["val", "test"]).to_numpy()).tolist()
    subset_store(lib, d / "held_out.h5", held)
    return d / "train.h5", d / "held_out.h5"


# DeepSets reads m/z through Fourier features (msid.models.config): with m/z / 1000 alone its
# paired difference after 300 steps was 0.0015 [-0.001, 0.004]; with raw m/z it predicted a
# constant.
@pytest.mark.parametrize("family", ["fp_ffn", "deepsets"])
def test_baseline_reads_the_spectrum(family, massbank_medium, tmp_path):
    """The shipped baselines' recipe (preset: MassSpecGym's architecture and optimiser), trained
    for 300 steps on real [M+H]+ spectra, predicts the fingerprints of held-out structures
    (folds by InChIKey first block) better from their own spectra than from the peaks of
    another query: a paired bootstrap CI of the difference in cosine to the true fingerprint
    lies above zero."""
    from msid.evaluate import bootstrap_ci
    from msid.models.training import featurizers

    train_store, held_store = massbank_medium
    run = RunConfig.from_dict({"family": family, "size": "tiny",
                               "train": {"batch_size": 64, "max_steps": 300, "progress": False,
                                         "num_threads": 1, "eval_every": 0,
                                         "checkpoint_every": 0}})
    bits, _ = featurizers(run.model)
    ds = SpectraDataset(train_store, max_peaks=run.model.max_peaks, adducts=["[M+H]+"],
                        fingerprints=bits, in_memory=True)
    assert len(ds) > 2000
    torch.manual_seed(0)
    model = build_model(run.model)
    Trainer(model, run.train, ds, collate_fn=collate_spectra, workdir=tmp_path).fit()
    held = SpectraDataset(held_store, max_peaks=run.model.max_peaks, adducts=["[M+H]+"],
                          fingerprints=bits, in_memory=True)
    items = [held[i] for i in range(len(held))]
    assert len(items) > 500
    # control: every query gets the peaks of a query of another structure
    donor = np.roll(np.arange(len(items)), len(items) // 2)
    assert all(items[i]["struct_idx"] != items[j]["struct_idx"] for i, j in enumerate(donor)
               if i % 50 == 0)
    shuffled = [{**it, "mz": items[j]["mz"], "intensity": items[j]["intensity"]}
                for it, j in zip(items, donor, strict=True)]
    model.eval()
    with torch.no_grad():
        true = torch.nn.functional.normalize(collate_spectra(items)["fp"].float(), dim=-1)
        real = (model.encode_spectra(collate_spectra(items)) * true).sum(-1).numpy()
        blind = (model.encode_spectra(collate_spectra(shuffled)) * true).sum(-1).numpy()
    diff = bootstrap_ci(real - blind, n_boot=1000)
    assert diff.ci_low > 0, (family, real.mean(), blind.mean(), diff)


def test_a_gpu_torch_cannot_use_is_said_not_silently_skipped(monkeypatch):
    """A job given a GPU (CUDA_VISIBLE_DEVICES) by a scheduler, whose torch has no CUDA,
    trains on the CPU and says why; without a GPU allocation nothing is said."""
    import warnings

    from msid.train import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.warns(RuntimeWarning, match="CUDA_VISIBLE_DEVICES"):
        assert pick_device().type in ("cpu", "mps")
    for no_gpu in ("", "-1", "NoDevFiles"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", no_gpu)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert pick_device().type in ("cpu", "mps")
