"""The shipped ``denovo`` and ``glmr`` methods through ``msid identify`` on real spectra."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from msid.chem.structures import parse_structure
from msid.cli import main
from msid.generation.modelio import default_path
from msid.rankings import ALL_COLUMNS, read_rankings

needs_models = pytest.mark.skipif(
    not (default_path("denovo").exists() and default_path("glmr").exists()),
    reason="no shipped denovo/glmr model in resources/models (make models trains them)")


def _queries_with_bad_records(data_dir: Path, tmp_path: Path) -> Path:
    """The MassSpecGym debug spectra plus one without a precursor and one without peaks."""
    with gzip.open(data_dir / "massspecgym_debug_5_train.mgf.gz", "rt") as fh:
        text = fh.read()
    bad = ("BEGIN IONS\nTITLE=no_precursor\nCHARGE=1+\n100.0 5.0\n120.0 10.0\nEND IONS\n"
           "BEGIN IONS\nTITLE=no_peaks\nPEPMASS=250.1\nCHARGE=1+\nEND IONS\n")
    path = tmp_path / "q.mgf"
    path.write_text(text + "\n" + bad)
    return path


@needs_models
def test_identify_denovo_without_candidates(data_dir, tmp_path):
    out = tmp_path / "dn.tsv"
    q = _queries_with_bad_records(data_dir, tmp_path)
    assert main(["identify", str(q), "--method", "denovo", "--top-k", "3",
                 "--out", str(out)]) == 0
    r = read_rankings(out)
    assert tuple(r.columns) == ALL_COLUMNS
    answered = r[r["rank"] > 0]
    assert answered["query_id"].nunique() >= 1
    assert (answered.groupby("query_id").size() <= 3).all()
    for _, g in answered.groupby("query_id"):  # distinct, valid, canonical
        assert g["inchikey"].str[:14].is_unique
        assert all(parse_structure(s).smiles_flat == s for s in g["smiles"])
    assert (answered["method"] == "denovo").all()
    assert not r["query_id"].isin(["no_precursor", "no_peaks"]).any() or \
        (r.loc[r["query_id"].isin(["no_precursor", "no_peaks"]), "rank"] == 0).all()


@needs_models
def test_identify_glmr_ranks_given_candidates(data_dir, tmp_path):
    out = tmp_path / "g.tsv"
    rc = main(["identify", str(data_dir / "massspecgym_debug_5_train.mgf.gz"),
               "--candidates", str(data_dir / "massspecgym_debug_5_candidates_train.json.gz"),
               "--method", "glmr", "--top-k", "10", "--out", str(out)])
    assert rc == 0
    r = read_rankings(out)
    assert r["query_id"].nunique() == 4
    assert (r["method"] == "glmr").all()
    for _, g in r.groupby("query_id"):
        g = g.sort_values("rank")
        assert (g["score"].diff().dropna() <= 1e-12).all()  # scores follow the ranks


@needs_models
def test_denovo_beams_follow_the_formula_and_the_rescorer(pesticides_store):
    """On real pesticide spectra (their library formulas given): every molecule the shipped
    de novo model returns under the formula constraint holds the formula's heavy atoms (the
    hydrogens may differ: such molecules come flagged, as the formula filter misses them), and
    a dominant rescoring weight orders the molecules by the shipped Ranker's cosine; weight 0
    leaves the beam order."""
    from collections import Counter

    from rdkit import Chem

    from msid.generation.beam import heavy_atoms
    from msid.methods import MethodResources, iter_queries, make_method
    from msid.store import SpectrumStore

    with SpectrumStore(pesticides_store) as st:
        qs = [q for q in iter_queries(st, list(range(12))) if q.formula][:4]
    assert qs
    opts = {"beam_width": 12, "top_k": 12, "rescore_with": "ranker"}
    rescored = make_method("denovo", MethodResources(options={**opts, "rescore_weight": 1e9}))
    plain = make_method("denovo", MethodResources(options={**opts, "rescore_weight": 0.0}))
    assert plain.rescorer is None and rescored.rescorer is not None
    for q, mols, base in zip(qs, rescored.generate(qs), plain.generate(qs), strict=True):
        assert {m.structure.inchikey for m in mols} == {m.structure.inchikey for m in base}
        assert [m.score for m in base] == sorted((m.score for m in base), reverse=True)
        cos = {r.inchikey: r.score for r in rescored.rescorer.rank(q, [m.structure
                                                                     for m in mols])}
        order = [cos[m.structure.inchikey] for m in mols]
        assert order == sorted(order, reverse=True)
        want = heavy_atoms(q.formula)
        for m in base:
            mol = Chem.MolFromSmiles(m.structure.smiles_flat)
            got = Counter(a.GetSymbol() for a in mol.GetAtoms() if a.GetSymbol() != "H")
            assert dict(got) == want, (q.formula, m.structure.smiles_flat)
    assert plain.stats["formula_constrained"] == len(qs)
    assert plain.stats["formula_unfinished"] == 0  # else a query was decoded unconstrained


@needs_models
def test_glmr_records_which_candidates_it_reproduces(pesticides_store):
    """GLMR notes, per query, the candidates its generated molecules are (same InChIKey first
    block; the GLMR leaderboard's copy rates): each has Tanimoto 1 to a generated molecule,
    all are among the top K, and the copy rates count them."""
    import pandas as pd

    from msid.generation.benchmark import copy_rates
    from msid.methods import MethodResources, iter_queries, make_method
    from msid.store import SpectrumStore

    with SpectrumStore(pesticides_store) as st:
        qs = [q for q in iter_queries(st, list(range(40)))][:6]
        md = st.metadata.set_index("id")
    truth = [parse_structure(str(md.loc[q.query_id, "smiles"])) for q in qs]
    pool = [s for s in dict.fromkeys(t for t in truth if t)]
    glmr = make_method("glmr", MethodResources(options={"k": 4, "beam_width": 3}))
    glmr.rank_many(qs, [pool for _ in qs])
    assert set(glmr.last_copied) == set(glmr.last_similarity) == {q.query_id for q in qs}
    for q in qs:
        top = glmr.ranker.rank(q, pool)[:glmr.k]
        sim = glmr.last_similarity[q.query_id]
        assert len(sim) == len(top)
        copied = glmr.last_copied[q.query_id]
        assert set(copied) <= {c.inchikey for c in top}
        assert all(x == pytest.approx(1.0) for c, x in zip(top, sim, strict=True)
                   if c.inchikey in copied)
    table = pd.DataFrame({"query_id": [q.query_id for q in qs],
                          "inchikey": [t.inchikey if t else "" for t in truth]})
    # copy rates on known lists: q0 copied its truth, q1 another candidate, the rest nothing
    known = {q.query_id: [] for q in qs}
    known[qs[0].query_id] = [truth[0].inchikey]
    other = next(t for t in truth if t.inchikey[:14] != truth[1].inchikey[:14])
    known[qs[1].query_id] = [other.inchikey]
    assert copy_rates(known, table) == pytest.approx((2 / len(qs), 1 / len(qs)))
    any_copy, true_copy = copy_rates(glmr.last_copied, table)
    assert 0.0 <= true_copy <= any_copy <= 1.0
