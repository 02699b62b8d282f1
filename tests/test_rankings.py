"""The Rankings contract: optional columns, old tables, every query accounted for."""

from __future__ import annotations

import numpy as np
import pandas as pd

from msid.cli import main
from msid.methods import PRECURSOR_ONLY, LibrarySearch, Query, iter_queries, load_library
from msid.rankings import (
    ALL_COLUMNS,
    COLUMNS,
    RankedCandidate,
    read_rankings,
    rows_for_query,
    write_rankings,
)
from msid.store import SpectrumStore


def test_old_tables_read_with_defaults(tmp_path):
    old = tmp_path / "old.tsv"
    pd.DataFrame([{"query_id": "q1", "rank": 1, "score": 0.9, "method": "library",
                   "smiles": "CCO", "inchikey": "LFQSCWFLJHTTHZ-UHFFFAOYSA-N",
                   "library_id": "x"}], columns=list(COLUMNS)).to_csv(old, sep="\t", index=False)
    r = read_rankings(old)
    assert tuple(r.columns) == ALL_COLUMNS
    assert r["matched_peaks"].iat[0] == -1 and np.isnan(r["q_value"].iat[0])


def test_no_answer_row_has_reason(tmp_path):
    rows = (rows_for_query("q1", "m", [RankedCandidate("CCO", "IK", 0.5, matched_peaks=3)],
                           rt=12.5, precursor_mz=47.05, adduct="[M+H]+")
            + rows_for_query("q2", "m", [], reason="no fragment peaks"))
    write_rankings(rows, tmp_path / "r.tsv")
    r = read_rankings(tmp_path / "r.tsv").set_index("query_id")
    assert r.at["q1", "rank"] == 1 and r.at["q1", "rt"] == 12.5
    assert r.at["q1", "matched_peaks"] == 3 and r.at["q1", "adduct"] == "[M+H]+"
    assert r.at["q2", "rank"] == 0 and r.at["q2", "note"] == "no fragment peaks"
    assert r.at["q2", "smiles"] == ""


def test_identify_table_has_query_and_hit_columns(data_dir, tmp_path, pesticides_store):
    out = tmp_path / "ids.tsv"
    q = data_dir / "gnps_pesticides_matchms_train.mgf.gz"
    assert main(["identify", str(q), "--library", str(pesticides_store), "--out",
                 str(out)]) == 0
    r = read_rankings(out)
    with SpectrumStore(pesticides_store) as st:
        n = len(st)
    assert r["query_id"].nunique() == n  # every query has rows
    top = r[r["rank"] == 1]
    assert (top["matched_peaks"] > 0).all() and (top["name"] != "").all()
    assert (top["precursor_mz"] > 0).all()
    assert (top["ppm_error"].abs() <= 1000).all()  # within max(0.01 Da, 10 ppm)


def test_precursor_only_query_gets_flagged_low_match(pesticides_store):
    library = load_library(str(pesticides_store))
    method = LibrarySearch(library)
    with SpectrumStore(pesticides_store) as st:
        q = next(iter_queries(st, [0]))
    near = q.mz >= q.precursor_mz - 1.0  # keep only peaks at the precursor
    pq = Query(q.query_id, q.precursor_mz, q.adduct, q.ion_mode, q.charge,
               np.append(q.mz[near], q.precursor_mz), np.append(q.intensity[near], 1.0))
    ranked = method.rank(pq, None)
    assert ranked and all(c.note == PRECURSOR_ONLY for c in ranked)
    assert all(0 < c.score <= 0.011 for c in ranked)
    assert ranked[0].library_id  # the library entries at this precursor mass


def test_tables_keep_the_precursor_mz_to_its_fifth_decimal(tmp_path):
    rows = rows_for_query("q1", "library", [RankedCandidate("C", "X", 0.5)], rt=1.0,
                          precursor_mz=1234.56789, adduct="[M+H]+")
    r = read_rankings(write_rankings(rows, tmp_path / "t.tsv"))
    assert abs(r["precursor_mz"].iat[0] - 1234.56789) < 1e-6


def test_library_rows_are_one_per_structure_over_every_hit(pesticides_store):
    """Duplicate spectra of a structure are removed before the top-k cut, not after it: a
    query gets up to top_k distinct structures however many spectra each has."""
    lib = load_library(str(pesticides_store), config={"top_k": 0})
    with SpectrumStore(pesticides_store) as st:
        queries = list(iter_queries(st, list(range(min(len(st), 60)))))
    method = LibrarySearch(lib)
    keys = lib.metadata["inchikey"].astype(str).str[:14].to_numpy()
    checked = 0
    for q in queries:
        hits = lib.search(q.precursor_mz, q.mz, q.intensity, top_k=0)
        distinct = list(dict.fromkeys(keys[h.library_index] for h in hits if keys[h.library_index]))
        ranked = method.rank(q, None)
        if hits:
            assert [c.inchikey[:14] for c in ranked] == distinct
            checked += len(hits) > len(distinct)  # a structure with several spectra
    assert checked  # the sample holds queries whose window repeats a structure
    lib.cfg.top_k = 1
    assert all(len(method.rank(q, None)) <= 1 for q in queries)


def test_reason_names_the_candidate_file(pesticides_store):
    from msid.methods import RandomRanking, rank_queries

    with SpectrumStore(pesticides_store) as st:
        rows = rank_queries(RandomRanking(0), st, [0], {}, candidate_source="file",
                            progress=False)
    assert rows[0]["rank"] == 0 and "candidate file" in rows[0]["note"]
