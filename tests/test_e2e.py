"""End-to-end: the real demo DAG on the shipped runs and library (no mocks). Marker: e2e."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_snakemake as _snakemake
from msid.metrics import MetricsRecord
from msid.rankings import read_rankings

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(demo_run) -> Path:
    return demo_run


def test_reports_per_run(demo):
    for sample in ("pestmix_dda", "peptide_qc1"):
        html = (demo / "results" / "runs" / sample / "report.html").read_text()
        assert "records read" in html and "data:image/png;base64," in html
    ids = read_rankings(demo / "results/runs/pestmix_dda/identifications.tsv")
    top = ids[ids["rank"] == 1]
    # the pesticide mix contains cyproconazole and azinphos-methyl; the library finds them
    assert {"UFNOUKDBUJZYDE", "CJJOSEISRRTUQB"} <= set(top["inchikey"].str[:14])
    assert (top.loc[top["inchikey"].str.startswith("UFNOUKDBUJZYDE"), "score"] > 0.9).any()
    html = (demo / "results/runs/pestmix_dda/report.html").read_text()
    assert "Mirror plots" in html
    compounds = pd.read_csv(demo / "results/runs/pestmix_dda/compounds.tsv", sep="\t")
    assert "UFNOUKDBUJZYDE" in set(compounds.loc[compounds["confident"], "inchikey"].str[:14])
    assert "<h3>Compounds found</h3>" in html and "Cyproconazole" in html
    # one mirror plot per compound: its best spectrum (the run has several per compound)
    shown = [c.split("(")[1].split(")")[0] for c in html.split("<figcaption>")[1:]]
    assert len(shown) >= 10 and len(set(shown)) == len(shown)
    # what a report sent on alone needs: the library and its digest, the tolerances, the ion
    assert "content sha256" in html and "precursor window: the wider of 10.0 ppm" in html
    assert "<th>adduct</th>" in html and "[M+H]+" in html
    assert 'href="../../batch_report.html"' in html
    ei = (demo / "results/runs/gcms_ei_demo/report.html").read_text()
    assert "marked <i>derivative</i>" in ei  # the MassBank EI demo records are TMS spectra


def test_leaderboard_has_baselines_measured_in_the_same_run(demo):
    import json

    lb = pd.read_csv(demo / "results/leaderboard/leaderboard.csv")
    assert set(lb["method"]) == {"random", "library", "ranker", "reconstructor", "deepsets",
                                 "fp_ffn"}
    assert set(lb["candidates"]) == {"mass", "formula"}
    assert (lb["fold"] == "test").all()
    # the far split: every method and setting again, on the queries far from training only
    splits = pd.read_csv(demo / "results/benchmark/query_splits.tsv", sep="\t",
                         dtype={"query_id": str})
    far_ids = set(splits.loc[splits["nearest_train_tanimoto"] < 0.5, "query_id"])
    assert 0 < len(far_ids) < len(splits) == 200
    far = lb[lb["split"] == "far"]
    assert len(far) == 12 and set(far["candidates"]) == {"mass", "formula"}
    for kind in ("mass", "formula"):
        asked = set(pd.read_csv(demo / f"results/benchmark/candidates.{kind}.tsv", sep="\t",
                                dtype={"query_id": str})["query_id"])
        assert (far.loc[far["candidates"] == kind, "n_queries"] == len(asked & far_ids)).all()
    lb = lb[lb["split"] == "inchikey"]
    sets = json.loads((demo / "results/benchmark/candidate_sets.json").read_text())
    for kind in ("mass", "formula"):
        sub = lb[lb["candidates"] == kind].set_index("method")
        # 200 queries; those whose set holds only the true molecule are left out and counted
        assert sets[kind]["queries"] + sets[kind]["left_out"] == 200
        assert (sub["n_queries"] == sets[kind]["queries"]).all() and sets[kind]["min"] >= 2
        # library search and the shipped Ranker beat random ranking, confidence intervals apart
        for method in ("library", "ranker"):
            assert sub.at[method, "hit@1_ci_low"] > sub.at["random", "hit@1_ci_high"]
            assert sub.at[method, "mces@1"] < sub.at["random", "mces@1"]
        assert sub.at["ranker", "hit@1"] > sub.at["fp_ffn", "hit@1"]
    rec = MetricsRecord.from_json(
        (demo / "results/benchmark/metrics/library.mass.standard.json").read_text())
    assert rec.config_hash and rec.extra["candidates_median"] >= 1
    # spectrum-blind control: library search loses its edge, random ranking is unchanged
    mass = lb[lb["candidates"] == "mass"].set_index("method")
    assert mass.at["library", "hit@1_spectrum_blind"] < mass.at["library", "hit@1_ci_low"]
    assert mass.at["random", "hit@1_spectrum_blind"] == pytest.approx(mass.at["random", "hit@1"])
    for ext in ("md", "tex", "png"):
        assert (demo / f"results/leaderboard/leaderboard.{ext}").stat().st_size > 100


def test_no_benchmark_structure_in_training_library(demo):
    from msid.store import SpectrumStore

    with SpectrumStore(demo / "results/library/massbank_esi.train.h5") as tr, \
            SpectrumStore(demo / "results/benchmark/queries.h5") as q:
        train = set(tr.metadata["inchikey"].str[:14])
        test = set(q.metadata["inchikey"].str[:14])
    assert train and test and not train & test


def test_rerun_is_a_no_op_and_snakemake_report_works(demo):
    res = _snakemake(demo, "--configfile", str(ROOT / "config" / "demo.yaml"), "-n", "all")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr
    res = _snakemake(demo, "--configfile", str(ROOT / "config" / "demo.yaml"),
                     "--report", str(demo / "snakemake_report.html"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (demo / "snakemake_report.html").stat().st_size > 10_000


def test_an_unreadable_run_goes_on_and_its_reports_say_why(demo, tmp_path):
    """A run file that cannot be read at all stops nothing: its store is empty, its quarantine
    and its report name the problem, and the batch summary lists it; a damaged run keeps what
    it could read."""
    sheet = demo / "samples_bad.tsv"
    sheet.write_text("sample\tpath\tkind\n"
                     f"pestmix_dda\t{ROOT}/resources/runs/pestmix_dda.mzML.gz\tsmall_molecule\n"
                     f"broken\t{ROOT}/tests/data/bad/not_spectra.mgf\tsmall_molecule\n"
                     f"brokenei\t{ROOT}/tests/data/bad/not_spectra.mgf\tei\n"
                     f"truncated\t{ROOT}/tests/data/bad/truncated.mzML\tsmall_molecule\n")
    cfg = demo / "bad.yaml"
    cfg.write_text(f"samples: {sheet}\nbenchmark: {{enabled: false}}\n")
    # the demo's own config first: its runs keep their parameters (nothing of the shared demo
    # is recomputed, so later tests still compare against the demo as it ran); the runs'
    # reports only, so that the demo's batch report stays the demo's
    runs = demo / "results" / "runs"
    targets = [f"results/runs/{s}/report.html" for s in ("broken", "brokenei", "truncated")]
    # the targets first: --configfile takes every value after it
    res = _snakemake(demo, *targets, "--configfile", str(ROOT / "config" / "demo.yaml"),
                     str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    log = (demo / "logs/convert_run/broken.log").read_text()
    assert "not_spectra.mgf" in log and "not an MGF file" in log
    for sample in ("broken", "brokenei"):
        html = (runs / sample / "report.html").read_text()
        assert "could not be read" in html and "not an MGF file" in html, sample
        # never "nothing quarantined" of a file none of whose records was read
        assert "No record was quarantined" not in html, sample
        assert "<h2>EI library matches</h2>" not in html and "spectra searched" not in html, sample
    html = (runs / "truncated/report.html").read_text()
    assert "damaged or truncated" in html and "could not be read" not in html
    assert "results are partial" in html and "No record was quarantined" not in html
    assert "the lost rest of a damaged file" in html
    from msid.report.batch import run_summary, write_batch_report

    summary = run_summary("broken", "small_molecule", runs / "broken/spectra.h5",
                          runs / "broken/identifications.tsv", 0.05)
    assert summary["n_read"] == 0 and "not an MGF file" in summary["unreadable"]
    out = tmp_path / "batch.html"
    write_batch_report([{"sample": s, "kind": k, "report": runs / s / "report.html",
                         "spectra": runs / s / f, "identifications": runs / s / i}
                        for s, k, f, i in (("broken", "small_molecule", "spectra.h5",
                                            "identifications.tsv"),
                                           ("brokenei", "ei", "ei_spectra.h5",
                                            "ei_identifications.tsv"))],
                       out, config={"identify": {"fdr": 0.05}})
    text = out.read_text()
    assert "2 run file(s) could not be read" in text and "+ the file<" in text
    assert "No record was quarantined from the files that could\nbe read" in text


def test_every_family_runs_in_the_demo(demo):
    """Each run kind gets its own family's outputs, and each family's leaderboard is written."""
    from msid.store import SpectrumStore

    runs = demo / "results" / "runs"
    # small molecule: mzTab-M beside the table; every spectrum accounted for
    mztab = (runs / "pestmix_dda/identifications.mztab").read_text()
    assert mztab.startswith("MTD")  # the run file is named by its file: URI
    assert re.search(r"ms_run\[1\]-location\tfile:///\S+/pestmix_dda\.mzML\.gz\n", mztab)
    # the library searched, named by its content (the same for every build of it), as the
    # batch report names it
    with SpectrumStore(demo / "results/library/massbank_esi.h5") as lib:
        digest = lib.content_sha256
    assert f"database[1]-version\tsha256:{digest[:16]}\n" in mztab
    assert f"<code>{digest}</code>" in (demo / "results/batch_report.html").read_text()
    ids = read_rankings(runs / "pestmix_dda/identifications.tsv")
    with SpectrumStore(runs / "pestmix_dda/spectra.h5") as s:
        assert set(s.metadata["id"].astype(str)) <= set(ids["query_id"])
    assert ids["q_value"].notna().any()
    # peptide run: de novo sequences (ProForma) and the report's annotated spectra
    pep = pd.read_csv(runs / "peptide_qc1/denovo_peptides.tsv", sep="\t")
    assert len(pep) and pep["sequence"].str.fullmatch(r"[A-Z\[\]\-+0-9.a-z:]+").all()
    assert (runs / "peptide_qc1/denovo_peptides.mztab").stat().st_size > 1000
    ok = pep["score"] > 0  # matches its precursor mass: within 50 ppm of a 0/1 isotope error
    assert ok.any() and pep.loc[ok, "isotope_error"].isin([0, 1]).all()
    assert pep.loc[~ok, "isotope_error"].isna().all()
    # a report shows the sections of its run kind only (no small-molecule library search on
    # peptide runs, no ESI preprocessing of EI spectra that have no precursor)
    html = (runs / "peptide_qc1/report.html").read_text()
    assert "De novo peptide sequences" in html and "with a library hit" not in html
    assert "Spectra without an answer" not in html
    html = (runs / "gcms_ei_demo/report.html").read_text()
    assert "EI library matches" in html and "require_precursor_mz" not in html
    assert "records read" not in html
    # EI run: embedding search of the EI library, hits carry structures
    ei = read_rankings(runs / "gcms_ei_demo/ei_identifications.tsv")
    assert (ei[ei["rank"] == 1]["inchikey"].str.len() > 0).all()
    # the library leaves out the records the demo spectra were drawn from: each spectrum is
    # matched to the other spectrum of its structure (resources/runs/gcms_ei_demo.md)
    from msid.ei.spectra import read_record_ids

    drawn_from = read_record_ids(ROOT / "resources/runs/gcms_ei_demo.library_exclude.txt")
    assert not set(ei["library_id"]) & drawn_from
    cells = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in (ROOT / "resources/runs/gcms_ei_demo.md").read_text().splitlines()
             if line.startswith("| gcms_demo_peak")]
    truth = {c[0]: c[3][:14] for c in cells}
    top = ei[ei["rank"] == 1].set_index("query_id")["inchikey"].str[:14]
    assert len(truth) == 8 and sum(top.get(q) == k for q, k in truth.items()) >= 7
    from msid.export.mztab import read_back

    tab = read_back(runs / "gcms_ei_demo/ei_identifications.mztab")  # pyteomics' reader
    assert len(tab["SML"]) == 8 and (tab["SML"]["reliability"].astype(int) == 2).all()
    # BDE (real ALFABET in its own env) and predicted EI spectra of the demo molecules
    assert (demo / "results/bde/demo.h5").stat().st_size > 0
    assert "Num Peaks" in (demo / "results/ei_prediction/demo_library.msp").read_text()
    board = demo / "results" / "leaderboard"
    for name in ("peptides.md", "ei_search.md", "denovo.md", "glmr.md", "glmr_k_sweep.png"):
        assert (board / name).stat().st_size > 100, name
    html = (demo / "results/batch_report.html").read_text()
    assert all(s in html for s in ("pestmix_dda", "peptide_qc1", "gcms_ei_demo"))
    # each run counted by its own kind's answers: mass-matched sequences, EI matches of the
    # EI spectra (not the ESI preprocessing, which quarantines spectra without a precursor)
    from msid.report.batch import run_summary

    pep_run = run_summary("peptide_qc1", "peptide", runs / "peptide_qc1/spectra.h5", None, 0.05,
                          denovo=runs / "peptide_qc1/denovo_peptides.tsv")
    assert pep_run["n_answered"] == int((pep["score"] > 0).sum()) and pep_run["methods"] == "peptrm"
    ei_run = run_summary("gcms_ei_demo", "ei", runs / "gcms_ei_demo/ei_spectra.h5",
                         runs / "gcms_ei_demo/ei_identifications.tsv", 0.05)
    assert ei_run["n_quarantined"] == 0 and ei_run["n_answered"] == ei_run["n_kept"] > 0
    assert "ei-embedding" in html and "peptrm" in html
