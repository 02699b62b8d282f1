"""Retrieval models: encoder, losses, model files, Method wrappers, dataset (real spectra)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msid.models.config import EncoderConfig, ModelConfig, RunConfig
from msid.models.encoder import FourierFeatures, SpectrumEncoder
from msid.models.retrieval import build_model, fingerprint_f1, focal_loss, info_nce
from msid.spectra_dataset import SpectraDataset, collate_spectra, spectrum_item, top_peaks


def _tiny(family: str, **model) -> ModelConfig:
    over = {"encoder": {"d_model": 32, "n_layers": 1, "n_heads": 2, "n_freqs": 16},
            "fp_bits": 512, "mol_hidden": 64, "head_hidden": 64, "emb_dim": 32,
            "deepsets_hidden": 32, "max_peaks": 32, **model}
    return RunConfig.from_dict({"family": family, "size": "tiny", "model": over}).model


@pytest.fixture(scope="module")
def pest_items(pesticides_store):
    ds = SpectraDataset(pesticides_store, max_peaks=32)
    return ds, [ds[i] for i in range(len(ds))]


def test_dataset_items_and_collate(pesticides_store):
    from msid.models.features import MolFeaturizer
    from msid.store import SpectrumStore

    fp = MolFeaturizer(512, 2, "bits")
    ds = SpectraDataset(pesticides_store, max_peaks=5, fingerprints=fp)
    with SpectrumStore(pesticides_store) as st:
        md = st.metadata
        assert len(ds) == int((md["smiles"] != "").sum())
        it = ds[0]
        mz, inten = st.peaks(int(ds.rows[0]))
    assert len(it["mz"]) == min(5, len(mz)) and np.all(np.diff(it["mz"]) > 0)
    kept = np.isin(mz, it["mz"])
    assert inten[kept].min() >= inten[~kept].max(initial=0)  # the most intense peaks
    assert it["intensity"].max() == pytest.approx(1.0)
    assert it["fp"].shape == (512,) and set(np.unique(it["fp"])) <= {0.0, 1.0}
    assert ds.structures[it["struct_idx"]] and len(ds.structures) <= len(ds)
    b = collate_spectra([ds[i] for i in range(4)])
    n = max(len(ds[i]["mz"]) for i in range(4))
    assert b["mz"].shape == (4, n) and b["mz"].dtype == torch.float64
    assert b["pad_mask"].sum() == 4 * n - sum(len(ds[i]["mz"]) for i in range(4))
    assert b["fp"].shape == (4, 512) and b["struct_idx"].shape == (4,)
    only = SpectraDataset(pesticides_store, adducts=["[M-H]-"])
    assert len(only) < len(ds)
    assert SpectraDataset(pesticides_store, adducts=["[M+K]+"]).rows.size == 0
    mz2, _ = top_peaks(np.array([1.0, 2, 3]), np.array([0.5, 0.5, 1.0]), 2)
    assert mz2.tolist() == [1.0, 3.0]  # ties: lower m/z first


@pytest.mark.parametrize("binned_width", [0.0, 0.1])
def test_encoder_shapes_and_padding_invariance(pest_items, binned_width):
    torch.manual_seed(0)
    enc = SpectrumEncoder(EncoderConfig(d_model=32, n_layers=2, n_heads=4, n_freqs=16,
                                        binned_width=binned_width, binned_hidden=16)).eval()
    _, items = pest_items
    items = items[:6]
    batch = collate_spectra(items)
    with torch.no_grad():
        out = enc(batch["mz"], batch["intensity"], batch["pad_mask"], batch["precursor_mz"])
        assert out.shape == (6, 32) and torch.isfinite(out).all()
        for i, it in enumerate(items):  # alone (no padding) == in a padded batch
            one = collate_spectra([it])
            alone = enc(one["mz"], one["intensity"], one["pad_mask"], one["precursor_mz"])
            torch.testing.assert_close(alone[0], out[i], atol=1e-5, rtol=1e-5)
        # garbage in the padded positions changes nothing
        junk = {k: v.clone() for k, v in batch.items()}
        junk["mz"][junk["pad_mask"]] = 777.0
        junk["intensity"][junk["pad_mask"]] = 0.3
        out2 = enc(junk["mz"], junk["intensity"], junk["pad_mask"], junk["precursor_mz"])
        torch.testing.assert_close(out, out2, atol=1e-5, rtol=1e-5)
        # an empty spectrum still embeds (the precursor token is never masked)
        empty = collate_spectra([spectrum_item(np.zeros(0), np.zeros(0), 300.0, 8)])
        e = enc(empty["mz"], empty["intensity"], empty["pad_mask"], empty["precursor_mz"])
        assert torch.isfinite(e).all()


def test_encoder_options_nominal_mass_and_precursor(pest_items):
    _, items = pest_items
    batch = collate_spectra(items[:4])
    args = (batch["mz"], batch["intensity"], batch["pad_mask"], batch["precursor_mz"])
    torch.manual_seed(0)
    enc = SpectrumEncoder(EncoderConfig(d_model=32, n_layers=1, n_heads=2, n_freqs=16,
                                        nominal_mz_max=500, precursor_in_tokens=False)).eval()
    idx = enc._nominal_index(torch.tensor([-3.2, 0.2, 91.05, 499.6, 500.4, 800.0]))
    assert idx.tolist() == [0, 1, 92, 501, 501, 0]  # 0: out of range
    assert enc.prec_mlp is None
    with torch.no_grad():
        out = enc(*args)
        assert out.shape == (4, 32) and torch.isfinite(out).all()
        # without neutral losses and precursor code, the precursor m/z changes nothing
        enc2 = SpectrumEncoder(EncoderConfig(d_model=32, n_layers=1, n_heads=2, n_freqs=16,
                                             neutral_losses=False,
                                             precursor_in_tokens=False)).eval()
        shifted = (*args[:3], args[3] + 17.0)
        torch.testing.assert_close(enc2(*args), enc2(*shifted))
        enc3 = SpectrumEncoder(EncoderConfig(d_model=32, n_layers=1, n_heads=2,
                                             n_freqs=16)).eval()
        assert not torch.allclose(enc3(*args), enc3(*shifted))


def test_binned_token_reads_peaks_at_its_bin_width(pest_items):
    """The binned-spectrum token: a peak moved within its 0.1 Da bin gives the same token, one
    moved to the next bin a different one; peaks outside [0, binned_max_mz) share bin 0."""
    torch.manual_seed(0)
    enc = SpectrumEncoder(EncoderConfig(d_model=32, n_layers=1, n_heads=2, n_freqs=16,
                                        binned_width=0.1, binned_max_mz=1000.0,
                                        binned_hidden=16)).eval()
    assert enc.n_bins == 10_000 and enc.bins.num_embeddings == 10_001
    _, items = pest_items
    b = collate_spectra(items[:2])
    with torch.no_grad():
        base = enc.binned_token(b["mz"], b["intensity"], b["pad_mask"])
        inside, nxt = b["mz"].clone(), b["mz"].clone()
        inside[0, 0] = torch.floor(inside[0, 0] * 10) / 10 + 0.09  # same 0.1 Da bin
        nxt[0, 0] = torch.floor(nxt[0, 0] * 10) / 10 + 0.11  # the next bin
        torch.testing.assert_close(enc.binned_token(inside, b["intensity"], b["pad_mask"]),
                                   base)
        moved = enc.binned_token(nxt, b["intensity"], b["pad_mask"])
        assert not torch.allclose(moved[0], base[0])
        torch.testing.assert_close(moved[1], base[1])  # the other spectrum is untouched
        far = b["mz"].clone()
        far[0, 0], far[1, 0] = 1500.0, -2.0
        f = enc.binned_token(far, b["intensity"], b["pad_mask"])
        assert torch.isfinite(f).all()


def test_adduct_codes_reach_the_encoder(pest_items):
    from msid.spectra_dataset import ADDUCTS, adduct_index

    ds, items = pest_items
    assert adduct_index("[M+H]+") == 1 and adduct_index("[M+X]7+") == 0 == adduct_index(None)
    codes = {it["adduct"] for it in items}
    assert codes <= set(range(len(ADDUCTS) + 1)) and len(codes) > 1  # the store has + and -
    assert {ADDUCTS[c - 1] for c in codes if c} <= set(ds.adducts)
    batch = collate_spectra(items[:3])
    assert batch["adduct"].dtype == torch.long and batch["adduct"].shape == (3,)
    torch.manual_seed(0)
    enc = SpectrumEncoder(EncoderConfig(d_model=32, n_layers=1, n_heads=2, n_freqs=16,
                                        adduct_embedding=True)).eval()
    args = (batch["mz"], batch["intensity"], batch["pad_mask"], batch["precursor_mz"])
    with torch.no_grad():
        pos = enc(*args, torch.full((3,), adduct_index("[M+H]+")))
        neg = enc(*args, torch.full((3,), adduct_index("[M-H]-")))
        assert not torch.allclose(pos, neg)
        torch.testing.assert_close(enc(*args), enc(*args, torch.zeros(3, dtype=torch.long)))


def test_fourier_features_resolve_5_mda():
    ff = FourierFeatures(64, 1e-3, 1e3)
    x = torch.tensor([500.000, 500.005, 1500.000, 1500.005, 500.000], dtype=torch.float64)
    f = ff(x)
    assert f.shape == (5, 128) and f.dtype == torch.float32
    same = (f[0] - f[4]).norm()
    near = (f[0] - f[1]).norm()
    near_hi = (f[2] - f[3]).norm()
    far = (f[0] - f[2]).norm()
    assert same == 0
    assert near > 0.25 * far and near_hi > 0.25 * far  # 5 mDa is far from identical
    # the finest features separate them; the coarse ones barely move
    fine = torch.cat([f[:, :8], f[:, 64:72]], 1)
    coarse = torch.cat([f[:, 56:64], f[:, 120:128]], 1)
    assert (fine[0] - fine[1]).norm() > 1.0 > 100 * (coarse[0] - coarse[1]).norm()


def test_focal_loss_matches_manual():
    torch.manual_seed(1)
    logits = torch.randn(4, 10)
    target = (torch.rand(4, 10) > 0.7).float()
    for gamma, alpha in ((2.0, -1.0), (0.0, -1.0), (1.5, 0.25)):
        got = focal_loss(logits, target, gamma, alpha)
        p = 1 / (1 + np.exp(-logits.numpy().astype(np.float64)))
        y = target.numpy()
        pt = np.where(y == 1, p, 1 - p)
        w = np.where(y == 1, alpha, 1 - alpha) if alpha >= 0 else 1.0
        manual = np.mean(-w * (1 - pt) ** gamma * np.log(pt))
        assert float(got) == pytest.approx(manual, rel=1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(focal_loss(logits, target, 0.0)) == pytest.approx(float(bce), rel=1e-6)
    perfect = torch.tensor([[20.0, -20.0]])
    assert float(focal_loss(perfect, torch.tensor([[1.0, 0.0]]))) < 1e-12
    assert float(fingerprint_f1(torch.tensor([[0.9, 0.1, 0.8]]),
                                torch.tensor([[1.0, 0.0, 0.0]]))) == pytest.approx(2 / 3)


def test_info_nce_picks_matching_pair():
    torch.manual_seed(2)
    mols = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    spec = torch.nn.functional.normalize(mols + 0.1 * torch.randn(6, 16), dim=-1)
    target = torch.arange(6)
    scale = torch.tensor(10.0)
    loss, logits = info_nce(spec, mols, target, scale)
    assert (logits.argmax(1) == target).all()
    wrong, _ = info_nce(spec, mols, target.roll(1), scale)
    assert float(loss) < float(wrong)
    # excluding a column (another copy of the truth) removes it from the negatives
    exclude = torch.zeros(6, 6, dtype=torch.bool)
    exclude[0, 1] = True
    l2, lg2 = info_nce(spec, mols, target, scale, exclude)
    assert torch.isinf(lg2[0, 1]) and float(l2) <= float(loss)
    exclude[0, 0] = True  # the target itself is never excluded
    _, lg3 = info_nce(spec, mols, target, scale, exclude)
    assert torch.isfinite(lg3[0, 0])


@pytest.mark.parametrize("family", ["ranker", "reconstructor", "deepsets", "fp_ffn"])
def test_every_family_forward_and_loss(family, pest_items):
    torch.manual_seed(0)
    cfg = _tiny(family)
    model = build_model(cfg)
    ds, items = pest_items
    batch = collate_spectra(items[:8])
    if family == "ranker":
        from msid.models.features import MolFeaturizer
        feat = MolFeaturizer(cfg.fp_bits, cfg.fp_radius, cfg.mol_fp)
        batch["mol_pos"] = torch.from_numpy(feat([ds.structures[i] for i in batch["struct_idx"]]))
        batch["mol_neg"] = torch.from_numpy(feat(["CCO", "c1ccccc1"] * 8)).reshape(8, 2, -1)
        batch["neg_valid"] = torch.ones(8, 2, dtype=torch.bool)
    else:
        from msid.models.features import MolFeaturizer
        bits = MolFeaturizer(cfg.fp_bits, cfg.fp_radius, "bits")
        batch["fp"] = torch.from_numpy(bits([ds.structures[i] for i in batch["struct_idx"]]))
    loss, _logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    emb = model.encode_spectra(batch)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(8), atol=1e-5)
    mol = model.encode_molecules(torch.rand(3, cfg.fp_bits))
    assert mol.shape[0] == 3 and mol.shape[1] == emb.shape[1]


def test_fp_ffn_bins_peaks():
    cfg = _tiny("fp_ffn", ffn_max_mz=1005.0, intensity_transform="none", intensity_scale=1.0)
    m = build_model(cfg)
    b = collate_spectra([spectrum_item(np.array([100.04, 100.06, 1004.99, 1200.0]),
                                       np.array([0.2, 1.0, 0.5, 0.7]), 500.0, 32)])
    v = m.binned(b)
    assert v.shape == (1, 10050)
    assert float(v[0, 1000]) == pytest.approx(1.0)  # 100.0-100.1 Da: max of 0.2 and 1.0
    assert float(v[0, 10049]) == pytest.approx(0.5)  # 1004.9-1005.0 Da
    assert float(v.sum()) == pytest.approx(1.5)  # 1200 Da is beyond the last bin


def test_baseline_presets_follow_massspecgym():
    """The shipped baselines' recipe: 0.1 Da bins to m/z 1000 of square-root intensities, one
    hidden layer of 1024 ReLU units with dropout 0.3, 2048-bit Morgan r2, BCE, Adam (no weight
    decay) at a constant 1e-3, batch 256, about 8 epochs of the 35k [M+H]+ training spectra."""
    run = RunConfig.preset("fp_ffn")
    m = build_model(run.model)
    layers = [type(x).__name__ for x in m.mlp]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (m.mlp[0].in_features, m.mlp[0].out_features, m.mlp[3].out_features) == (
        10000, 1024, 2048)
    assert m.mlp[2].p == 0.3 and run.model.fp_radius == 2
    b = collate_spectra([spectrum_item(np.array([100.04, 999.95]), np.array([0.25, 1.0]),
                                       500.0, 512)])
    v = m.binned(b)
    # intensities relative to a base peak of 1000, square-rooted
    assert float(v[0, 1000]) == pytest.approx(250 ** 0.5)
    assert float(v[0, 9999]) == pytest.approx(1000 ** 0.5)
    for fam in ("fp_ffn", "deepsets"):
        t = RunConfig.preset(fam).train
        assert (t.batch_size, t.lr, t.weight_decay, t.warmup_steps, t.min_lr_ratio,
                t.grad_clip) == (256, 1e-3, 0.0, 0, 1.0, 0.0)
        assert 7 <= t.max_steps * t.batch_size / 35_327 <= 9
    cfg = RunConfig.preset("deepsets").model
    assert isinstance(build_model(cfg).phi[1], torch.nn.ReLU) and cfg.max_peaks == 60
    # m/z through 32 Fourier features besides the scalar; 0 keeps the plain two-input phi that
    # earlier DeepSets files were saved with
    assert build_model(cfg).phi[0].in_features == 2 + 2 * 32
    plain = ModelConfig.from_dict({**cfg.to_dict(), "deepsets_mz_freqs": 0})
    assert build_model(plain).phi[0].in_features == 2


# -- model files --------------------------------------------------------------------------------
def test_model_file_roundtrip_and_errors(tmp_path, pest_items):
    from msid.modelfile import ModelFileError, card_path, load_model, save_model

    torch.manual_seed(0)
    cfg = _tiny("reconstructor")
    model = build_model(cfg).eval()
    path = tmp_path / "reconstructor.safetensors"
    card = save_model(model, path, family="reconstructor", config=cfg.to_dict(),
                      training={"train_store": "x"}, metrics={"val": {"hit@1": 0.5}})
    assert card_path(path).exists() and len(card["weights_sha256"]) == 64
    assert card["msid_version"] and card["config"]["fp_bits"] == 512
    loaded, card2 = load_model(path, family="reconstructor")
    batch = collate_spectra(pest_items[1][:3])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_spectra(batch), model.encode_spectra(batch))
    assert card2["metrics"]["val"]["hit@1"] == 0.5
    assert b"\x80\x04" not in path.read_bytes()[:8]  # not a pickle

    with pytest.raises(ModelFileError, match="family"):
        load_model(path, family="ranker")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ModelFileError, match=r"reconstructor\.safetensors.*sha256"):
        load_model(path)
    corrupted = bytearray(good)
    corrupted[len(good) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(ModelFileError, match=r"reconstructor\.safetensors"):
        load_model(path)
    # garbage whose hash the card agrees with: the safetensors parser rejects it
    path.write_bytes(b"not a safetensors file at all")
    c = json.loads(card_path(path).read_text())
    from msid.modelfile import sha256_file
    c["weights_sha256"] = sha256_file(path)
    card_path(path).write_text(json.dumps(c))
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(path)
    # card describing another architecture
    path.write_bytes(good)
    c["weights_sha256"] = sha256_file(path)
    c["config"]["fp_bits"] = 1024
    card_path(path).write_text(json.dumps(c))
    with pytest.raises(ModelFileError, match="architecture"):
        load_model(path)
    card_path(path).write_text("{not json")
    with pytest.raises(ModelFileError, match=r"reconstructor\.json"):
        load_model(path)
    card_path(path).unlink()
    with pytest.raises(ModelFileError, match="card missing"):
        load_model(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


# -- Method wrappers ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["ranker", "reconstructor", "deepsets", "fp_ffn"])
def test_method_rank_returns_all_candidates_sorted(family, tmp_path, pesticides_store, pool_index):
    import msid.models.methods  # noqa: F401  (registers the methods)
    from msid.candidate_sets import candidates_for_queries
    from msid.chem.candidates import CandidateIndex
    from msid.methods import MethodResources, available, iter_queries, make_method, rank_queries
    from msid.modelfile import save_model
    from msid.store import SpectrumStore

    assert family in available()
    torch.manual_seed(0)
    cfg = _tiny(family)
    path = tmp_path / f"{family}.safetensors"
    save_model(build_model(cfg), path, family=family, config=cfg.to_dict())
    method = make_method(family, MethodResources(model_path=str(path)))
    assert method.needs_candidates and not method.needs_library
    with SpectrumStore(pesticides_store) as st:
        rows = list(range(8))
        cands = candidates_for_queries(st, rows, index=CandidateIndex(pool_index),
                                       include_true=True)
        queries = list(iter_queries(st, rows))
        for q in queries:
            c = cands[q.query_id]
            ranked = method.rank(q, c)
            assert len(ranked) == len(c)
            assert {r.inchikey for r in ranked} == {x.inchikey for x in c}
            scores = [r.score for r in ranked]
            assert scores == sorted(scores, reverse=True)
            assert all(np.isfinite(scores))
            assert method.rank(q, []) == []
        batched = method.rank_many(queries, [cands[q.query_id] for q in queries])
        for q, b in zip(queries, batched, strict=True):
            single = method.rank(q, cands[q.query_id])
            assert [r.inchikey for r in b] == [r.inchikey for r in single]
        rows_out = rank_queries(method, st, rows, cands, progress=False)
        assert len(rows_out) == sum(len(cands[q.query_id]) for q in queries)
    with pytest.raises(Exception, match="does not exist"):
        make_method(family, MethodResources(model_path=str(tmp_path / "missing.safetensors")))


def test_presets_and_config_validation():
    for fam in ("ranker", "reconstructor", "deepsets", "fp_ffn"):
        for size in ("tiny", "seed"):
            run = RunConfig.preset(fam, size)
            assert run.model.family == fam
            back = RunConfig.from_dict({"family": fam, "size": size,
                                        "model": {k: v for k, v in run.model.to_dict().items()
                                                  if k != "family"},
                                        "train": run.train.to_dict()})
            assert back.to_dict() == run.to_dict()
    assert RunConfig.preset("ranker", "tiny").train.bf16 is False
    assert RunConfig.preset("ranker", "seed").model.encoder.d_model > 64
    with pytest.raises(ValueError, match="unknown"):
        RunConfig.from_dict({"family": "ranker", "train": {"lr_typo": 1}})
    with pytest.raises(ValueError, match="family"):
        RunConfig.preset("nope")


def test_training_curves_of_the_shipped_models():
    from pathlib import Path

    from msid.report.plots import load_histories, training_curves

    retrieval = ("ranker", "reconstructor", "deepsets", "fp_ffn")  # other families log otherwise
    files = sorted(f for f in (Path(__file__).resolve().parents[1] / "resources" / "models")
                   .glob("*.history.json") if f.name.startswith(retrieval))
    hist = load_histories(files)
    assert {"reconstructor", "deepsets", "fp_ffn"} <= set(hist)
    assert any(k.startswith("ranker") for k in hist)
    assert all(h["train"] and h["val"] for h in hist.values())
    png = training_curves(hist)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_no_benchmark_query_structure_in_a_shipped_models_training_set():
    """Every shipped retrieval model's card records the fold salt and a digest of its training
    structures (InChIKey first blocks, listed beside it); the list matches the digest, the
    salt and fractions are the workflow's, and no structure of a benchmark query (benchmark
    fold and adducts of config/benchmark.yaml, from the shipped library's metadata) is in it."""
    import gzip
    import hashlib
    from pathlib import Path

    import pandas as pd
    import yaml

    from msid.folds import FoldSpec, fold_of

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    bench = yaml.safe_load((root / "config" / "benchmark.yaml").read_text())["benchmark"]
    folds = config["preprocess"]["library"]["folds"]
    spec = FoldSpec(**folds)
    with gzip.open(root / "resources" / "massbank_esi" / "massbank_esi_msms_metadata.tsv.gz",
                   "rt") as fh:
        meta = pd.read_csv(fh, sep="\t", usecols=["inchikey", "adduct"], dtype=str,
                           keep_default_na=False)
    meta = meta[(meta["inchikey"] != "") & meta["adduct"].isin(bench["adducts"])]
    queries = {k[:14] for k in meta["inchikey"] if fold_of(k[:14], spec) == bench["fold"]}
    assert len(queries) > 100
    for family in config["models"]["families"]:
        card = json.loads((root / "resources" / "models" / f"{family}.json").read_text())
        st = card["training"]["structures"]
        assert st["fold_salt"] == folds["salt"], family
        assert st["fold_fractions"] == {k: folds[k] for k in ("train", "val", "test")}
        text = (root / "resources" / "models" / st["structures_file"]).read_text()
        assert hashlib.sha256(text.encode()).hexdigest() == st["structures_sha256"], family
        keys = set(text.split())
        assert len(keys) == st["n_structures"] > 1000
        assert not keys & queries, f"{family} trained on benchmark structures"


def test_fold_settings_follow_a_relative_provenance_from_anywhere(pesticides_store, tmp_path,
                                                                   monkeypatch):
    """A fold store made by the workflow names its source relative to the workflow's folder;
    the model card's fold salt is found from any working directory."""
    import shutil

    from msid.models.training import fold_settings
    from msid.store import subset_store

    work = tmp_path / "workflow_dir"
    (work / "results").mkdir(parents=True)
    shutil.copyfile(pesticides_store, work / "results" / "lib.h5")
    monkeypatch.chdir(work)
    subset_store("results/lib.h5", "results/train.h5", [0, 1, 2])
    monkeypatch.chdir(tmp_path)
    assert fold_settings(work / "results" / "train.h5")["salt"] == "msid-folds-v1"


def test_contrastive_logits_stay_float32_under_bf16_autocast():
    """A bf16 autocast region (the GPU presets) does not turn InfoNCE's similarity matmul back
    into bf16: at scale 50 that moves logits by up to ~0.2 (CPU autocast casts as CUDA's)."""
    torch.manual_seed(0)
    spec = torch.nn.functional.normalize(torch.randn(8, 64), dim=-1)
    mols = torch.nn.functional.normalize(torch.randn(32, 64), dim=-1)
    target = torch.arange(8)
    scale = torch.tensor(50.0)
    _, exact = info_nce(spec, mols, target, scale)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, under = info_nce(spec, mols, target, scale)
    assert under.dtype == torch.float32
    assert torch.allclose(under, exact, atol=1e-5)

