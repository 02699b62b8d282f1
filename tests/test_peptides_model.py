"""PepTRM end to end on real annotated spectra: train a few steps, model file, CLI, mzTab."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pyteomics import mgf, mztab

from msid.cli import main
from msid.io.errors import ModelFileError
from msid.peptides.data import PeptideSpectrum, read_annotated_mgf
from msid.peptides.physics import parse_proforma
from msid.peptides.training import load_peptrm, per_step_metrics, predict

ROOT = Path(__file__).resolve().parents[1]
MGF = sorted((ROOT / "resources" / "peptides").glob("*.mgf.gz"))
SMALL = {"size": "tiny", "model": {"d_model": 32, "n_heads": 2, "enc_layers": 1, "T": 2,
                                   "n": 1, "max_peaks": 32, "n_freqs": 8},
         "train": {"max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "batch_size": 4,
                   "warmup_steps": 1, "progress": False, "num_threads": 1},
         "curriculum": {"synthetic_per_batch": 4}}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny PepTRM trained through the command line (``msid train peptrm``)."""
    import yaml

    d = tmp_path_factory.mktemp("peptrm")
    out, cfg = d / "peptrm.safetensors", d / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(SMALL))
    args = [a for m in MGF for a in ("--data", str(m))]
    assert main(["train", "peptrm", *args, "--config", str(cfg), "--out", str(out)]) == 0
    return out


def test_train_cli_names_what_a_family_trains_from(tmp_path, capsys):
    assert main(["train", "peptrm", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "peptrm trains from --data" in capsys.readouterr().err
    assert main(["train", "peptrm", "--data", str(MGF[0]), "--size", "huge",
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "peptrm sizes are tiny, published" in capsys.readouterr().err
    assert main(["train", "ranker", "--train", str(MGF[0]),
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "ranker trains from --val and --index" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_model_file_card_history_and_tampering(model_file, tmp_path):
    card = json.loads(model_file.with_suffix(".json").read_text())
    assert card["family"] == "peptrm" and card["training"]["steps"] == 4
    assert card["training"]["split"]["by"].startswith("peptide sequence")
    assert len(card["metrics"]["val_per_step"]) == 2
    hist = json.loads(model_file.with_suffix(".history.json").read_text())
    assert [r["step"] for r in hist["val"]] == [2, 4]
    model, _ = load_peptrm(model_file)
    assert model.cfg.T == 2 and not model.training
    bad = tmp_path / "peptrm.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    bad.with_suffix(".json").write_text(model_file.with_suffix(".json").read_text())
    with pytest.raises(ModelFileError):
        load_peptrm(bad)


def test_predict_and_per_step(model_file):
    model, _ = load_peptrm(model_file)
    spectra = read_annotated_mgf(MGF[0]).spectra[:6]
    dec = predict(model, spectra, decoding="beam", beam_size=4)
    assert len(dec) == 6 and all(isinstance(d.score, float) for d in dec)
    steps = per_step_metrics(model, spectra)
    assert [r["step"] for r in steps] == [1, 2]
    with torch.no_grad():
        from msid.peptides.model import tensorize
        out = model(tensorize(spectra, model.cfg, model.vocab, with_tokens=False))
    assert len(out) == 2 and out[0].shape == (6, model.cfg.max_len, len(model.vocab))


@pytest.mark.parametrize("method", ["peptrm", "dp"])
def test_cli_writes_tsv_and_mztab(model_file, tmp_path, method):
    spectra = read_annotated_mgf(MGF[1]).spectra[:8]
    src = tmp_path / "q.mgf"
    mgf.write([{"m/z array": s.mz, "intensity array": s.intensity,
                "params": {"title": s.id, "pepmass": s.precursor_mz,
                           "charge": f"{s.charge}+", "scans": str(k)}}
               for k, s in enumerate(spectra)], output=str(src))
    tsv, tab = tmp_path / "out.tsv", tmp_path / "out.mztab"
    rc = main(["denovo-peptides", str(src), "--out", str(tsv), "--out", str(tab),
               "--model", str(model_file), "--method", method, "--beam-size", "4"])
    assert rc == 0
    df = pd.read_csv(tsv, sep="\t", dtype={"aa_scores": str})
    assert list(df.columns[:5]) == ["query_id", "rank", "sequence", "score",
                                    "precursor_mz_error_ppm"]
    t = mztab.MzTab(str(tab))
    assert t.version == "1.0.0"
    # residues that only open a sequence (pyro-Glu, pyro-carbamidomethyl) are N-terminal
    mtd = dict(re.findall(r"^MTD\t(\S+)\t(.*)$", tab.read_text(), re.M))
    positions = {v.split(", ")[2]: mtd[f"{k}-position"]
                 for k, v in mtd.items() if re.fullmatch(r"variable_mod\[\d+\]", k)}
    assert positions["Pyro-carbamidomethyl"] == positions["Gln->pyro-Glu"] == "Any N-term"
    assert positions["Oxidation"] == "Anywhere"
    assert "every I/L is written L" in mtd["description"]
    assert not df["sequence"].str.contains("I").any()
    psm = t.spectrum_match_table
    assert len(psm) == len(df)
    if len(df):
        assert set(psm["opt_global_proforma"]) == set(df["sequence"])
        assert psm["spectra_ref"].str.startswith("ms_run[1]:").all()
        back = pd.to_numeric(psm["opt_global_isotope_corrected_ppm"], errors="coerce")
        np.testing.assert_allclose(back.to_numpy(float),
                                   df["isotope_corrected_ppm"].round(2).to_numpy(float),
                                   atol=0.006)  # NaN (no mass match) on both sides
    # --ppm is the tolerance of either method: a sequence matches the precursor within it
    tight = tmp_path / "tight.tsv"
    assert main(["denovo-peptides", str(src), "--out", str(tight), "--model", str(model_file),
                 "--method", method, "--beam-size", "4", "--ppm", "0.5"]) == 0
    matched = pd.read_csv(tight, sep="\t").dropna(subset=["isotope_error"])
    assert (matched["isotope_corrected_ppm"].abs() <= 0.5).all()
    if method == "peptrm":  # one probability per sequence token, in TSV and mzTab alike
        assert len(df)
        for seq, aa in zip(df["sequence"], df["aa_scores"], strict=True):
            p = [float(x) for x in aa.split(",")]
            assert len(p) == len(parse_proforma(seq)) and all(0 < x <= 1 for x in p)
        def values(col):
            return [[float(x) for x in str(v).split(",")] for v in col]

        assert values(psm["opt_ms_run[1]_aa_scores"]) == values(df["aa_scores"])
    else:  # the DP gives none
        assert df["aa_scores"].isna().all()
    assert main(["denovo-peptides", str(src), "--out", str(tmp_path / "x.csv"),
                 "--model", str(model_file)]) == 2


def test_run_outputs_and_report_section(model_file, tmp_path):
    """denovo_run on a converted store -> TSV, mzTab, annotations; the report section draws
    the annotated spectra (PNG) and lists the top sequences."""
    from msid.identify import load_queries
    from msid.peptides.denovo import DecodeConfig, denovo_run
    from msid.report.peptides import peptide_section

    spectra = read_annotated_mgf(MGF[0]).spectra[:5]
    src = tmp_path / "run.mgf"
    first = spectra[0]  # and one whose only peak no chain of residue masses can pass
    mgf.write([{"m/z array": s.mz, "intensity array": s.intensity,
                "params": {"title": s.id, "pepmass": s.precursor_mz, "charge": f"{s.charge}+"}}
               for s in spectra]
              + [{"m/z array": np.array([137.0]), "intensity array": np.array([100.0]),
                  "params": {"title": "lonely", "pepmass": first.precursor_mz,
                             "charge": f"{first.charge}+"}}], output=str(src))
    store = load_queries(src, tmp_path)
    store_path = store.path
    store.close()
    out = {k: tmp_path / f"d.{k}" for k in ("tsv", "mztab", "json")}
    df = denovo_run(store_path, model_file, DecodeConfig(beam_size=4), tsv=out["tsv"],
                    mztab=out["mztab"], annotations=out["json"], n_annotated=3,
                    method="dp", log=lambda *_: None)
    ann = json.loads(out["json"].read_text())
    assert ann["n_spectra"] == 6 and len(ann["spectra"]) == min(3, len(df))
    # every spectrum has a row or a reason, never both, never neither
    unsolved = {q["id"]: q["reason"] for q in ann["skipped"]}
    assert "no chain of residue masses" in unsolved["lonely"]
    assert set(df["query_id"]).isdisjoint(unsolved)
    assert set(df["query_id"]) | set(unsolved) == {s.id for s in spectra} | {"lonely"}
    matched = df[df["isotope_error"].notna()]
    # the isotope-corrected error is what the decoder's tolerance judged (beam search: 50 ppm)
    assert (matched["isotope_corrected_ppm"].abs() <= 50 + 1e-6).all()
    mono = matched[matched["isotope_error"] == 0]
    assert np.allclose(mono["isotope_corrected_ppm"], mono["precursor_mz_error_ppm"])
    assert df.loc[df["isotope_error"].isna(), "isotope_corrected_ppm"].isna().all()
    sec = peptide_section(out["tsv"], out["json"])
    assert len(sec["top"]) == len(df)
    assert all(f["src"].startswith("data:image/png;base64,") for f in sec["figures"])


def test_top_n_gives_ranked_distinct_mass_matching_sequences(tmp_path):
    """--top-n 3 with the shipped model: up to three rows per spectrum, ranks 1..n by falling
    score, distinct sequences, every one beyond the first matching the precursor mass; rank 1
    is what the default (one sequence) writes, and mzTab holds one PSM per row."""
    spectra = read_annotated_mgf(MGF[0]).spectra[:6]
    src = tmp_path / "q.mgf"
    mgf.write([{"m/z array": s.mz, "intensity array": s.intensity,
                "params": {"title": s.id, "pepmass": s.precursor_mz, "charge": f"{s.charge}+"}}
               for s in spectra], output=str(src))
    one, three, tab = tmp_path / "one.tsv", tmp_path / "three.tsv", tmp_path / "three.mztab"
    args = ["denovo-peptides", str(src), "--beam-size", "8"]
    assert main([*args, "--out", str(one)]) == 0
    assert main([*args, "--top-n", "3", "--out", str(three), "--out", str(tab)]) == 0
    a = pd.read_csv(one, sep="\t", dtype={"aa_scores": str})
    b = pd.read_csv(three, sep="\t", dtype={"aa_scores": str})
    assert (a["rank"] == 1).all()
    pd.testing.assert_frame_equal(b[b["rank"] == 1].reset_index(drop=True), a)
    assert (b["rank"] > 1).any() and b.groupby("query_id").size().max() <= 3
    for _, g in b.groupby("query_id"):
        assert list(g["rank"]) == list(range(1, len(g) + 1))
        assert g["sequence"].is_unique and g["score"].is_monotonic_decreasing
    assert (b.loc[b["rank"] > 1, "score"] > 0).all()  # alternatives all match the mass
    psms = mztab.MzTab(str(tab)).spectrum_match_table
    assert len(psms) == len(b)
    assert list(psms["opt_global_rank"].astype(int)) == list(b["rank"])


def test_precursors_out_of_reach_are_not_sequenced_and_are_named(model_file, tmp_path):
    """A precursor of m/z 99999 (2+) is heavier than max_len of the heaviest token, one of 20 is
    lighter than glycine, and one is a negative-mode precursor (2-): none gets a made-up
    sequence; each is counted with its reason in the annotations the run report shows. The
    other spectra are sequenced as before."""
    from msid.identify import load_queries
    from msid.peptides.denovo import DecodeConfig, denovo_run
    from msid.report.peptides import peptide_section

    spectra = read_annotated_mgf(MGF[0]).spectra[:5]
    pepmass = {spectra[1].id: 99999.0, spectra[2].id: 20.0}
    src = tmp_path / "run.mgf"
    mgf.write([{"m/z array": s.mz, "intensity array": s.intensity,
                "params": {"title": s.id, "pepmass": pepmass.get(s.id, s.precursor_mz),
                           "charge": f"{s.charge}{'-' if k == 4 else '+'}"}}
               for k, s in enumerate(spectra)], output=str(src))
    store = load_queries(src, tmp_path)
    store_path = store.path
    store.close()
    out = {k: tmp_path / f"d.{k}" for k in ("tsv", "json")}
    lines: list[str] = []
    df = denovo_run(store_path, model_file, DecodeConfig(beam_size=4), tsv=out["tsv"],
                    annotations=out["json"], method="peptrm", log=lines.append)
    ann = json.loads(out["json"].read_text())
    assert ann["n_spectra"] == 2 and ann["n_skipped"] == 3  # sequenced; set aside
    reasons = {q["id"]: q["reason"] for q in ann["skipped"]}
    assert "above the heaviest peptide peptrm can write" in reasons[spectra[1].id]
    assert "below the lightest peptide" in reasons[spectra[2].id]
    assert reasons[spectra[4].id].startswith("negative-mode precursor")
    assert set(df["query_id"]) <= {spectra[0].id, spectra[3].id}
    assert any("3 spectra not sequenced" in line for line in lines), lines
    assert len(peptide_section(out["tsv"], out["json"])["skipped"]) == 3
    # the batch report counts them under their own reason
    from msid.report.batch import run_summary

    summary = run_summary("run", "peptide", store_path, None, 0.05, denovo=out["tsv"],
                          denovo_annotations=out["json"])
    assert summary["unanswered"]["de novo: not sequenced, precursor mass out of reach"] == 2
    assert summary["unanswered"]["de novo: not sequenced, negative mode"] == 1
    assert summary["n_unanswered"] == 5 - summary["n_answered"]
    # the floor is one glycine (an N-terminal modification alone is no peptide): 68 Da is out
    from msid.peptides.denovo import mass_range, out_of_range

    low, high = mass_range("peptrm", model_file)
    assert 74.0 < low < 76.0 and high > 5000
    assert out_of_range([PeptideSpectrum("q", np.array([50.0]), np.array([1.0]), 35.0, 2)],
                        low, high, "peptrm")[0] == []


def test_shipped_peptrm_beats_the_dp_baseline_on_unseen_peptides():
    """The shipped model, decoded as runs decode it, against the DP baseline on the test fold
    (peptide sequences no model trained on), same spectra, the configured settings."""
    import yaml

    from msid.peptides.data import split_by_sequence
    from msid.peptides.denovo import DecodeConfig, sequence_spectra
    from msid.peptides.metrics import score_predictions, summary

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["peptides"]
    _, card = load_peptrm(ROOT / cfg["model"])
    data = [ROOT / p for p in cfg["data"]]
    assert card["training"]["data"] == [p.name for p in data]
    test = split_by_sequence(read_annotated_mgf(data).spectra, cfg["folds"]["val"],
                             cfg["folds"]["test"])["test"]
    dec = DecodeConfig.from_dict(cfg["decode"])
    truth = [s.tokens for s in test]
    res = {}
    for method in ("peptrm", "dp"):
        d = sequence_spectra(test, method, str(ROOT / cfg["model"]), dec, cfg["dp"],
                             progress=False)
        res[method] = summary(score_predictions([x.tokens for x in d], [x.score for x in d],
                                                truth))
    assert len(test) >= 50
    assert res["peptrm"]["aa_precision"] > res["dp"]["aa_precision"]
    assert res["peptrm"]["peptide_recall"] > res["dp"]["peptide_recall"]
    # and it reads the spectrum: with another peptide's peaks it falls far below
    from dataclasses import replace

    from msid.peptides.leaderboard import _other_peptide

    blind = [replace(s, mz=o.mz, intensity=o.intensity)
             for s, o in zip(test, _other_peptide(test), strict=True)]
    d = sequence_spectra(blind, "peptrm", str(ROOT / cfg["model"]), dec, progress=False)
    blind_res = summary(score_predictions([x.tokens for x in d], [x.score for x in d], truth))
    assert blind_res["aa_precision"] < res["peptrm"]["aa_precision"] / 2
    assert blind_res["peptide_recall"] < res["peptrm"]["peptide_recall"] / 2


def test_lockstep_decoding_matches_one_spectrum_at_a_time():
    """decode_many (one evidence call per step for all spectra) returns what beam and greedy
    return spectrum by spectrum with each spectrum's own evidence function."""
    from msid.peptides.decode import beam, greedy
    from msid.peptides.physics import neutral_from_mz
    from msid.peptides.training import step_logits

    model, _ = load_peptrm(ROOT / "resources" / "models" / "peptrm.safetensors")
    spectra = read_annotated_mgf(MGF[1]).spectra[:12]
    logits, ev = next(step_logits(model, spectra))
    assert ev is not None
    for decoding in ("beam", "greedy"):
        together = predict(model, spectra, decoding=decoding, beam_size=5)
        for i, s in enumerate(spectra):
            def own(prefix, i=i):
                return ev(np.full(len(prefix), i), prefix)
            pm = neutral_from_mz(s.precursor_mz, s.charge)
            alone = (beam(logits[i], model.vocab, pm, 5, evidence=own) if decoding == "beam"
                     else greedy(logits[i], model.vocab, pm, evidence=own))
            assert alone.tokens == together[i].tokens
            assert alone.score == pytest.approx(together[i].score, abs=1e-5)  # float32 sums


def test_peptrm_training_on_other_data_under_the_same_name_starts_afresh(tmp_path):
    """A run's checkpoints are kept by what it was fed, not by file name: the same path with
    other spectra trains from scratch (and says so); the same data resumes (and says so)."""
    import shutil

    from msid.peptides.training import train_peptrm

    data = tmp_path / "pep.mgf.gz"
    shutil.copy(ROOT / "resources" / "peptides" / "casanovo_sample_train.mgf.gz", data)
    config = {"size": "tiny", "train": {"max_steps": 2, "batch_size": 4, "eval_every": 0,
                                        "checkpoint_every": 1, "progress": False}}
    logs: list[str] = []
    first = train_peptrm([data], config, tmp_path / "m.safetensors", log=logs.append)
    train_peptrm([data], config, tmp_path / "m.safetensors", log=logs.append)
    assert any("resuming from" in m for m in logs)
    shutil.copy(ROOT / "resources" / "peptides" / "nist_bsa_it_consensus_train.mgf.gz", data)
    logs.clear()
    other = train_peptrm([data], config, tmp_path / "m.safetensors", log=logs.append)
    assert any("training from scratch" in m for m in logs)
    assert not any("resuming from" in m for m in logs)
    assert other["training"]["n_train_spectra"] != first["training"]["n_train_spectra"]


def test_a_labelled_mgf_is_scored_against_its_sequences(tmp_path, capsys):
    """An MGF whose records carry SEQ= gets the leaderboard's metrics of its rank-1 sequences;
    the labels themselves as predictions score 1, a spectrum without a row counts as missed."""
    from msid.peptides.labelled import mgf_sequences, score_labelled

    src = tmp_path / "lab.mgf"
    spectra = read_annotated_mgf(MGF[0]).spectra[:12]
    mgf.write([{"m/z array": s.mz, "intensity array": s.intensity,
                "params": {"title": s.id, "pepmass": s.precursor_mz, "charge": f"{s.charge}+",
                           "seq": "".join(s.tokens)}}
               for s in spectra], output=str(src))
    labels = mgf_sequences(src)
    assert list(labels) == [f"index={k}" for k in range(12)]
    perfect = pd.DataFrame({"native_id": list(labels), "rank": 1, "score": 0.9,
                            "sequence": list(labels.values()), "aa_scores": ""})
    m = score_labelled(perfect, labels)
    assert m["peptide_recall"] == m["aa_precision"] == m["aa_recall"] == 1.0
    m = score_labelled(perfect.iloc[:9], labels)  # three spectra got no sequence
    assert m["peptide_recall"] == pytest.approx(9 / 12) and m["aa_precision"] == 1.0
    assert m["without_sequence"] == 3
    out = tmp_path / "out.tsv"
    rc = main(["denovo-peptides", str(src), "--out", str(out), "--method", "dp",
               "--metrics", str(tmp_path / "m.json")])
    assert rc == 0
    assert "12 spectra carry SEQ=; rank 1 against them: peptide recall" in capsys.readouterr().err
    got = json.loads((tmp_path / "m.json").read_text())
    want = score_labelled(pd.read_csv(out, sep="\t", dtype={"native_id": str}), labels)
    assert got["method"] == "dp" and got["peptide_recall"] == want["peptide_recall"]
    assert 0 <= got["aa_precision"] <= 1 and got["labelled"] == 12
    # --max-spectra 4: the 8 labelled spectra it leaves out were not sequenced: not scored
    assert main(["denovo-peptides", str(src), "--out", str(tmp_path / "four.tsv"), "--method",
                 "dp", "--max-spectra", "4", "--metrics", str(tmp_path / "m4.json")]) == 0
    assert "8 labelled spectra past --max-spectra 4" in capsys.readouterr().err
    assert json.loads((tmp_path / "m4.json").read_text())["labelled"] == 4
    # a damaged record is skipped as the run skips it; the labels keep their records' ids
    text = src.read_text().split("END IONS\n")
    text[1] = text[1].replace("\n", "\nnot a peak line\n", 3)
    (tmp_path / "bad.mgf").write_text("END IONS\n".join(text))
    bad = mgf_sequences(tmp_path / "bad.mgf")
    assert "index=1" not in bad and list(bad)[:2] == ["index=0", "index=2"]
    assert {k: labels[k] for k in bad} == bad
