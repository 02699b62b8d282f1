"""EI spectrum prediction: a small real run (teacher, MLP, student) on the shipped MassBank EI,
model files, `msid predict-ei` and the resumable in-silico library."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msid.ei.insilico import build_library, predict_file, read_smiles_file
from msid.ei.neims import NeimsConfig, build_net, featurize, mol_graph, nominal_mass
from msid.ei.neims_eval import library_recall, weighted, write_leaderboard
from msid.ei.neims_pipeline import NeimsRunConfig, run, soft_targets
from msid.ei.neims_train import load_neims, predict_sqrt, save_neims
from msid.ei.spectra import ei_store
from msid.modelfile import ModelFileError
from msid.models.features import MolFeaturizer
from msid.store import SpectrumStore

ROOT = Path(__file__).resolve().parents[1]
EI_MSP = ROOT / "resources" / "massbank_ei" / "massbank_ei.msp.gz"
POOL = ROOT / "resources" / "candidates" / "candidate_pool.tsv.gz"
TINY = {"teacher": {"hidden": 64, "gnn_hidden": 32, "gnn_layers": 2, "n_layers": 1},
        "student": {"hidden": 64, "n_layers": 1}, "mlp": {"hidden": 64, "n_layers": 1}}


def test_reverse_head_places_neutral_losses_below_the_molecular_mass() -> None:
    from rdkit import Chem

    assert nominal_mass(Chem.MolFromSmiles("CCO")) == 46
    cfg = NeimsConfig(kind="student", max_mz=100, n_bits=256, hidden=16, n_layers=1)
    net = build_net(cfg)
    b = featurize(["CCO", "c1ccccc1"], MolFeaturizer(256, 2, "count"), graphs=False)
    out = net(b)
    assert out.shape == (2, 101) and (out >= 0).all()
    assert (out[0, 47:] == 0).all() and (out[1, 79:] == 0).all()  # nothing above M
    tcfg = NeimsConfig(kind="teacher", max_mz=100, n_bits=256, hidden=16, gnn_hidden=8)
    teacher = build_net(tcfg)
    tb = featurize(["CCO", "c1ccccc1"], MolFeaturizer(256, 2, "count"), graphs=True)
    spec, bde = teacher(tb, with_bde=True)
    assert spec.shape == (2, 101) and bde.shape == (2 + 6,)  # one BDE per heavy-atom bond
    assert mol_graph("not smiles") is None
    # bf16 autocast (CUDA's default in training; CPU autocast casts the same way): the
    # pooled atom states take the atoms' dtype, so the teacher's loss runs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec, bde = teacher(tb, with_bde=True)
    assert torch.isfinite(spec.float()).all() and torch.isfinite(bde.float()).all()


def test_weighted_cosine_and_recall_protocol() -> None:
    rng = np.random.default_rng(0)
    lib = rng.random((6, 50)).astype(np.float32)
    q = lib[[2, 4]] + 0.01
    rec = library_recall(q, ["k2", "k4"], np.array([7, 7]), lib,
                         [f"k{i}" for i in range(6)], np.array([7] * 6))
    assert rec[1].tolist() == [1.0, 1.0] and rec[10].tolist() == [1.0, 1.0]
    w = weighted(np.ones((1, 4)))
    assert w[0].tolist() == [0.0, 1.0, 8.0, 27.0]
    # structures compete, not library entries: ten spectra of one wrong structure, each
    # closer to the query than the truth's, take one place: the truth is second (recall@10
    # 1), not eleventh
    near = np.concatenate([q[:1] + 0.0001 * np.arange(1, 11)[:, None], lib[[2, 5]]])
    keys = ["kx"] * 10 + ["k2", "k5"]
    rec = library_recall(q[:1], ["k2"], np.array([7]), near, keys, np.array([7] * 12))
    assert rec[1].tolist() == [0.0] and rec[10].tolist() == [1.0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("neims")
    import os

    os.environ["MSID_CACHE"] = str(work / "cache")
    store = ei_store(EI_MSP)
    rows = run(store, work / "models", pool=POOL, cfg=_small_cfg(), log=lambda *_: None)
    return work, rows


def _small_cfg(**teacher) -> NeimsRunConfig:
    return NeimsRunConfig(max_mz=300, teacher={**TINY["teacher"], **teacher},
                          student=TINY["student"], mlp=TINY["mlp"], distill_extra=50,
                          mc_samples=2, decoys_per_mass=3,
                          train={"max_steps": 6, "batch_size": 16, "eval_every": 3,
                                 "warmup_steps": 1, "log_every": 2, "checkpoint_every": 4},
                          progress=False, licence="CC BY-SA 4.0 (test)")


def test_a_retried_run_trains_only_what_changed(small_run, tmp_path, capsys) -> None:
    """Run again in the same folder (a retried or requeued job): every model had finished and
    is not trained again, and the scores are the same. With another teacher, the teacher and
    the students distilled from it train anew; the MLP, unchanged, does not."""
    import shutil

    work, rows = small_run
    models = shutil.copytree(work / "models", tmp_path / "models")  # the fixture's stay as are
    store = ei_store(EI_MSP)
    capsys.readouterr()
    again = run(store, models, pool=POOL, cfg=_small_cfg(), log=lambda *_: None)
    out = capsys.readouterr().out
    assert out.count("it had finished, nothing to train") == 4, out

    def scores(rs):
        return [{k: v for k, v in r.items() if not k.endswith(("_per_s", "seconds"))}
                for r in rs]  # timings aside

    assert scores(again) == scores(rows)
    hidden = TINY["teacher"]["hidden"] + 8
    run(store, models, pool=POOL, cfg=_small_cfg(hidden=hidden), log=lambda *_: None)
    out = capsys.readouterr().out
    finished = [line for line in out.splitlines() if "nothing to train" in line]
    assert len(finished) == 1 and "[neims_mlp]" in finished[0], out
    assert out.count("training from scratch") == 3, out  # teacher, student, ablation student


def test_one_run_trains_scores_and_saves_three_models(small_run) -> None:
    work, rows = small_run
    assert [r["method"] for r in rows] == [
        "neims_teacher", "neims_student", "neims_mlp",
        "neims_student (ablation: distilled from the teacher-MLP ensemble)",
        "neims_student (ablation: no isotope peaks above M)"]
    assert [r["isotope_peaks"] for r in rows] == [True] * 4 + [False]
    for r in rows:
        assert 0 <= r["cosine_lo"] <= r["cosine"] <= r["cosine_hi"] <= 1
        assert 0 <= r["recall@1"] <= r["recall@10"] <= 1
        # the shipped records' test fold, the TMS-derivative spectra left out (counted)
        assert r["n_test_spectra"] >= 25 and r["predictions_per_s"] > 0
    run_file = json.loads((work / "models" / "neims_run.json").read_text())
    assert run_file["left_out_above_ion"]["test"] > 50
    assert run_file["n_spectra"]["test"] == rows[0]["n_test_spectra"]
    model, card = load_neims(work / "models" / "neims_student.safetensors")
    assert card["family"] == "neims" and card["licence"] == "CC BY-SA 4.0 (test)"
    assert card["training"]["distilled_from"] == "teacher"
    assert not list((work / "models").glob("*ablation*.safetensors"))  # a row, not a model
    assert model.cfg.kind == "student" and model.cfg.n_experts == 4
    write_leaderboard(rows, work / "lb.md", work / "lb.csv")
    assert len(pd.read_csv(work / "lb.csv")) == 5 and "recall@10" in (work / "lb.md").read_text()
    bad = work / "models" / "broken.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        load_neims(bad)


def test_ensemble_soft_targets_average_teacher_and_mlp(small_run) -> None:
    work, _ = small_run
    teacher, _ = load_neims(work / "models" / "neims_teacher.safetensors")
    mlp, _ = load_neims(work / "models" / "neims_mlp.safetensors")
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O"]
    torch.manual_seed(0)
    t = soft_targets(teacher, mlp, smiles, mc_samples=4)
    torch.manual_seed(0)  # the same dropout draws
    t_mean, t_std = predict_sqrt(teacher, smiles, mc_samples=4)
    m_mean, _ = predict_sqrt(mlp, smiles)
    np.testing.assert_allclose(t["teacher"][0], t_mean, atol=1e-6)
    np.testing.assert_allclose(t["teacher"][1], t_std, atol=1e-6)
    np.testing.assert_allclose(t["ensemble"][0], (t_mean + m_mean) / 2, atol=1e-6)
    assert (t["ensemble"][1] >= t["teacher"][1] - 1e-7).all()  # disagreement widens the std
    with pytest.raises(ValueError, match="distill_from"):
        NeimsRunConfig(distill_from="mlp")


def test_predict_ei_msp_and_store_skip_bad_lines(small_run, tmp_path) -> None:
    work, _ = small_run
    model = work / "models" / "neims_student.safetensors"
    smi = tmp_path / "in.txt"
    smi.write_text("CCO ethanol\nC1CC(\nc1ccccc1O\n[Na+].[O-]C(=O)c1ccccc1 sodium benzoate\n")
    res = predict_file(smi, tmp_path / "lib.msp", model, progress=False)
    assert res["predicted"] == 3 and [r[0] for r in res["rejected"]] == [2]
    text = (tmp_path / "lib.msp").read_text()
    for key in ("Name: ethanol", "SMILES: CCO", "InChIKey: LFQSCWFLJHTTHZ-UHFFFAOYSA-N",
                "Formula: C2H6O", "MW: 46", "Num Peaks:",
                "DB#: insilico:LFQSCWFLJHTTHZ-UHFFFAOYSA-N",
                # a salt is predicted as its parent acid, as the training structures were
                "Name: sodium benzoate", "InChIKey: WPYMKLBDIGXBTP-UHFFFAOYSA-N",
                "Formula: C7H6O2", "MW: 122"):
        assert key in text
    import matchms.importing

    spectra = list(matchms.importing.load_from_msp(str(tmp_path / "lib.msp")))
    assert len(spectra) == 3 and spectra[0].peaks.mz.max() <= 46
    assert spectra[2].peaks.mz.max() <= 122
    res = predict_file(smi, tmp_path / "lib.h5", model, progress=False)
    with SpectrumStore(tmp_path / "lib.h5") as s:
        assert len(s) == 3 and len(s.quarantine) == 1
        assert s.metadata.inchikey[0] == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"


def test_insilico_library_resumes_from_chunks(small_run, tmp_path) -> None:
    work, _ = small_run
    model = work / "models" / "neims_student.safetensors"
    pool = tmp_path / "pool.tsv.gz"
    with gzip.open(POOL, "rt") as fh, gzip.open(pool, "wt") as out:
        for i, line in enumerate(fh):
            if i > 120:
                break
            out.write(line)
    n_pool = sum(1 for _ in read_smiles_file(pool))
    stats = build_library([pool], model, tmp_path / "lib.h5", tmp_path / "chunks",
                          chunk_size=50, n_jobs=1, progress=False, log=lambda *_: None)
    assert stats["chunks"] == 3 and stats["predicted_chunks"] == 3
    with SpectrumStore(tmp_path / "lib.h5") as s:  # too heavy for max_mz 300: quarantined
        assert stats["spectra"] + len(s.quarantine) == n_pool and stats["spectra"] > 50
    # a killed run: one chunk lost; the rerun predicts only that one
    chunk = sorted((tmp_path / "chunks").glob("*/*.h5"))[1]
    chunk.unlink()
    again = build_library([pool], model, tmp_path / "lib2.h5", tmp_path / "chunks",
                          chunk_size=50, n_jobs=1, progress=False, log=lambda *_: None)
    assert again["predicted_chunks"] == 1 and again["spectra"] == stats["spectra"]
    with SpectrumStore(tmp_path / "lib.h5") as a, SpectrumStore(tmp_path / "lib2.h5") as b:
        assert np.array_equal(a.peaks(5)[1], b.peaks(5)[1])


def test_teacher_mc_dropout_gives_uncertainty(small_run) -> None:
    from msid.ei.neims_train import predict_sqrt

    work, _ = small_run
    model, _ = load_neims(work / "models" / "neims_teacher.safetensors")
    torch.manual_seed(0)
    mean, std = predict_sqrt(model, ["CCO", "CCCCCC"], mc_samples=4)
    assert mean.shape == std.shape and std.sum() > 0


# -- fast featurisation and prediction (msid.ei.molfeatures, msid.ei.predict) --------------------
SHIPPED = ROOT / "resources" / "models"
EI_METADATA = ROOT / "resources" / "massbank_ei" / "massbank_ei_metadata.tsv.gz"


@pytest.fixture(scope="module")
def massbank_ei_mols():
    from msid.ei.molfeatures import parse

    smiles = sorted(set(pd.read_csv(EI_METADATA, sep="\t").smiles.dropna()))
    pairs = [(s, parse(s)) for s in smiles]
    return [s for s, m in pairs if m is not None], [m for _, m in pairs if m is not None]


def test_fast_featurisation_equals_training_featurisation(massbank_ei_mols) -> None:
    """The shipped MassBank EI structures: sparse ECFP, nominal masses and teacher graphs of
    msid.ei.molfeatures are exactly those msid.ei.neims.featurize trains on."""
    from msid.ei.molfeatures import batch_tensors, sparse_ecfp

    smiles, mols = massbank_ei_mols
    assert len(mols) > 700
    for a in range(0, len(mols), 400):  # batches: atom and bond offsets across molecules
        old = featurize(smiles[a:a + 400], MolFeaturizer(4096, 2, "count"), graphs=True)
        new = batch_tensors(mols[a:a + 400], 4096, graphs=True)
        assert np.array_equal(sparse_ecfp(mols[a:a + 400], 4096).dense(), old["ecfp"].numpy())
        for key in ("mass", "x", "edges", "edge_attr", "graph_of_atom", "bond_atoms",
                    "bond_attr"):
            assert new[key].dtype == old[key].dtype, key
            assert np.array_equal(new[key].numpy(), old[key].numpy()), key


@pytest.mark.parametrize("kind", ["student", "teacher", "mlp"])
def test_shipped_weights_predict_the_same_from_sparse_features(kind, massbank_ei_mols) -> None:
    from msid.ei.neims_train import predict_sqrt
    from msid.ei.predict import predict_mols_sqrt, predict_smiles

    path = SHIPPED / f"neims_{kind}_cc-by-nc-sa.safetensors"
    if not path.exists():
        pytest.skip(f"{path.name} not shipped")
    model, _ = load_neims(path)
    smiles, mols = massbank_ei_mols
    smiles, mols = smiles[::3], mols[::3]
    keep = [i for i, m in enumerate(mols) if nominal_mass(m) <= model.cfg.max_mz]
    smiles, mols = [smiles[i] for i in keep], [mols[i] for i in keep]
    old = predict_sqrt(model, smiles, 256)[0]
    new = predict_mols_sqrt(model, mols, batch_size=100)
    np.testing.assert_allclose(new, old, rtol=0, atol=2e-5)  # float summation order only
    spec, ok = predict_smiles(model, ["CCO", "not a smiles", *smiles[:3]])
    assert ok.tolist() == [0, 2, 3, 4] and np.allclose(spec.max(1), 1)


def test_sparse_peaks_of_a_matrix_equal_row_by_row() -> None:
    from msid.ei.insilico import sparse_peaks, sparse_peaks_many

    rng = np.random.default_rng(1)
    spec = rng.random((7, 40)).astype(np.float32) ** 8
    spec[3] = 0
    for (mz, it), row in zip(sparse_peaks_many(spec), spec, strict=True):
        want = sparse_peaks(row)
        assert np.array_equal(mz, want[0]) and np.array_equal(it, want[1])


def test_library_on_two_processes_equals_predict_ei(tmp_path) -> None:
    """Chunks predicted by worker processes and appended in order give the records
    `msid predict-ei` writes for the same molecules."""
    model = SHIPPED / "neims_student_cc-by-nc-sa.safetensors"
    if not model.exists():
        pytest.skip("shipped student missing")
    pool = tmp_path / "pool.tsv.gz"
    with gzip.open(POOL, "rt") as fh, gzip.open(pool, "wt") as out:
        for i, line in enumerate(fh):
            if i > 160:
                break
            out.write(line)
    stats = build_library([pool], model, tmp_path / "lib.h5", tmp_path / "chunks",
                          chunk_size=40, n_jobs=2, progress=False, log=lambda *_: None)
    predict_file(pool, tmp_path / "one.h5", model, progress=False)
    assert stats["chunks"] == stats["predicted_chunks"] == 4
    with SpectrumStore(tmp_path / "lib.h5") as a, SpectrumStore(tmp_path / "one.h5") as b:
        assert len(a) == len(b) == stats["spectra"] > 100
        cols = ["native_id", "name", "smiles", "inchikey", "formula", "instrument_type"]
        pd.testing.assert_frame_equal(a.metadata[cols], b.metadata[cols])
        assert len(a.quarantine) == len(b.quarantine)
        for i in range(0, len(a), 17):
            assert np.array_equal(a.peaks(i)[0], b.peaks(i)[0])
            np.testing.assert_allclose(a.peaks(i)[1], b.peaks(i)[1], atol=1e-6)


def test_insilico_library_keeps_a_structure_of_two_pools_once(tmp_path) -> None:
    """A molecule that two pools hold (the curated pool and MOSES, say) is one library record:
    the later one is left out with a quarantine row that names the first."""
    model = SHIPPED / "neims_student_cc-by-nc-sa.safetensors"
    if not model.exists():
        pytest.skip("shipped student missing")
    with gzip.open(POOL, "rt") as fh:
        lines = [next(fh) for _ in range(41)]  # header + 40 molecules
    a, b = tmp_path / "a.tsv.gz", tmp_path / "b.tsv.gz"
    with gzip.open(a, "wt") as out:
        out.writelines(lines)
    with gzip.open(b, "wt") as out:  # 5 of a's molecules again
        out.writelines([lines[0], *lines[1:6]])
    stats = build_library([a, b], model, tmp_path / "lib.h5", tmp_path / "chunks",
                          chunk_size=20, n_jobs=1, progress=False, log=lambda *_: None)
    one = build_library([a], model, tmp_path / "one.h5", tmp_path / "chunks",
                        chunk_size=20, n_jobs=1, progress=False, log=lambda *_: None)
    assert stats["spectra"] == one["spectra"] > 30
    with SpectrumStore(tmp_path / "lib.h5") as s:
        assert s.metadata["inchikey"].is_unique
        again = s.quarantine[s.quarantine["reason"].str.contains("again")]
        assert len(again) == 5 and set(again["source_file"]) == {"b.tsv.gz"}, again
        assert again["reason"].str.startswith("the structure of a.tsv.gz:").all()


def test_predict_ei_on_two_processes_keeps_input_order(tmp_path) -> None:
    model = SHIPPED / "neims_student_cc-by-nc-sa.safetensors"
    if not model.exists():
        pytest.skip("shipped student missing")
    smi = tmp_path / "in.txt"
    base = ["CCO", "C1CC(", "c1ccccc1O", "CCN", "CC(=O)O", "xx", "CCCCCCCC"]
    smi.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(  # 15 distinct molecules
        "C" * k + b for k in range(3) for b in base)))
    one = predict_file(smi, tmp_path / "one.msp", model, batch=4, progress=False, n_jobs=1)
    two = predict_file(smi, tmp_path / "two.msp", model, batch=4, progress=False, n_jobs=2)
    assert one["predicted"] == two["predicted"] == 15
    assert one["rejected"] == two["rejected"] and len(one["rejected"]) == 6
    assert (tmp_path / "one.msp").read_text() == (tmp_path / "two.msp").read_text()


def test_predict_ei_names_what_the_model_cannot_predict(tmp_path) -> None:
    """Labelled standards, metal complexes, permanent ions, elements the model has no feature
    for and repeated structures are skipped with their reason; salts give their parent."""
    model = SHIPPED / "neims_student_cc-by-nc-sa.safetensors"
    if not model.exists():
        pytest.skip("shipped student missing")
    lines = {
        "Cc1ccccc1": "toluene",
        "[2H]c1c([2H])c([2H])c(C([2H])([2H])[2H])c([2H])c1[2H]": "toluene-d8",
        "[13CH3]c1ccccc1": "toluene-13C",
        "[Fe+2].c1cc[cH-]c1.c1cc[cH-]c1": "ferrocene",
        "C[N+](C)(C)C": "tetramethylammonium",
        "C[Hg]C": "dimethylmercury",
        "O=C([O-])c1ccccc1.[Na+]": "sodium benzoate",
        "c1ccc(C)cc1": "toluene again",
        "C[n+]1ccc(-c2cc[n+](C)cc2)cc1.[Cl-].[Cl-]": "paraquat dichloride",
    }
    smi = tmp_path / "in.txt"
    smi.write_text("".join(f"{s} {n}\n" for s, n in lines.items()))
    res = predict_file(smi, tmp_path / "lib.msp", model, progress=False, n_jobs=1)
    why = {line: reason for line, _, reason in res["rejected"]}
    assert res["predicted"] == 2  # toluene, benzoic acid
    assert "isotope-labelled" in why[2] and "isotope-labelled" in why[3]
    assert "charged after standardising (C5H5-)" in why[4]  # the iron is not silently lost
    assert "charged after standardising (C4H12N+)" in why[5]
    assert "element(s) Hg outside" in why[6]
    assert why[8].startswith("the structure of line 1 again")
    assert "charged after standardising (C12H14N2+2)" in why[9]  # a dication too
    text = (tmp_path / "lib.msp").read_text()
    assert text.count("Name: ") == 2 and "Name: sodium benzoate" in text
    assert "Formula: C7H6O2" in text and "MW: 122" in text


def test_smiles_files_as_users_write_them(tmp_path) -> None:
    """Quoted CSV names with commas, a Latin-1 name, a byte-order mark and a cut gzip are read
    line by line; a header without a smiles column is an error naming the columns found."""
    from msid.io.errors import InputFileError

    (tmp_path / "q.csv").write_bytes(
        '\ufeffsmiles,name\nOc1ccc(cc1[N+](=O)[O-])[N+](=O)[O-],"2,4-Dinitrophenol"\n'
        'CCO,"ethanol, absolute"\n'.encode())
    assert list(read_smiles_file(tmp_path / "q.csv")) == [
        (2, "2,4-Dinitrophenol", "Oc1ccc(cc1[N+](=O)[O-])[N+](=O)[O-]"),
        (3, "ethanol, absolute", "CCO")]
    (tmp_path / "l.txt").write_bytes("CCO éthanol\nc1ccccc1O phénol\n".encode("latin-1"))
    assert [name for _, name, _ in read_smiles_file(tmp_path / "l.txt")] == ["éthanol", "phénol"]
    # no header: SMILES first, then a name, by tab or comma (an upper-case SMILES is no header)
    for sep in ("\t", ","):
        (tmp_path / "nh.txt").write_text(f"CCO{sep}ethanol\nc1ccccc1O{sep}phenol, pure\n")
        assert list(read_smiles_file(tmp_path / "nh.txt")) == [
            (1, "ethanol", "CCO"), (2, "phenol, pure", "c1ccccc1O")]
    (tmp_path / "ws.txt").write_text("CCO ethanol, absolute\nc1ccccc1O phenol\n")  # by spaces
    assert list(read_smiles_file(tmp_path / "ws.txt")) == [
        (1, "ethanol, absolute", "CCO"), (2, "phenol", "c1ccccc1O")]
    (tmp_path / "h.tsv").write_text("name\tstructure\nethanol\tCCO\n")
    with pytest.raises(InputFileError, match=r"without a 'smiles' column.*name, structure"):
        list(read_smiles_file(tmp_path / "h.tsv"))
    whole = gzip.compress(b"smiles\tname\n" + b"".join(b"C" * (i % 9 + 1) + b"\tm\n"
                                                       for i in range(4000)))
    (tmp_path / "cut.tsv.gz").write_bytes(whole[: len(whole) // 2])
    problems: list = []
    got = list(read_smiles_file(tmp_path / "cut.tsv.gz", problems))
    assert 0 < len(got) < 4000 and len(problems) == 1 and "compressed stream" in problems[0][2]


def test_predict_ei_writes_nothing_when_nothing_is_predicted(tmp_path) -> None:
    from msid.io.errors import InputFileError

    model = SHIPPED / "neims_student_cc-by-nc-sa.safetensors"
    if not model.exists():
        pytest.skip("shipped student missing")
    for text, match in (("smiles\tname\n", "no molecule in the file"),
                        ("xx\nC1CC(\n", "no molecule could be predicted, 2 line")):
        (tmp_path / "in.tsv").write_text(text)
        for out in ("lib.msp", "lib.h5"):
            with pytest.raises(InputFileError, match=match):
                predict_file(tmp_path / "in.tsv", tmp_path / out, model, progress=False)
            assert not (tmp_path / out).exists()


def test_gradnorm_weights_resume_from_the_state_dict(tmp_path) -> None:
    """GradNorm's reference losses (the first step's) live in the state dict, so a student
    restored from a checkpoint weights its losses as the uninterrupted one does."""
    from msid.ei.neims_train import NeimsDataset, NeimsModel, store_items

    cfg = NeimsConfig(kind="student", max_mz=300, gradnorm=True, **TINY["student"])
    items = store_items(ei_store(EI_MSP), max_mass=300, limit=32)
    ds = NeimsDataset(items, cfg)
    targets = np.stack([ds.target(i) for i in range(len(ds))])
    ds.soft, ds.soft_std = targets[::-1].copy(), np.full_like(targets, 0.1)  # other spectra
    first, later = ds.collate(list(range(16))), ds.collate(list(range(16, 32)))
    torch.manual_seed(0)
    a = NeimsModel(cfg).eval()  # no dropout: the three models see the same forward pass
    a.loss(first)
    l0 = a.state_dict()["gradnorm_l0"].clone()
    assert (l0 > 0).all()
    resumed, fresh = NeimsModel(cfg).eval(), NeimsModel(cfg).eval()
    resumed.load_state_dict(a.state_dict())
    fresh.load_state_dict({k: v for k, v in a.state_dict().items() if k != "gradnorm_l0"},
                          strict=False)
    for m in (a, resumed, fresh):
        m.loss(later)
    torch.testing.assert_close(resumed.task_w, a.task_w)
    torch.testing.assert_close(a.state_dict()["gradnorm_l0"], l0)  # kept, not moved
    assert not torch.allclose(fresh.task_w, a.task_w)  # without it, it restarts from 1:1
    assert "gradnorm_l0" not in NeimsModel(NeimsConfig(kind="student")).state_dict()
    # the Trainer's EMA averages weights, not this state: evaluated weights carry the live one
    from msid.models.config import TrainConfig
    from msid.train import Trainer

    tr = Trainer(a.train(), TrainConfig(max_steps=3, batch_size=16, ema_decay=0.9, eval_every=0,
                                        checkpoint_every=0, warmup_steps=1, progress=False),
                 ds, collate_fn=ds.collate, workdir=tmp_path, log=lambda *_: None)
    tr.fit()
    assert "gradnorm_l0" not in tr.ema and "task_w" not in tr.ema
    torch.testing.assert_close(tr.eval_weights()["gradnorm_l0"], l0)
    # a gradnorm student saved without it (before it was kept) still loads
    old = NeimsModel(cfg)
    del old._buffers["gradnorm_l0"]
    save_neims(old, tmp_path / "student.safetensors", training={})
    loaded, _ = load_neims(tmp_path / "student.safetensors")
    assert not loaded.gradnorm_l0.any()  # unset: a further run takes its first losses


@pytest.mark.parametrize(("settings", "named"), [
    ({"teacher": {"widht": 5}}, "teacher: NeimsConfig: unknown keys ['widht']"),
    ({"train": {"foo": 1}}, "train: TrainConfig: unknown keys ['foo']"),
    ({"mc_sampels": 4}, "NeimsRunConfig: unknown keys ['mc_sampels']"),
])
def test_neims_run_settings_name_a_mistyped_key(settings, named):
    """A mistyped key in ei_prediction.run is an error naming it, never a default that a GPU
    run trains with; the shipped config's settings are all known."""
    import yaml

    with pytest.raises(ValueError) as e:
        NeimsRunConfig.from_dict(settings)
    assert named in str(e.value)
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert NeimsRunConfig.from_dict(shipped["ei_prediction"]["run"]).max_mz > 0


def test_derivative_spectra_and_labelled_structures_in_the_shipped_records() -> None:
    """The shipped MassBank EI records hold GC-MS spectra of TMS derivatives annotated with
    the parent compound (13C-citric acid: peaks up to m/z 468 for a structure of nominal mass
    193). They are left out of NEIMS training and test, counted; every record whose intensity
    stays within its molecular ion's reach is kept. The 13C-labelled acids weigh their labels."""
    from msid.ei.neims_train import store_items
    from msid.ei.nominal import ION_REACH, intensity_above_ion

    store = ei_store(EI_MSP)
    with SpectrumStore(store) as st:
        md = st.metadata
        mz, inten, off = st.all_peaks()
    every = store_items(store, max_mass=500)
    kept = store_items(store, max_mass=500, max_above_ion=0.05)
    assert kept.above_ion == len(every.rows) - len(kept.rows) >= 20
    share = {int(i): intensity_above_ion(mz[off[i]:off[i + 1]], inten[off[i]:off[i + 1]],
                                         mol_graph(md.smiles.iat[i]).mass) for i in every.rows}
    assert {i for i, s in share.items() if s <= 0.05} == set(kept.rows.tolist())
    kept_share = [s for s in share.values() if s <= 0.05]
    left_out = [s for s in share.values() if s > 0.05]
    assert np.mean([s == 0 for s in kept_share]) > 0.7  # most: nothing at all above M+8
    assert np.median(left_out) > 0.3  # a derivative's spectrum: much of it above the parent
    citric = md.index[md.smiles.str.contains(r"\[13C", regex=True)
                      & md.name.str.startswith("Citric acid")]
    assert len(citric) and not set(citric) & set(kept.rows.tolist())
    for i in citric:  # the peaks lie far above even the labelled mass (193..198)
        mass = mol_graph(md.smiles.iat[i]).mass
        assert 193 <= mass <= 198
        assert mz[off[i]:off[i + 1]].max() > mass + ION_REACH + 200
    assert mol_graph("O=[13C](O)[13CH2][13CH2][13C](=O)O").mass == 122


def test_the_ei_report_marks_derivative_library_spectra() -> None:
    """On the shipped MassBank EI records: a library match whose spectrum lies far above its
    structure's molecular ion (a TMS spectrum under the parent compound) is marked in the EI
    report, naming the highest peak and the structure's nominal mass; a record of the
    structure itself is not."""
    from msid.report.ei import derivative_note

    store = ei_store(EI_MSP)
    with SpectrumStore(store) as st:
        md = st.metadata
        notes = {i: derivative_note(md.smiles.iat[i], *st.peaks(i)) for i in range(len(md))
                 if md.smiles.iat[i]}
    citric = [i for i in notes if md.name.iat[i].startswith("Citric acid")
              and "[13C" in md.smiles.iat[i]]
    assert citric and all(notes[i].startswith("derivative: peaks to m/z") for i in citric)
    assert any("structure M 193" in notes[i] for i in citric)
    plain = sum(not n for n in notes.values())
    assert 300 < plain < len(notes)  # the records of the structures themselves: no mark
