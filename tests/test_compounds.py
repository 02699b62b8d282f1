"""The compound-level table of a run: the library's top hits grouped by structure."""

from __future__ import annotations

import pandas as pd
import pytest

from msid.cli import main
from msid.compounds import COMPOUND_COLUMNS, compound_table, write_compound_table
from msid.rankings import confident_top, read_rankings


@pytest.fixture(scope="module")
def identifications(data_dir, pesticides_store, tmp_path_factory):
    """GNPS pesticide spectra searched against a library of themselves (64 spectra of 38
    structures, so several compounds have more than one spectrum)."""
    out = tmp_path_factory.mktemp("compounds") / "identifications.tsv"
    assert main(["identify", str(data_dir / "gnps_pesticides_matchms_train.mgf.gz"),
                 "--library", str(pesticides_store), "--out", str(out),
                 "--compounds", str(out.with_name("cli_compounds.tsv"))]) == 0
    return out


def test_one_row_per_structure_accounts_for_every_top_hit(identifications, tmp_path):
    ids = read_rankings(identifications)
    table = write_compound_table(identifications, tmp_path / "compounds.tsv", fdr=0.05)
    assert tuple(table.columns) == COMPOUND_COLUMNS
    top = ids[(ids["method"] == "library") & (ids["rank"] == 1)].copy()
    assert table["inchikey"].str[:14].is_unique
    assert set(table["inchikey"].str[:14]) == set(top["inchikey"].str[:14])
    assert table["spectra"].sum() == len(top)  # every spectrum's hit counted once
    top["confident"], _ = confident_top(top, 0.05)
    assert table["confident_spectra"].sum() == top["confident"].sum()  # the reports' rule
    assert (table["confident"] == (table["confident_spectra"] > 0)).all()
    assert table["spectra"].max() > 1  # the same compound measured several times
    # confident compounds first, each block by best score
    assert not (table["confident"].astype(int).diff().dropna() > 0).any()
    for _, block in table.groupby("confident"):
        assert block["best_score"].is_monotonic_decreasing
    assert (table["rt_first"].fillna(0) <= table["rt_last"].fillna(0)).all()
    for _, row in table.iterrows():  # the best spectrum's own values, nobody else's
        best = top[top["query_id"] == row["best_query_id"]].iloc[0]
        assert best["score"] == pytest.approx(row["best_score"])
        assert best["inchikey"][:14] == row["inchikey"][:14]
        for col in ("q_value", "delta_score"):
            assert (pd.isna(best[col]) and pd.isna(row[f"best_{col}"])) or \
                best[col] == pytest.approx(row[f"best_{col}"])
        assert best["library_id"] == row["library_id"]
        assert bool(best["confident"]) == bool(row["confident"])  # a confident one if any
    back = pd.read_csv(tmp_path / "compounds.tsv", sep="\t")
    assert len(back) == len(table)
    merged = back.merge(table, on="best_query_id", suffixes=("_file", ""))
    assert (merged["precursor_mz_file"] - merged["precursor_mz"]).abs().max() < 1e-6  # no %.6g
    cli = pd.read_csv(identifications.with_name("cli_compounds.tsv"), sep="\t")
    assert cli["inchikey"].tolist() == table["inchikey"].tolist()  # msid identify --compounds


def test_a_compound_known_by_precursor_mass_alone_says_so(identifications):
    """A compound whose every spectrum matched by precursor m/z alone is marked as such; one
    with a fragment match among its spectra is not."""
    from msid.compounds import FRAGMENTS, PRECURSOR_MASS_ONLY
    from msid.rankings import PRECURSOR_ONLY

    ids = read_rankings(identifications)
    top = ids[(ids["method"] == "library") & (ids["rank"] == 1)]
    assert compound_table(ids, fdr=0.05)["evidence"].eq(FRAGMENTS).all()
    n = top["inchikey"].str[:14].value_counts()
    single, several = n[n == 1].index[0], n[n > 1].index[0]
    for key in (single, several):  # one spectrum of each loses its fragment evidence
        ids.loc[top.index[top["inchikey"].str[:14] == key][0], "note"] = PRECURSOR_ONLY
    table = compound_table(ids, fdr=0.05)
    evidence = dict(zip(table["inchikey"].str[:14], table["evidence"], strict=True))
    assert evidence[single] == PRECURSOR_MASS_ONLY and evidence[several] == FRAGMENTS


def test_no_library_hit_gives_an_empty_table_with_the_columns(identifications):
    ids = read_rankings(identifications)
    table = compound_table(ids[ids["method"] != "library"], fdr=0.05)
    assert table.empty and tuple(table.columns) == COMPOUND_COLUMNS


def test_without_q_values_no_hit_is_called_confident(identifications):
    """Library search ranking given candidates estimates no FDR: no score cut stands in for
    one (a fixed cut of 0.7 once called such hits confident), and the rule says why."""
    from msid.rankings import NOT_ASSESSED

    ids = read_rankings(identifications)
    assert (pd.to_numeric(ids["q_value"], errors="coerce") <= 0.05).any()
    ids["q_value"] = float("nan")
    top = ids[(ids["method"] == "library") & (ids["rank"] == 1)]
    assert (top["score"] >= 0.7).any()
    ok, rule = confident_top(top, 0.05)
    assert not ok.any() and rule == NOT_ASSESSED
    table = compound_table(ids, fdr=0.05)
    assert len(table) and not table["confident"].any()
    assert table.attrs["confident_rule"] == NOT_ASSESSED


def test_compounds_option_needs_library_search(data_dir, tmp_path, capsys):
    assert main(["identify", str(data_dir / "gnps_pesticides_matchms_train.mgf.gz"),
                 "--method", "random", "--out", str(tmp_path / "r.tsv"),
                 "--compounds", str(tmp_path / "c.tsv")]) == 2
    assert "--compounds groups library hits" in capsys.readouterr().err


def test_hits_without_an_inchikey_are_not_one_compound(identifications):
    from msid.compounds import compound_keys

    top = read_rankings(identifications).query("method == 'library' and rank == 1").copy()
    top["inchikey"] = ""  # a library without InChIKeys: compounds by SMILES
    keys = compound_keys(top)
    assert keys.nunique() == top["smiles"].nunique() > 1
    assert len(compound_table(top, fdr=0.05)) == top["smiles"].nunique()


def test_every_entry_point_defaults_to_one_confidence_rule():
    """The CLI, the run pipeline, the compound table and the run report share the defaults
    of msid.rankings (a report once defaulted to q <= 0.01 where the run used 0.05)."""
    import inspect
    from pathlib import Path

    import yaml

    from msid.cli import build_parser
    from msid.rankings import CONFIDENT_FDR
    from msid.report.run_report import write_run_report
    from msid.run_methods import RunMethodsConfig

    args = build_parser().parse_args(["identify", "q.mgf", "--out", "o.tsv"])
    assert args.fdr == CONFIDENT_FDR == RunMethodsConfig().fdr
    report = inspect.signature(write_run_report).parameters
    assert report["fdr"].default == CONFIDENT_FDR
    shipped = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    assert shipped["identify"]["fdr"] == CONFIDENT_FDR


def test_best_values_come_from_one_spectrum_the_best_confident_one():
    """Three spectra of one compound: the top-scoring one is ambiguous (delta below 0.1), the
    next is not confident (q 0.2), the third is confident. The row is the confident
    spectrum's own score, q-value, delta score, ids and m/z, never a mix of the three."""
    from msid.rankings import ALL_COLUMNS, OPTIONAL_COLUMNS

    smi, ik = "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "HEFNNWSXXWATRW-UHFFFAOYSA-N"
    rows = []
    for qid, score, q, delta, mz in (("c", 0.99, 0.01, 0.05, 207.1380),
                                     ("a", 0.95, 0.20, 0.50, 207.1381),
                                     ("b", 0.80, 0.01, 0.30, 207.1382)):
        r = {**OPTIONAL_COLUMNS, "query_id": qid, "rank": 1, "score": score,
             "method": "library", "smiles": smi, "inchikey": ik, "library_id": f"lib-{qid}",
             "name": "Ibuprofen", "q_value": q, "delta_score": delta, "precursor_mz": mz,
             "rt": 100.0}
        rows.append({c: r.get(c) for c in ALL_COLUMNS})
    table = compound_table(pd.DataFrame(rows), fdr=0.05)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["confident"] and row["spectra"] == 3 and row["confident_spectra"] == 1
    assert (row["best_query_id"], row["library_id"]) == ("b", "lib-b")
    assert (row["best_score"], row["best_q_value"], row["best_delta_score"]) == \
        pytest.approx((0.80, 0.01, 0.30))
    assert row["precursor_mz"] == pytest.approx(207.1382)
