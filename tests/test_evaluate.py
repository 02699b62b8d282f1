import json

import numpy as np
import pandas as pd
import pytest

from msid.evaluate import (
    bootstrap_ci,
    evaluate_rankings,
    hit_ranks,
    mces_distance,
    mces_table,
    read_mces_table,
)
from msid.metrics import MetricsRecord
from msid.rankings import RankedCandidate as RC
from msid.rankings import read_rankings, rows_for_query, write_rankings

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
IK = {ASPIRIN: "BSYNRYMUTXBXSQ-UHFFFAOYSA-N", PARACETAMOL: "RZVAJINKPMORJF-UHFFFAOYSA-N",
      CAFFEINE: "RYYVLZVUVIJVGH-UHFFFAOYSA-N"}


def test_mces_distance():
    assert mces_distance(ASPIRIN, "O=C(O)c1ccccc1OC(C)=O") == 0.0  # same molecule, other SMILES
    d = mces_distance(ASPIRIN, PARACETAMOL)
    assert 0 < d < 15
    assert mces_distance(ASPIRIN, "not a smiles") == 15.0


def test_hit_at_k_and_mces(tmp_path):
    rows = (rows_for_query("q1", "m", [RC(ASPIRIN, IK[ASPIRIN], .9),
                                       RC(CAFFEINE, IK[CAFFEINE], .1)])
            + rows_for_query("q2", "m", [RC(CAFFEINE, IK[CAFFEINE], .8),
                                         RC(PARACETAMOL, IK[PARACETAMOL], .5)])
            + rows_for_query("q3", "m", []))  # abstains: counts as a miss
    write_rankings(rows, tmp_path / "r.tsv")
    truth = pd.DataFrame({"query_id": ["q1", "q2", "q3"],
                          "smiles": [ASPIRIN, PARACETAMOL, CAFFEINE],
                          "inchikey": [IK[ASPIRIN], IK[PARACETAMOL], IK[CAFFEINE]]})
    rec, per_q = evaluate_rankings(read_rankings(tmp_path / "r.tsv"), truth, method="m",
                                   dataset="d", fold="test", candidates="mass", n_boot=200)
    assert list(per_q["true_rank"]) == [1, 2, np.inf]
    assert rec.metrics["hit@1"].value == pytest.approx(1 / 3)
    assert rec.metrics["hit@5"].value == pytest.approx(2 / 3)
    assert rec.metrics["mces@1"].value == pytest.approx(
        (0 + mces_distance(PARACETAMOL, CAFFEINE) + 15) / 3)
    assert rec.extra["queries_without_candidates"] == 1
    again = MetricsRecord.from_json(rec.to_json())
    assert again.metrics["hit@1"].value == rec.metrics["hit@1"].value
    rec.write(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["n_queries"] == 3


def test_shared_mces_table_gives_the_same_mces_at_1(tmp_path):
    """The rule's one MCES table over several methods' rankings: distinct pairs only, computed
    on worker processes, and evaluation with it equals evaluation without it."""
    truth = pd.DataFrame({"query_id": ["q1", "q2"], "smiles": [ASPIRIN, PARACETAMOL],
                          "inchikey": [IK[ASPIRIN], IK[PARACETAMOL]]})
    runs = {
        "a": rows_for_query("q1", "a", [RC(CAFFEINE, IK[CAFFEINE], .9)])
        + rows_for_query("q2", "a", [RC(CAFFEINE, IK[CAFFEINE], .9)]),
        "b": rows_for_query("q1", "b", [RC(CAFFEINE, IK[CAFFEINE], .9)])  # same wrong top-1
        + rows_for_query("q2", "b", [RC(PARACETAMOL, IK[PARACETAMOL], .9)]),
    }
    pairs = []
    for name, rows in runs.items():
        write_rankings(rows, tmp_path / f"{name}.tsv")
        per_q = hit_ranks(read_rankings(tmp_path / f"{name}.tsv"), truth)
        pairs += list(zip(per_q["true_smiles"], per_q["top1_smiles"], strict=True))
    table = mces_table(pairs, processes=2)
    assert len(pairs) == 4 and len(table) == 3  # (aspirin, caffeine) once
    table.to_csv(tmp_path / "mces.tsv", sep="\t", index=False)
    lookup = read_mces_table(tmp_path / "mces.tsv")
    assert lookup[(ASPIRIN, CAFFEINE)] == mces_distance(ASPIRIN, CAFFEINE) > 0
    for name in runs:
        kw = dict(method=name, dataset="d", fold="test", candidates="mass", n_boot=50)
        rankings = read_rankings(tmp_path / f"{name}.tsv")
        with_table, _ = evaluate_rankings(rankings, truth, mces_lookup=lookup, **kw)
        without, _ = evaluate_rankings(rankings, truth, **kw)
        assert with_table.metrics["mces@1"].value == without.metrics["mces@1"].value
    # the lookup is what evaluation reads: a planted value shows through
    planted = {**lookup, (ASPIRIN, CAFFEINE): 7.0, (PARACETAMOL, CAFFEINE): 7.0}
    rec, _ = evaluate_rankings(read_rankings(tmp_path / "a.tsv"), truth, mces_lookup=planted,
                               method="a", dataset="d", fold="test", candidates="mass",
                               n_boot=50)
    assert rec.metrics["mces@1"].value == 7.0


def test_bootstrap_ci_brackets_the_mean():
    x = np.random.default_rng(1).random(500) < 0.3
    m = bootstrap_ci(x.astype(float), n_boot=500)
    assert m.ci_low < m.value < m.ci_high
    assert m.ci_high - m.ci_low < 0.12


def test_bootstrap_resamples_structures_when_given_them():
    """With groups (each query's structure), a draw takes whole structures: five spectra of
    each structure with one shared outcome give exactly the CI of one value per structure,
    wider than treating the 5 x 80 spectra as independent queries."""
    per_structure = (np.random.default_rng(2).random(80) < 0.4).astype(float)
    values = np.repeat(per_structure, 5)
    labels = np.repeat([f"S{i:02d}" for i in range(80)], 5)
    grouped = bootstrap_ci(values, n_boot=400, seed=3, groups=labels)
    assert grouped == bootstrap_ci(per_structure, n_boot=400, seed=3)
    naive = bootstrap_ci(values, n_boot=400, seed=3)
    assert grouped.value == naive.value
    assert grouped.ci_high - grouped.ci_low > 1.8 * (naive.ci_high - naive.ci_low)
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_ci(values, groups=labels[:-1])


def test_benchmark_leaves_out_single_candidate_sets(pesticides_store, pool_index, tmp_path):
    """Sets holding only the true molecule are left out, counted, and not scored as misses."""
    import pandas as pd

    from msid.benchmark import BenchmarkConfig, make_benchmark_inputs, truth_table
    from msid.store import SpectrumStore

    outs = {}
    for m in (1, 2):
        cfg = BenchmarkConfig(adducts=[], min_candidates=m)
        cands = tmp_path / f"mass.{m}.tsv"
        outs[m] = (make_benchmark_inputs(pesticides_store, pool_index, cfg,
                                         tmp_path / f"q{m}.h5", {"mass": cands})["mass"], cands)
    every, kept = outs[1][0], outs[2][0]
    assert every["left_out"] == 0 and every["min"] == 1
    assert kept["min"] >= 2 and kept["left_out"] > 0
    assert kept["queries"] + kept["left_out"] == every["queries"]
    with SpectrumStore(tmp_path / "q2.h5") as qs:
        assert len(truth_table(qs)) == every["queries"]
        truth = truth_table(qs, outs[2][1])
    listed = set(pd.read_csv(outs[2][1], sep="\t")["query_id"])
    assert len(truth) == kept["queries"] and set(truth["query_id"]) == listed


def test_a_truth_without_a_structure_matches_no_keyless_candidate(tmp_path):
    """A truth SMILES that does not parse has no InChIKey: a candidate without one (an
    unparsable SMILES) at rank 1 is no hit (it was: '' == '')."""
    rows = rows_for_query("q0", "m", [RC("not a smiles", "", 0.9), RC(ASPIRIN, IK[ASPIRIN], 0.5)])
    write_rankings(rows, tmp_path / "r.tsv")
    truth = pd.DataFrame([("q0", "also not a smiles", "")],
                         columns=["query_id", "smiles", "inchikey"])
    rec, per_q = evaluate_rankings(read_rankings(tmp_path / "r.tsv"), truth, method="m",
                                   dataset="d", fold="test", candidates="mass", n_boot=10,
                                   with_mces=False)
    assert rec.metrics["hit@1"].value == 0.0 and rec.metrics["hit@20"].value == 0.0
    assert per_q["true_rank"].iloc[0] == np.inf


def test_ties_never_favour_the_truth(tmp_path):
    """Constant scores give chance-level Hit@k whatever the list order (truth listed first
    here); a tie between the truth and one other candidate counts half."""
    from msid.metrics import expected_hit

    others = [ASPIRIN, PARACETAMOL, CAFFEINE, "CCO"]
    rows, truth = [], []
    for i in range(40):  # truth always first in the list, every score the same
        true = others[i % 4]
        cands = [true] + [s for s in others if s != true]
        rows += rows_for_query(f"q{i}", "const", [RC(s, IK.get(s, "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"),
                                                     0.5) for s in cands])
        truth.append((f"q{i}", true, IK.get(true, "LFQSCWFLJHTTHZ-UHFFFAOYSA-N")))
    write_rankings(rows, tmp_path / "r.tsv")
    truth_df = pd.DataFrame(truth, columns=["query_id", "smiles", "inchikey"])
    rec, per_q = evaluate_rankings(read_rankings(tmp_path / "r.tsv"), truth_df, method="const",
                                   dataset="d", fold="test", candidates="mass", n_boot=100,
                                   with_mces=False)
    assert rec.metrics["hit@1"].value == pytest.approx(1 / 4)  # chance, not 1.0
    assert rec.metrics["hit@5"].value == pytest.approx(1.0)
    assert (per_q["true_rank"] == 2.5).all()
    # truth tied with one of three other candidates, one scoring above
    scores = [0.9, 0.5, 0.5, 0.1]
    rows = rows_for_query("t", "m", [RC(s, IK.get(s, "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"), sc)
                                     for s, sc in zip([CAFFEINE, ASPIRIN, PARACETAMOL, "CCO"],
                                                      scores, strict=True)])
    write_rankings(rows, tmp_path / "t.tsv")
    rec, per_q = evaluate_rankings(
        read_rankings(tmp_path / "t.tsv"),
        pd.DataFrame({"query_id": ["t"], "smiles": [ASPIRIN], "inchikey": [IK[ASPIRIN]]}),
        method="m", dataset="d", fold="test", candidates="mass", n_boot=50, with_mces=False)
    assert rec.metrics["hit@1"].value == 0.0
    assert expected_hit(1, 1, 2) == pytest.approx(0.5)
    assert per_q["true_rank"].iloc[0] == pytest.approx(2.5)



def test_leaderboard_marks_methods_that_do_not_read_the_spectrum(tmp_path):
    """The guard: a method whose Hit@1 CI overlaps its spectrum-blind control's is marked in
    every format the leaderboard writes; one with the CIs apart is not."""
    from msid.metrics import Metric
    from msid.report.leaderboard import NOT_READING, write_leaderboard

    def rec(method, variant, hit1, lo, hi, split="inchikey"):
        r = MetricsRecord(task="retrieval", method=method, dataset="d", fold="test",
                          candidates="mass", n_queries=100, variant=variant, split=split,
                          metrics={"hit@1": Metric(hit1, lo, hi), "hit@5": Metric(.5, .4, .6),
                                   "hit@20": Metric(.8, .7, .9)},
                          extra={"far_max_tanimoto": 0.5} if split == "far" else {})
        return r.write(tmp_path / f"{method}.{variant}.{split}.json")

    files = [rec("reader", "standard", .40, .35, .45),
             rec("reader", "spectrum_blind", .10, .07, .13),
             rec("guesser", "standard", .20, .15, .25),
             rec("guesser", "spectrum_blind", .18, .13, .23),
             rec("random", "standard", .05, .02, .08),
             rec("random", "spectrum_blind", .05, .02, .08),
             rec("library", "standard", .22, .12, .32),  # no learned model: no verdict
             rec("library", "spectrum_blind", .18, .10, .26),
             # far split: the reader's CI now overlaps its own far-split control
             rec("reader", "standard", .15, .08, .22, "far"),
             rec("reader", "spectrum_blind", .10, .05, .15, "far")]
    out = {ext: str(tmp_path / f"lb.{ext}") for ext in ("csv", "md", "tex", "png")}
    df = write_leaderboard(files, out)
    far = df[df["split"] == "far"]
    assert list(far["method"]) == ["reader"] and far["reads_spectrum"].iat[0] is False
    assert list(df["split"]) == ["inchikey"] * 4 + ["far"]  # whole fold first
    df = df[df["split"] == "inchikey"]
    verdict = dict(zip(df["method"], df["reads_spectrum"], strict=True))
    assert verdict["reader"] is True and verdict["guesser"] is False
    assert verdict["random"] is None and verdict["library"] is None
    csv = pd.read_csv(out["csv"])
    assert set(csv["split"]) == {"inchikey", "far"}
    csv = csv[csv["split"] == "inchikey"].set_index("method")
    assert not csv.loc["guesser", "reads_spectrum"] and csv.loc["reader", "reads_spectrum"]
    md = (tmp_path / "lb.md").read_text()
    whole, far_md = md.split("### mass candidates, far split")
    assert f"guesser ⚠ {NOT_READING}" in whole and "reader ⚠" not in whole
    assert "library ⚠" not in whole
    assert "Tanimoto >= 0.5 (100 queries)" in far_md and f"reader ⚠ {NOT_READING}" in far_md
    tex = (tmp_path / "lb.tex").read_text()
    assert "guesser$^\\dagger$" in tex and NOT_READING in tex
    assert "inchikey & mass & reader &" in tex and "far & mass & reader$^\\dagger$" in tex
    assert (tmp_path / "lb.png").stat().st_size > 1000


def test_leaderboard_says_whether_rows_ranked_the_same_inputs(tmp_path, pesticides_store):
    """Each table names the digest of the queries and candidates its rows were scored on, and
    warns, naming the method, when one row was scored on other inputs."""
    from msid.evaluate import inputs_digest
    from msid.metrics import Metric
    from msid.report.leaderboard import write_leaderboard

    cands = tmp_path / "cands.tsv"
    cands.write_text("query_id\tsmiles\nq1\tCCO\nq2\tCCN\n")
    same = inputs_digest(["q2", "q1"], cands)
    assert same == inputs_digest(["q1", "q2"], cands)  # order-free
    other = inputs_digest(["q1", "q3"], cands)

    def rec(method, variant, digest):
        r = MetricsRecord(task="retrieval", method=method, dataset="d", fold="test",
                          candidates="mass", n_queries=2, variant=variant,
                          metrics={"hit@1": Metric(.5, .2, .8)}, extra=digest)
        return r.write(tmp_path / f"{method}.{variant}.json")

    out = {ext: str(tmp_path / f"lb.{ext}") for ext in ("csv", "md", "tex", "png")}
    files = [rec("a", "standard", same), rec("a", "spectrum_blind", same),
             rec("b", "standard", same)]
    write_leaderboard(files, out)
    md = (tmp_path / "lb.md").read_text()
    assert f"same queries and candidate sets (sha256 {same['queries_sha256'][:12]}/" in md
    write_leaderboard([*files, rec("c", "standard", other)], out)
    md = (tmp_path / "lb.md").read_text()
    assert "⚠ Rows were scored on different queries" in md
    assert "differing from the most common: c)" in md
    # a record written before digests were (no digest) is unknown, not different
    write_leaderboard([*files, rec("d", "standard", {})], out)
    md = (tmp_path / "lb.md").read_text()
    assert "⚠ Rows were" not in md and "1 carry none (not checked)" in md


def test_hard_candidate_setting_keeps_large_mass_sets(pesticides_store, pool_index, tmp_path):
    """mass_hard: the same mass candidates as `mass`, only queries with at least
    hard_min_candidates of them; an unknown setting is a clear error."""
    from msid.benchmark import BenchmarkConfig, make_benchmark_inputs

    cfg = BenchmarkConfig(adducts=[], hard_min_candidates=5)
    paths = {"mass": tmp_path / "mass.tsv", "mass_hard": tmp_path / "hard.tsv"}
    stats = make_benchmark_inputs(pesticides_store, pool_index, cfg, tmp_path / "q.h5", paths)
    assert stats["mass_hard"]["min"] >= 5 and stats["mass_hard"]["min_candidates"] == 5
    assert 0 < stats["mass_hard"]["queries"] < stats["mass"]["queries"]
    mass = pd.read_csv(paths["mass"], sep="\t").groupby("query_id")["smiles"].apply(list)
    hard = pd.read_csv(paths["mass_hard"], sep="\t").groupby("query_id")["smiles"].apply(list)
    assert all(mass[q] == hard[q] for q in hard.index)  # same draw, same order
    assert set(mass.index[mass.map(len) >= 5]) == set(hard.index)
    with pytest.raises(ValueError, match="unknown candidate setting"):
        make_benchmark_inputs(pesticides_store, pool_index, cfg, tmp_path / "q2.h5",
                              {"massive": tmp_path / "x.tsv"})


def test_benchmark_ranks_every_query_over_its_whole_candidate_set(pesticides_store, pool_index,
                                                                  tmp_path):
    """What the benchmark_rank rule runs: every query of the store gets its file's candidates
    ranked (each once), the same seed gives the same rankings, and a library-searching method
    without a library is named, not left to fail on its first query."""
    from msid.benchmark import BenchmarkConfig, make_benchmark_inputs
    from msid.methods import benchmark_method, rank_benchmark_queries
    from msid.store import SpectrumStore

    cands = tmp_path / "mass.tsv"
    make_benchmark_inputs(pesticides_store, pool_index, BenchmarkConfig(adducts=[]),
                          tmp_path / "q.h5", {"mass": cands})
    rows = rank_benchmark_queries(benchmark_method("random", seed=3), tmp_path / "q.h5", cands,
                                  seed=3)
    every = pd.DataFrame(rows)
    listed = pd.read_csv(cands, sep="\t")
    with SpectrumStore(tmp_path / "q.h5") as qs:  # sets left out (one candidate): no answer
        assert set(every["query_id"]) == set(qs.metadata["id"]) > set(listed["query_id"])
    ranked = every[every["query_id"].isin(listed["query_id"])]
    assert (ranked["rank"] > 0).all() and (every.loc[every["rank"] == 0, "note"] != "").all()
    assert set(ranked["query_id"]) == set(listed["query_id"])
    per_query = ranked.groupby("query_id")["inchikey"].agg(lambda k: len(set(k.str[:14])))
    assert (per_query == ranked.groupby("query_id").size()).all()  # no candidate twice
    assert (per_query == listed.groupby("query_id").size()[per_query.index]).all()
    again = rank_benchmark_queries(benchmark_method("random", seed=3), tmp_path / "q.h5", cands,
                                   seed=3)
    assert pd.DataFrame(again).equals(every)
    with pytest.raises(ValueError, match="searches a spectral library"):
        benchmark_method("library")


def test_far_split_keeps_queries_far_from_every_training_structure(pesticides_store, tmp_path):
    """The far split: a query belongs to it only when no training structure reaches the
    Tanimoto threshold; nearest similarities match RDKit's pairwise Tanimoto; a query whose
    own structure trains is never far."""
    from msid.benchmark import query_splits, split_query_ids
    from msid.chem.fingerprints import tanimoto_many
    from msid.store import SpectrumStore, subset_store

    with SpectrumStore(pesticides_store) as st:
        md = st.metadata
    keys = md["inchikey"].str[:14]
    train_keys = set(sorted(keys.unique())[::2])  # half the structures train
    train_rows = [i for i, k in enumerate(keys) if k in train_keys]
    subset_store(pesticides_store, tmp_path / "train.h5", train_rows)
    table = query_splits(pesticides_store, tmp_path / "train.h5", far_max_tanimoto=0.5)
    assert list(table["query_id"]) == list(md["id"].astype(str))
    train_smiles = md["smiles"].iloc[train_rows].tolist()
    for i, (k, smi) in enumerate(zip(keys, md["smiles"], strict=True)):
        expect = 1.0 if k in train_keys else tanimoto_many(smi, train_smiles).max()
        assert table["nearest_train_tanimoto"].iat[i] == pytest.approx(expect, abs=1e-4)
    far = split_query_ids(table, "far")
    assert far == set(table.loc[table["nearest_train_tanimoto"] < 0.5, "query_id"])
    assert 0 < len(far) < len(table) - len(train_rows)  # real pesticides: some near, some far
    assert split_query_ids(table, "inchikey") == set(table["query_id"])
    with pytest.raises(ValueError, match="unknown split"):
        split_query_ids(table, "scaffold")


def test_split_record_is_the_subset_of_the_per_query_table(tmp_path):
    """A split's MetricsRecord is the same harness on that split's queries only."""
    from msid.evaluate import summarise

    rows = (rows_for_query("q1", "m", [RC(ASPIRIN, IK[ASPIRIN], .9),
                                       RC(CAFFEINE, IK[CAFFEINE], .1)])
            + rows_for_query("q2", "m", [RC(CAFFEINE, IK[CAFFEINE], .8),
                                         RC(PARACETAMOL, IK[PARACETAMOL], .5)]))
    write_rankings(rows, tmp_path / "r.tsv")
    truth = pd.DataFrame({"query_id": ["q1", "q2"], "smiles": [ASPIRIN, PARACETAMOL],
                          "inchikey": [IK[ASPIRIN], IK[PARACETAMOL]]})
    rec, per_q = evaluate_rankings(read_rankings(tmp_path / "r.tsv"), truth, method="m",
                                   dataset="d", fold="test", candidates="mass", n_boot=200)
    assert rec.split == "inchikey" and rec.metrics["hit@1"].value == pytest.approx(0.5)
    far = summarise(per_q[per_q["query_id"] == "q2"], rec, n_boot=200, split="far")
    assert far.split == "far" and far.n_queries == 1 and far.method == "m"
    assert far.metrics["hit@1"].value == 0.0 and far.metrics["hit@5"].value == 1.0
    assert far.metrics["mces@1"].value == pytest.approx(mces_distance(PARACETAMOL, CAFFEINE))
    assert MetricsRecord.from_json(far.to_json()).split == "far"


def test_a_failed_mces_solve_counts_as_the_cap(monkeypatch):
    """myopic-mces with catch_errors returns a negative distance on a solver error or time
    out: that is no bound, never better than an exact match."""
    import myopic_mces

    from msid.evaluate import MCES_THRESHOLD, mces_distance

    mces_distance.cache_clear()
    monkeypatch.setattr(myopic_mces, "MCES", lambda *a, **k: (0, -1.0, 0.0, "error"))
    try:
        assert mces_distance("CCO", "CCCO") == MCES_THRESHOLD
    finally:
        mces_distance.cache_clear()
