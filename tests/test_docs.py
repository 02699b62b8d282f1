"""The README's leaderboard tables are the files `make benchmark` wrote (docs/leaderboard/):
a number typed by hand, or left behind by a rerun, fails here."""

from __future__ import annotations

import json
import re

from conftest import ROOT

#: README row label -> the method's name in the leaderboard
README_NAMES = {"ranker": "ranker", "library search": "library", "Fingerprint FFN": "fp_ffn",
                "DeepSets": "deepsets", "reconstructor": "reconstructor", "random": "random"}
KINDS = ("mass", "formula", "mass_hard")


def _leaderboard() -> dict[tuple[str, str, str], list[str]]:
    """(split, candidate kind, method) -> the cells of its row in leaderboard.md."""
    out = {}
    for section in (ROOT / "docs/leaderboard/leaderboard.md").read_text().split("### ")[1:]:
        head, *lines = section.splitlines()
        kind = head.split(" candidates")[0]
        split = "far" if "far split" in head else "inchikey"
        n = re.search(r"\((\d+) queries", head).group(1)
        for line in lines:
            if line.startswith("| ") and not line.startswith("| method"):
                cells = [c.strip() for c in line.strip("|").split("|")]
                method, flag, _ = cells[0].partition(" ⚠")  # ⚠: does not read the spectrum
                out[(split, kind, method)] = [n, *cells, bool(flag)]
    return out


def test_readme_retrieval_tables_are_the_leaderboard():
    board = _leaderboard()
    seen = 0
    split, in_table = None, False
    for line in (ROOT / "README.md").read_text().splitlines():
        in_table = in_table and line.startswith("|")
        if line.startswith("| method | mass ("):
            split, in_table = ("inchikey" if split is None else "far"), True
            counts = re.findall(r"\(([\d,]+)\)", line)
            for kind, count in zip(KINDS, counts, strict=True):
                assert board[(split, kind, "random")][0] == count.replace(",", ""), (split, kind)
            continue
        if not in_table or line.startswith("|---"):
            continue
        method = next((m for label, m in README_NAMES.items() if line[2:].startswith(label)),
                      None)
        if method is None:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        for j, kind in enumerate(KINDS):
            row = board[(split, kind, method)]
            hit1, control, flagged = row[3], row[-2].split(" ")[0], row[-1]
            cell = cells[1 + 2 * j].replace("*", "")
            # a method the leaderboard marks as not reading the spectrum is marked here too
            assert cell == hit1 + (" ⚠" if flagged else ""), (split, kind, method)
            assert cells[2 + 2 * j] == control, (split, kind, method)
            seen += 1
    assert seen == 2 * len(README_NAMES) * len(KINDS)


def test_readme_peptide_differences_are_the_leaderboards():
    """The ablation's paired differences the README quotes (PepTRM minus ion evidence only)."""
    board = json.loads((ROOT / "docs/leaderboard/peptides.json").read_text())
    rows = {r["method"]: r for r in board["rows"]}
    ablation = "PepTRM: ion evidence only (transformer off)"
    ci = board["ci"][ablation]
    readme = " ".join((ROOT / "README.md").read_text().split())
    for metric, words in (("aa_precision", "AA precision"), ("aa_recall", "AA recall")):
        diff = rows["PepTRM"][metric] - rows[ablation][metric]
        lo, hi = ci[f"delta_{metric}"]
        assert f"+{diff:.3f} {words} [+{lo:.3f}, +{hi:.3f}]" in readme, metric


def test_readme_ei_prediction_table_is_the_shipped_run():
    """The README's teacher / student / MLP table is the shipped NEIMS run's rows
    (resources/models/neims_run_cc-by-nc-sa.json), each figure with its CI."""
    run = json.loads((ROOT / "resources/models/neims_run_cc-by-nc-sa.json").read_text())
    rows = {r["method"].split("_")[1] + ("" if r.get("isotope_peaks", True) else "-plain"): r
            for r in run["rows"]}
    labels = {"teacher (GNN+ECFP)": "teacher", "student (MoE, distilled)": "student",
              "MLP baseline": "mlp", "student, no isotope peaks (ablation)": "student-plain"}
    seen = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] not in labels:
            continue
        row = rows[labels[cells[0]]]
        for cell, metric in zip(cells[1:], ("cosine", "weighted_cosine", "recall@1",
                                            "recall@10"), strict=True):
            want = (f"{row[metric]:.3f} [{row[metric + '_lo']:.3f}, "
                    f"{row[metric + '_hi']:.3f}]")
            assert cell.replace("*", "") == want, (cells[0], metric)
        seen.add(cells[0])
    assert seen == set(labels)
