"""The batch summary report: per-run counts, reasons, links and provenance."""

from __future__ import annotations

import os

import yaml

from conftest import ROOT
from msid.cli import main
from msid.report.batch import run_summary, write_batch_report
from msid.report.run_report import write_run_report


def test_batch_report_counts_links_and_provenance(data_dir, tmp_path, pesticides_store):
    ids = tmp_path / "runs" / "pest" / "identifications.tsv"
    ids.parent.mkdir(parents=True)
    q = data_dir / "gnps_pesticides_matchms_train.mgf.gz"
    assert main(["identify", str(q), "--library", str(pesticides_store), "--out",
                 str(ids)]) == 0
    report = ids.parent / "report.html"
    write_run_report(pesticides_store, ids, pesticides_store, report, sample="pest")
    s = run_summary("pest", "small_molecule", pesticides_store, ids, fdr=0.05)
    assert s["n_kept"] == 64 and s["n_answered"] + s["n_unanswered"] == 64
    assert 0 < s["n_confident"] <= s["n_answered"]
    assert 0 < s["n_compounds"] <= s["n_confident"]  # distinct structures of confident hits
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["library"]["path"] = str(ROOT / config["library"]["path"])
    out = tmp_path / "batch_report.html"
    compounds = ids.parent / "compounds.tsv"
    write_batch_report([{"sample": "pest", "kind": "small_molecule", "spectra": pesticides_store,
                         "identifications": ids, "report": report, "compounds": compounds}],
                       out, config=config, unread=[("notes.txt", "not a run file msid reads")],
                       libraries={"small_molecule": pesticides_store})
    html = out.read_text()
    assert "1 file(s) in the runs folder or rows of" in html
    assert "<li>notes.txt: not a run file msid reads</li>" in html
    assert 'href="runs/pest/report.html"' in html
    assert f'<a href="runs/pest/compounds.tsv">{s["n_compounds"]}</a>' in html
    for package in ("pyopenms", "matchms", "rdkit", "ms-entropy", "torch"):
        assert f"<td>{package}</td>" in html
    assert "precursor_tol_ppm" in html  # the parameters used
    digest = html.split("sha256 <code>")[1][:64]
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    # the store searched, by the content digest each run's mzTab-M names it by
    from msid.store import SpectrumStore

    with SpectrumStore(pesticides_store) as st:
        assert (f"<td>small_molecule</td><td><code>{pesticides_store}</code></td>\n"
                f"<td><code>{st.content_sha256}</code></td>") in html
    assert "Runs with the same spectra" not in html
    # the same file sent again under another name: said, by the spectra the two runs hold
    # (their stores differ: each names its own source file)
    import shutil

    from msid.convert import convert_file

    stores = []
    for name in ("QC_01", "QC_01_again"):
        shutil.copy(data_dir / "bad" / "pesticides_first3.mgf", tmp_path / f"{name}.mgf")
        convert_file(tmp_path / f"{name}.mgf", tmp_path / f"{name}.h5", progress=False)
        stores.append(tmp_path / f"{name}.h5")
    with SpectrumStore(stores[0]) as a, SpectrumStore(stores[1]) as b:
        assert a.content_sha256 != b.content_sha256  # the file name is part of the content
        assert a.spectra_sha256() == b.spectra_sha256()
    run = {"kind": "small_molecule", "identifications": None, "report": report}
    write_batch_report([{**run, "sample": "QC_01", "spectra": stores[0]},
                        {**run, "sample": "QC_01_again", "spectra": stores[1]},
                        {**run, "sample": "pest", "spectra": pesticides_store}], out,
                       config=config)
    html = out.read_text()
    assert "Runs with the same spectra" in html and "<li>QC_01, QC_01_again</li>" in html
    assert "pest</li>" not in html


def test_run_report_shows_each_method_and_every_reason(tmp_path, pesticides_store, pool_index):
    """Ranker and de novo rows get their own sections (with structure drawings); the library
    table keeps library hits only; a spectrum nobody answered lists every method's reason."""
    from msid.chem.candidates import CandidateIndex
    from msid.methods import load_library
    from msid.rankings import write_rankings
    from msid.run_methods import RunMethodsConfig, identify_run
    from msid.store import SpectrumStore

    # fdr -1: no library hit is confident
    cfg = RunMethodsConfig(methods=["library", "ranker", "denovo"], fdr=-1.0,
                           method_options={"denovo": {"beam_width": 8, "fallback": False}})
    with SpectrumStore(pesticides_store) as st:
        rows = identify_run(st, cfg, library=load_library(str(pesticides_store)),
                            index=CandidateIndex(pool_index), model_dir=ROOT / "resources/models")
    ids = write_rankings(rows, tmp_path / "identifications.tsv")
    out = tmp_path / "report.html"
    write_run_report(pesticides_store, ids, pesticides_store, out, sample="pest")
    html = out.read_text()
    for method in ("ranker", "denovo"):
        section = html.split(f"<h3>{method}: spectra without a confident library hit</h3>")[1]
        answered = {r["query_id"] for r in rows if r["method"] == method and r["rank"] == 1}
        assert f"{len(answered)} of the 64 spectra it ran on got an answer" in section
    ranker = html.split("<h3>ranker:")[1].split("<h3>")[0]
    assert "<svg" in ranker  # structure drawings
    library = html.split("<h2>Identifications</h2>")[1].split("<h3>ranker:")[0]
    ranker_only = {r["inchikey"] for r in rows if r["method"] == "ranker" and r["rank"]} - {
        r["inchikey"] for r in rows if r["method"] == "library"}
    assert ranker_only and not any(ik in library for ik in ranker_only)
    s = run_summary("pest", "small_molecule", pesticides_store, ids, fdr=0.05)
    for reason in s["unanswered"]:  # every method says why, in the batch report too
        assert reason.startswith("library: ") and "; ranker: " in reason


def test_short_spectrum_ids_drop_what_the_whole_run_shares():
    """The demo's Sciex run: native ids 'sample=1 period=1 cycle=N experiment=M' show as
    'cycle=N experiment=M', one distinct name per spectrum; ids of another form stay whole."""
    from itertools import islice

    from msid.io import read_spectra
    from msid.report.ids import short_ids

    recs = list(islice(read_spectra(ROOT / "resources/runs/pestmix_dda.mzML.gz"), 50))
    ids = [r.record_id for r in recs]
    assert all(i.startswith("sample=1 period=1 cycle=") for i in ids)
    short = short_ids(ids)
    assert all(short[i] == i.removeprefix("sample=1 period=1 ") for i in ids)
    assert len(set(short.values())) == len(set(ids))
    assert short_ids(["CCMSLIB00001058235", "CCMSLIB00001058236"])["CCMSLIB00001058235"] == \
        "CCMSLIB00001058235"


def test_batch_provenance_names_every_run_kinds_models():
    """The models section names the models each run kind used: GLMR and de novo with the
    Ranker they re-score with, the EI embedding model, PepTRM; a kind not in the batch adds
    none of its own."""
    from msid.report.batch import model_cards, used_models

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    # a relative models.dir and the absolute shipped path of the same file: listed once
    config["models"]["dir"] = os.path.relpath(ROOT / "resources" / "models")
    config["identify"]["methods"] = ["library", "ranker", "glmr", "denovo"]
    for section in ("ei_search", "peptides"):
        config[section]["model"] = str(ROOT / config[section]["model"])
    cards = model_cards(used_models(config, {"small_molecule", "ei", "peptide"}))
    labels = [c["method"] for c in cards]
    assert labels == ["ranker", "glmr", "denovo", config["ei_search"]["method"], "peptrm"]
    assert all(len(c["digest"]) == 12 and '"family"' in c["card"] for c in cards)
    ei_card = cards[3]["card"]
    assert "licence" in ei_card  # the non-commercial EI model says so, in the table too
    assert cards[3]["noncommercial"] and cards[3]["licence"].startswith("CC BY-NC-SA")
    assert not cards[0]["noncommercial"] and "CC BY" in cards[0]["licence"]
    assert [label for label, _ in used_models(config, {"small_molecule"})] == [
        "ranker", "glmr", "denovo"]
    # de novo re-scoring with fp_ffn names that model; with weight 0 it names none
    config["identify"]["methods"] = ["denovo"]
    config["identify"]["method_options"] = {"denovo": {"rescore_with": "fp_ffn"}}
    assert [label for label, _ in used_models(config, {"small_molecule"})] == [
        "denovo", "denovo (fp_ffn)"]
    config["identify"]["method_options"] = {"denovo": {"rescore_weight": 0.0}}
    assert [label for label, _ in used_models(config, {"small_molecule"})] == ["denovo"]


def test_a_small_run_is_warned_that_its_qvalues_are_coarse():
    """Target-decoy q-values over a handful of hits move in steps of 1/n: the run report says
    so below 100 competing hits, and says nothing for a run with enough or none."""
    import math

    import pandas as pd

    from msid.report.run_report import FEW_HITS, few_qvalues_note

    few = pd.DataFrame({"q_value": [0.0, 0.0, 0.0, math.nan]})
    note = few_qvalues_note(few)
    assert "Only 3 library hit(s)" in note and "1/3" in note
    assert few_qvalues_note(pd.DataFrame({"q_value": [0.01] * FEW_HITS})) == ""
    assert few_qvalues_note(pd.DataFrame({"q_value": [math.nan] * 5})) == ""


def test_an_ei_run_filed_as_small_molecule_is_told_so(tmp_path, pesticides_store):
    """The shipped GC-MS demo spectra (MSP, no precursor) read as a small-molecule run: every
    record is quarantined for want of a precursor, and the report says what that means."""
    from msid.convert import convert_file
    from msid.preprocess_config import PreprocessConfig

    store = tmp_path / "gc.h5"
    stats = convert_file(ROOT / "resources/runs/gcms_ei_demo.msp", store,
                         clean=PreprocessConfig(), ms2_only=True, progress=False)
    assert stats.read == 8 and stats.stored == 0
    out = tmp_path / "report.html"
    write_run_report(store, None, pesticides_store, out, sample="gc")
    html = out.read_text()
    assert "states a precursor m/z. An EI (GC-MS) run? Give it kind &#39;ei&#39;" in html
    write_run_report(pesticides_store, None, pesticides_store, out, sample="pest")
    assert "An EI (GC-MS) run?" not in out.read_text()


def test_model_cards_are_table_rows_with_the_whole_card_in_details(tmp_path, pesticides_store,
                                                                   monkeypatch):
    """Each model is one table row (file, family, date, training spectra, compact val/test
    metrics, digest); its whole card, however long, is in a collapsed details block."""
    import json

    from msid.report.batch import card_metrics, model_cards, train_spectra

    card = {"family": "ranker", "created": "2026-11-22T09:35:27+00:00",
            "metrics": {"val": {"hit@1": 0.65432, "hit@5": 0.8, "step": 600},
                        "test_recall@1": 0.5, "val_per_step": [{"hit@1": 0.1}]},
            "training": {"members": [{"n_train_spectra": 100}, {"n_train_spectra": 100}]},
            "notes": "x" * 5000 + "THE END"}  # past the old 3000-character cut
    weights = tmp_path / "ranker.safetensors"
    weights.write_bytes(b"weights")
    (tmp_path / "ranker.json").write_text(json.dumps(card))
    (row,) = model_cards([("ranker", weights)])
    assert row["name"] == "ranker.safetensors" and row["family"] == "ranker"
    assert row["created"] == "2026-11-22" and row["n_train_spectra"] == "100"
    assert row["metrics"] == "val: hit@1 0.654 · hit@5 0.800; test_recall@1 0.500"
    assert len(row["digest"]) == 12 and json.loads(row["card"]) == card  # complete
    members = [{"n_train_spectra": 3}, {"n_train_spectra": 5}]
    assert train_spectra({"training": {"members": members}}) == "3\u20135 per member"
    assert train_spectra({}) == "" and card_metrics({"metrics": {"cosine": 0.5}}) == ""
    # in the report: the row, and the card whole in a collapsed details block
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["models"]["dir"] = str(tmp_path)
    config["identify"]["methods"] = ["ranker"]
    out = tmp_path / "batch_report.html"
    write_batch_report([{"sample": "pest", "kind": "small_molecule", "spectra": pesticides_store,
                         "identifications": None, "report": tmp_path / "pest.html"}], out,
                       config=config)
    html = out.read_text().split("<h3>Model cards</h3>")[1]
    assert "<tr><td>ranker</td><td><code>ranker.safetensors</code></td>" in html
    assert f"<code>{row['digest']}…</code>" in html and "val: hit@1 0.654" in html
    details = html.split("<details>")[1].split("</details>")[0]
    assert "<pre>" in details and "THE END" in details and "truncated" not in details
    # a card past the cap ends with an explicit marker naming the card's file
    monkeypatch.setattr("msid.report.batch.MAX_CARD_CHARS", 100)
    (row,) = model_cards([("ranker", weights)])
    assert row["card"].endswith(f"… (truncated; full card: {tmp_path / 'ranker.json'})")


def test_answers_without_qvalues_are_not_called_tentative():
    """The "Spectra per run" bars: a run without q-values (EI, peptide) counts its answers
    as answered without an FDR estimate; only a run with q-values has tentative answers."""
    from msid.report.batch import NO_FDR, spectra_bars

    runs = [{"n_confident": 23, "n_answered": 123, "n_unanswered": 90, "n_quarantined": 0},
            {"n_confident": None, "n_answered": 100, "n_unanswered": 80, "n_quarantined": 2}]
    bars = {label: list(vals) for label, _, vals in spectra_bars(runs)}
    assert bars["confident"] == [23, 0] and bars["tentative"] == [100, 0]
    assert bars[NO_FDR] == [0, 100] and "tentative" not in NO_FDR
    assert bars["no answer"] == [90, 80] and bars["quarantined"] == [0, 2]


def test_fdr_curve_note_says_what_the_curve_is_and_why_the_estimate_is_zero(tmp_path):
    """The note names the benchmark fold (not these runs) and, from the curve's table, how
    many of the best hits have an estimate of 0 and the true FDR there."""
    import json

    from msid.report.batch import fdr_curve_note

    png = tmp_path / "fdr_curve.png"
    png.write_bytes(b"")
    note = fdr_curve_note(png, 0.05)
    assert "held-out test fold" in note and "not on the runs above" in note
    assert "estimate is 0" not in note  # no table: nothing said about the data
    (tmp_path / "fdr_curve.json").write_text(json.dumps({"fold": "val"}))
    (tmp_path / "fdr_curve.tsv").write_text(
        "threshold\tn_target\tn_decoy\tq_value\ttrue_fdr\n"
        "0.1\t20\t2\t0.1\t0.1\n0.5\t15\t0\t0\t0.04\n0.9\t10\t0\t0\t0.0\n")
    note = fdr_curve_note(png, 0.05)
    assert "held-out val fold" in note
    assert ("the estimate is 0 for the best 15 of 20 hits (every cut-off down to score "
            "0.500): none of the 2 decoy winners scored that high, while the true FDR there "
            "is already 4.0%") in note


def test_batch_report_names_the_ei_library_files_and_fits_the_page(tmp_path,
                                                                   pesticides_store):
    """An EI run's batch report names the EI library file(s) it was searched against (with
    digests); images scale to the page and tables scroll in their own box."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["ei_search"]["libraries"] = [str(pesticides_store)]
    config["ei_search"]["insilico_library"] = ""
    config["ei_search"]["model"] = ""
    out = tmp_path / "batch_report.html"
    write_batch_report([{"sample": "gc", "kind": "ei", "spectra": pesticides_store,
                         "identifications": None, "report": tmp_path / "gc.html"}], out,
                       config=config)
    html = out.read_text()
    from msid.digest import sha256_file

    assert "EI library file(s), searched by the EI runs:" in html
    assert f"<code>{pesticides_store}</code> · sha256 <code>{sha256_file(pesticides_store)}" \
        in html
    assert "img{max-width:100%" in html and "overflow-x:auto" in html


def test_leaderboard_chart_marks_and_explains_flagged_methods():
    """A flagged method's label is short (a mark, not the whole phrase) and the chart
    explains the mark in a footnote below the panels."""
    import io

    import pandas as pd
    from matplotlib.image import imread

    from msid.report.leaderboard import CHART_FOOTNOTE, CHART_MARK, NOT_READING
    from msid.report.plots import leaderboard_bars

    assert CHART_FOOTNOTE.startswith(f"{CHART_MARK} {NOT_READING}")
    table = pd.DataFrame({"candidates": ["mass"] * 3,
                          "method": ["ranker", f"reconstructor {CHART_MARK}", "random"],
                          "hit@1": [.4, .3, .1], "hit@1_ci_low": [.3, .2, .05],
                          "hit@1_ci_high": [.5, .4, .15]})
    plain = imread(io.BytesIO(leaderboard_bars(table)), format="png")
    noted = imread(io.BytesIO(leaderboard_bars(table, footnote=CHART_FOOTNOTE)), format="png")
    assert noted.shape[0] > plain.shape[0]  # the footnote line below
