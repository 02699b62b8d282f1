"""The batch summary report: per-run counts, reasons, links and provenance."""

from __future__ import annotations

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
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["library"]["path"] = str(ROOT / config["library"]["path"])
    out = tmp_path / "batch_report.html"
    write_batch_report([{"sample": "pest", "kind": "small_molecule", "spectra": pesticides_store,
                         "identifications": ids, "report": report}], out, config=config)
    html = out.read_text()
    assert 'href="runs/pest/report.html"' in html
    for package in ("pyopenms", "matchms", "rdkit", "ms-entropy", "torch"):
        assert f"<td>{package}</td>" in html
    assert "precursor_tol_ppm" in html  # the parameters used
    digest = html.split("sha256 <code>")[1][:64]
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
