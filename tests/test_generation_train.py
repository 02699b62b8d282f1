"""De novo and GLMR training on real spectra, end to end: ``msid train denovo`` pretrains on
pool molecules and fine-tunes on spectra, ``train_glmr`` starts from that model, and both
files load back and answer queries through ``msid identify``."""

import json
from pathlib import Path

import pytest
import yaml

from msid.chem.structures import parse_structure
from msid.cli import main
from msid.generation.data import fold_inchikeys
from msid.generation.modelio import load_generator
from msid.rankings import read_rankings

ROOT = Path(__file__).resolve().parents[1]
RANKER = ROOT / "resources" / "models" / "ranker.safetensors"
#: the ``tiny`` preset cut to a few steps: this checks the path, not the model's quality
SMALL = {"size": "tiny",
         "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "ff_mult": 2, "max_len": 64,
                   "encoder": {"d_model": 32, "n_layers": 1, "n_heads": 2, "n_freqs": 8}},
         "pretrain": {"max_molecules": 3000, "max_steps": 300, "batch_size": 32, "lr": 3e-3},
         "train": {"max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "batch_size": 8,
                   "warmup_steps": 1, "val_max_queries": 16, "progress": False},
         "glmr": {"max_train_spectra": 32, "train_k": 4, "max_steps": 4}}


@pytest.fixture(scope="module")
def split_stores(pesticides_store, tmp_path_factory) -> tuple[Path, Path]:
    """The pesticide store split by structure: train (3 of 4 structures) and val."""
    from msid.store import SpectrumStore, subset_store

    d = tmp_path_factory.mktemp("split")
    with SpectrumStore(pesticides_store) as st:
        keys = st.metadata["inchikey"].astype(str).str[:14].tolist()
    order = sorted(set(keys))
    val = {k for i, k in enumerate(order) if i % 4 == 0}
    rows = {f: [i for i, k in enumerate(keys) if (k in val) == (f == "val")]
            for f in ("train", "val")}
    return tuple(subset_store(pesticides_store, d / f"{f}.h5", rows[f])
                 for f in ("train", "val"))


@pytest.fixture(scope="module")
def denovo_file(split_stores, pool_index, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("denovo")
    cfg, out = d / "tiny.yaml", d / "denovo.safetensors"
    cfg.write_text(yaml.safe_dump(SMALL))
    train, val = split_stores
    assert main(["train", "denovo", "--train", str(train), "--val", str(val), "--index",
                 str(pool_index), "--config", str(cfg), "--out", str(out)]) == 0
    return out


def test_train_denovo_cli_writes_a_model_that_generates(denovo_file, pesticides_store,
                                                         data_dir, tmp_path):
    model, tok, card = load_generator(denovo_file, "denovo")
    assert model.cfg.d_model == 32 and len(tok) > 10
    assert card["metrics"]["pretrain_steps"] == 300 and card["metrics"]["steps"] == 4
    assert card["metrics"]["val"]["neg_nll"] < 0
    pre = card["training"]["pretraining"]
    assert pre["molecules"] > 1000
    # pretraining never saw a structure of the validation store
    assert pre["val_test_structures_left_out"] >= 1
    assert fold_inchikeys([pesticides_store])
    hist = json.loads(denovo_file.with_suffix(".history.json").read_text())
    assert hist, "no training history written"

    out = tmp_path / "dn.tsv"
    assert main(["identify", str(data_dir / "gnps_pesticides_matchms_train.mgf.gz"),
                 "--method", "denovo", "--model", str(denovo_file), "--top-k", "2",
                 "--out", str(out)]) == 0
    r = read_rankings(out)
    assert r["query_id"].nunique() == 64  # every query: molecules, or the reason why none
    assert (r.loc[r["rank"] == 0, "note"].str.len() > 0).all()
    answered = r[r["rank"] > 0]
    assert len(answered) > 0 and (answered["method"] == "denovo").all()
    # whatever a few steps of training writes, only valid, canonical molecules come back
    assert all(parse_structure(s).smiles_flat == s for s in answered["smiles"])


@pytest.mark.skipif(not RANKER.exists(), reason="no shipped Ranker (make models trains it)")
@pytest.mark.parametrize("fusion", ["cross", "copy"])
def test_train_glmr_starts_from_the_denovo_model(denovo_file, split_stores, pool_index,
                                                 data_dir, tmp_path, fusion):
    from msid.generation.training import train_glmr

    out = tmp_path / "glmr.safetensors"
    metrics = train_glmr(*split_stores, pool_index, denovo_file, RANKER,
                         SMALL, out, fusion=fusion, log=lambda *_: None)
    assert metrics["steps"] == 4
    model, tok, card = load_generator(out, "glmr")
    _, base_tok, _ = load_generator(denovo_file, "denovo")
    assert model.cfg.fusion == fusion and model.cfg.cand_dim > 0
    assert tok.itos == base_tok.itos  # one vocabulary: GLMR decodes the de novo model's tokens
    assert card["training"]["ranker_model"] == str(RANKER)  # stage 1 at inference

    ranked = tmp_path / "g.tsv"
    assert main(["identify", str(data_dir / "massspecgym_debug_5_train.mgf.gz"),
                 "--candidates", str(data_dir / "massspecgym_debug_5_candidates_train.json.gz"),
                 "--method", "glmr", "--model", str(out), "--top-k", "5",
                 "--out", str(ranked)]) == 0
    r = read_rankings(ranked)
    assert r["query_id"].nunique() == 4 and (r["method"] == "glmr").all()
