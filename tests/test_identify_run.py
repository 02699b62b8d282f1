"""Every configured method on a run; the config names what cannot run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from msid.chem.candidates import CandidateIndex
from msid.method_kinds import check_methods
from msid.methods import load_library
from msid.run_methods import RunMethodsConfig, identify_run
from msid.store import SpectrumStore

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
MODELS = ROOT / "resources" / "models"


def _config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_ranker_only_gives_nonempty_tables(pesticides_store, pool_index):
    with SpectrumStore(pesticides_store) as st:
        rows = identify_run(st, RunMethodsConfig(methods=["ranker"], top_k=5),
                            index=CandidateIndex(pool_index), model_dir=MODELS)
        ids = set(st.metadata["id"])
    assert {r["query_id"] for r in rows} == ids  # every spectrum accounted for
    ranked = [r for r in rows if r["rank"] > 0]
    assert ranked and all(r["method"] == "ranker" and r["smiles"] for r in ranked)
    assert len({r["query_id"] for r in ranked}) > len(ids) // 2
    assert all(r["rank"] <= 5 for r in rows)
    assert all(abs(r["ppm_error"]) <= 10.001 for r in ranked)  # the pool mass window


def test_a_run_reads_the_model_file_its_method_declares(pesticides_store, pool_index,
                                                        tmp_path, monkeypatch):
    """A method whose model file is named apart from the method (as an installed package's
    may be) gets that file in a run: the one the DAG hands the job and the benchmark scores."""
    import dataclasses
    import shutil

    import msid.run_methods as rm

    table = rm.method_table()
    monkeypatch.setattr(rm, "method_table", lambda: {
        **table, "ranker": dataclasses.replace(table["ranker"], models=("ranker_renamed",))})
    shutil.copy(MODELS / "ranker.safetensors", tmp_path / "ranker_renamed.safetensors")
    shutil.copy(MODELS / "ranker.json", tmp_path / "ranker_renamed.json")
    seen = []
    make = rm.make_method
    monkeypatch.setattr(rm, "make_method",
                        lambda name, res: seen.append(res.model_path) or make(name, res))
    with SpectrumStore(pesticides_store) as st:
        rows = identify_run(st, RunMethodsConfig(methods=["ranker"], top_k=2),
                            index=CandidateIndex(pool_index), model_dir=tmp_path)
    assert seen == [str(tmp_path / "ranker_renamed.safetensors")]
    assert any(r["rank"] > 0 for r in rows)


def test_library_then_ranker_for_the_rest(pesticides_store, pool_index, caplog):
    library = load_library(str(pesticides_store))
    with SpectrumStore(pesticides_store) as st, caplog.at_level("INFO", "msid.identify"):
        # cuts no library hit reaches: the ranker answers every spectrum as well
        rows = identify_run(st, RunMethodsConfig(methods=["library", "random"], fdr=-1.0),
                            library=library, index=CandidateIndex(pool_index))
        n = len(st)
        assert {r["query_id"] for r in rows if r["method"] == "random"} == set(st.metadata["id"])
        # the log says what each method did, for the rule's log file
        said = caplog.text
        assert f"library: 0 of {n} spectra answered confidently" in said
        answered = len({r["query_id"] for r in rows if r["method"] == "random" and r["rank"]})
        assert f"random: {answered} of {n} spectra answered in" in said
        # the default FDR: library answers itself (q-value 0), the ranker runs on no spectrum
        rows = identify_run(st, RunMethodsConfig(methods=["library", "random"]),
                            library=library, index=CandidateIndex(pool_index))
    assert not [r for r in rows if r["method"] == "random"]
    top = [r for r in rows if r["rank"] == 1]
    assert all(r["q_value"] == 0.0 for r in top)
    assert len({r["query_id"] for r in rows}) == n


def test_a_top_hit_whose_decoy_wins_gets_q_value_one(pesticides_store, monkeypatch):
    import msid.fdr as fdr

    library = load_library(str(pesticides_store))
    real = fdr.compete

    def decoy_wins_first(*args, **kwargs):
        comp, best = real(*args, **kwargs)
        comp.decoy[0] = comp.target[0] + 1.0  # the first query's decoy beats its target
        return comp, best

    monkeypatch.setattr(fdr, "compete", decoy_wins_first)
    with SpectrumStore(pesticides_store) as st:
        rows = identify_run(st, RunMethodsConfig(methods=["library"]), library=library)
        first = str(st.metadata["id"].iat[0])
    top = {r["query_id"]: r for r in rows if r["rank"] == 1}
    assert top[first]["q_value"] == 1.0  # rejected by the competition, so never confident
    assert all(r["q_value"] < 1.0 for q, r in top.items() if q != first and r["note"] == "")


def test_invalid_method_name_fails_validation_naming_it():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    cfg = _config()
    validate(copy.deepcopy(cfg), str(SCHEMA))
    cfg["identify"]["methods"] = ["library", "ranekr"]
    with pytest.raises(WorkflowError, match="ranekr"):
        validate(cfg, str(SCHEMA))


def test_method_of_another_kind_fails_with_clear_message():
    with pytest.raises(ValueError, match="'ei-cosine' is for ei runs and cannot run on "
                                         "small_molecule runs"):
        check_methods(["library", "ei-cosine"], "small_molecule")
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        check_methods(["bogus"], "small_molecule")
    check_methods(["ei-entropy"], "ei")


@pytest.mark.parametrize("path", [("identify",), ("library",), ("preprocess", "runs"),
                                  ("benchmark",), ("models",), ()])
def test_unknown_config_keys_are_errors_naming_the_key(path):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    cfg = _config()
    node = cfg
    for key in path:
        node = node[key]
    node["not_a_key"] = 1
    with pytest.raises(WorkflowError, match="not_a_key"):
        validate(cfg, str(SCHEMA))


def test_denovo_proposes_mass_matched_structures_for_the_rest(pesticides_store):
    from rdkit import Chem

    from msid.chem.structures import parse_structure

    library = load_library(str(pesticides_store))
    cfg = RunMethodsConfig(methods=["library", "denovo"],
                           method_options={"denovo": {"beam_width": 8, "fallback": False}})
    with SpectrumStore(pesticides_store) as st:
        # every spectrum has its own library entry: all confident, de novo runs on none
        assert not [r for r in identify_run(st, cfg, library=library, model_dir=MODELS)
                    if r["method"] == "denovo"]
        cfg.fdr = -1.0  # no library hit is confident
        rows = identify_run(st, cfg, library=library, model_dir=MODELS)
        formula = dict(zip(st.metadata["id"], st.metadata["formula"], strict=True))
    denovo = [r for r in rows if r["method"] == "denovo"]
    assert {r["query_id"] for r in denovo} == set(formula)  # rows or a reason for each
    made = [r for r in denovo if r["rank"] > 0]
    assert made, "no de novo structure within the precursor tolerance"
    for r in made:  # the query's formula (the library record gives one), else its mass
        st = parse_structure(r["smiles"])
        assert st is not None and Chem.MolFromSmiles(r["smiles"]) is not None
        mass_ok = abs(r["ppm_error"]) <= 10.01 or abs(r["ppm_error"]) * st.exact_mass <= 1.01e4
        assert st.formula == formula[r["query_id"]] or mass_ok
    assert {r["note"] for r in denovo if r["rank"] == 0} <= {
        "no valid generated molecule within the precursor tolerance"}


def test_one_method_registry_behind_the_schema_and_the_run_kinds():
    """The method names the config schema accepts, the run kinds' lists
    (msid.method_kinds) and the registry (msid.methods.register) are one set: a method added
    in one place and not the others fails here, not in a user's run."""
    from msid.method_kinds import ALL_METHODS, BENCHMARK_METHODS, METHODS, METHODS_BY_KIND
    from msid.methods import available

    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow" / "schemas"
                             / "config.schema.yaml").read_text())["definitions"]
    hint = "list the method in the schema's enum too (README: Adding a method, step 3)"
    assert set(schema["identify_method"]["enum"]) == set(ALL_METHODS), hint
    assert set(schema["method"]["enum"]) == set(BENCHMARK_METHODS), hint
    assert {"glmr", "denovo"}.isdisjoint(BENCHMARK_METHODS)  # their own leaderboards
    assert set(ALL_METHODS) <= set(available())  # every listed method can be built
    assert sorted(m for ms in METHODS_BY_KIND.values() for m in ms) == sorted(ALL_METHODS)
    assert all(s.kind in METHODS_BY_KIND for s in METHODS.values())
    models = ROOT / "resources" / "models"
    for name, spec in METHODS.items():  # the table's models ship
        assert all((models / f"{m}.safetensors").exists() for m in spec.models), name


def test_built_methods_say_what_the_method_table_says(pesticides_store):
    """What the DAG reads from msid.method_kinds.METHODS (without building anything) is what
    each small-molecule method, built from the shipped models, says of itself."""
    from msid.method_kinds import METHODS
    from msid.methods import MethodResources, make_method
    from msid.search.library import SpectralLibrary

    library = SpectralLibrary(pesticides_store)
    for name, spec in METHODS.items():
        if spec.kind != "small_molecule":
            continue
        model = (str(ROOT / "resources" / "models" / f"{spec.models[0]}.safetensors")
                 if spec.models else None)
        m = make_method(name, MethodResources(library=library, model_path=model))
        assert (m.needs_candidates, m.needs_library) == (spec.needs_candidates,
                                                         spec.needs_library), name


@pytest.fixture
def installed_mass_error(monkeypatch):
    """tests/plugin_mass_error.py as an installed package declares it: its module under
    ``msid.methods``, its MethodSpec under ``msid.method_specs`` (plus two bad declarations)."""
    from importlib.metadata import EntryPoint

    import msid.method_kinds as kinds
    import msid.methods as methods

    eps = [EntryPoint("mass_error", "plugin_mass_error", methods.ENTRY_POINT_GROUP),
           EntryPoint("mass-error", "plugin_mass_error_spec:MASS_ERROR",
                      kinds.SPEC_ENTRY_POINT_GROUP),
           EntryPoint("library", "plugin_mass_error_spec:MASS_ERROR",
                      kinds.SPEC_ENTRY_POINT_GROUP),
           EntryPoint("dict-spec", "plugin_mass_error_spec:NOT_A_SPEC",
                      kinds.SPEC_ENTRY_POINT_GROUP)]

    def fake(group=None):
        return [e for e in eps if e.group == group]

    monkeypatch.setattr(methods, "entry_points", fake)
    monkeypatch.setattr(methods, "_plugins_loaded", False)
    monkeypatch.setattr(methods, "_PLUGIN_ERRORS", {})
    monkeypatch.setattr(kinds, "entry_points", fake)
    kinds._plugin_specs.cache_clear()
    yield
    kinds._plugin_specs.cache_clear()


def test_an_installed_package_declares_its_method_to_the_workflow(
        installed_mass_error, tmp_path, pesticides_store, pool_index):
    """A method another package declares (``msid.method_specs``) joins the table the DAG
    reads, the schema's enums and the run's methods; bad declarations are named, not taken."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from msid.method_kinds import config_schema, method_table, spec_errors

    table = method_table()
    assert table["mass-error"].needs_candidates and table["mass-error"].benchmark
    assert table["library"].needs_library  # msid's own entry is never replaced
    errors = spec_errors()
    assert "already declared" in errors["library (plugin_mass_error_spec:MASS_ERROR)"]
    assert "not a msid.method_kinds.MethodSpec" in errors[
        "dict-spec (plugin_mass_error_spec:NOT_A_SPEC)"]

    cfg = _config()
    cfg["identify"]["methods"] = ["library", "mass-error"]
    cfg["benchmark"]["methods"] = ["library", "mass-error"]
    with pytest.raises(WorkflowError, match="mass-error"):
        validate(copy.deepcopy(cfg), str(SCHEMA))  # msid's own schema does not know it
    schema = config_schema(SCHEMA, tmp_path)
    assert Path(schema).parent == tmp_path
    validate(copy.deepcopy(cfg), schema)
    cfg["identify"]["methods"] = ["mass-eror"]
    with pytest.raises(WorkflowError, match="mass-eror"):
        validate(cfg, schema)

    check_methods(["library", "mass-error"], "small_molecule")
    with SpectrumStore(pesticides_store) as st:
        rows = identify_run(st, RunMethodsConfig(methods=["mass-error"], top_k=3),
                            index=CandidateIndex(pool_index))
    ranked = [r for r in rows if r["rank"] > 0]
    assert ranked and {r["method"] for r in ranked} == {"mass-error"}
    assert all(abs(r["ppm_error"]) <= 10.001 for r in ranked)


def test_without_declared_methods_the_schema_is_msids_own(tmp_path):
    from msid.method_kinds import config_schema

    assert config_schema(SCHEMA, tmp_path) == str(SCHEMA)
    assert not list(tmp_path.iterdir())


def test_a_candidate_row_names_the_adduct_its_mass_assumed(pesticides_store, pool_index,
                                                           tmp_path):
    """A spectrum that states no adduct (as mzML runs never do) gets pool candidates by the
    neutral mass of [M+H]+ / [M-H]- by its ion mode: its candidate rows say which, noted as
    assumed; a stated adduct is written as stated, with no note."""
    import gzip
    import re

    from msid.convert import convert_file
    from msid.preprocess import PreprocessConfig, preprocess_store
    from msid.rankings import ADDUCT_ASSUMED

    with gzip.open(ROOT / "tests/data/gnps_pesticides_matchms_train.mgf.gz", "rt") as fh:
        text = fh.read()
    bare = re.sub(r"^(NAME=.*?)\s+M[+-]\S*\s*$", r"\1", text, flags=re.M)  # "... M+Cl"
    assert bare != text
    (tmp_path / "bare.mgf").write_text(bare)
    convert_file(tmp_path / "bare.mgf", tmp_path / "raw.h5", progress=False)
    preprocess_store(tmp_path / "raw.h5", tmp_path / "bare.h5", PreprocessConfig(),
                     progress=False)
    index = CandidateIndex(pool_index)
    cfg = RunMethodsConfig(methods=["random"], top_k=3)
    with SpectrumStore(tmp_path / "bare.h5") as st:
        md = st.metadata.set_index("id")
        assert (md["adduct"] == "").all() and set(md["ion_mode"]) == {"negative"}
        rows = [r for r in identify_run(st, cfg, index=index) if r["rank"] > 0]
    assert rows
    for r in rows:
        assert r["adduct"] == {"positive": "[M+H]+", "negative": "[M-H]-"}[
            md.loc[r["query_id"], "ion_mode"]] and r["note"] == ADDUCT_ASSUMED
    with SpectrumStore(pesticides_store) as st:
        stated = st.metadata.set_index("id")["adduct"]
        rows = [r for r in identify_run(st, cfg, index=index) if r["rank"] > 0]
    assert rows and all(r["adduct"] == stated[r["query_id"]] != "" and r["note"] == ""
                        for r in rows)


def test_an_in_tree_method_is_declared_once(tmp_path, monkeypatch, capsys):
    """A method added to msid itself: registered in a module of METHOD_MODULES and one entry
    in METHODS. The workflow's schema accepts its name from the table alone (the schema file's
    lists document the names; the test above fails until they are edited too);
    `msid methods` names METHODS for a registered in-tree method it lacks, not an entry
    point; a rule-based method gets no "does not read the spectrum" verdict."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from msid import method_kinds, methods
    from msid.chem.structures import parse_structure
    from msid.cli import main
    from msid.report.leaderboard import learned

    assert method_kinds.config_schema(SCHEMA, tmp_path) == str(SCHEMA)  # nothing to add
    cfg = _config()
    cfg["benchmark"]["methods"] = ["random", "library", "example-method-not-in-msid"]
    with pytest.raises(WorkflowError, match="example-method-not-in-msid"):
        validate(copy.deepcopy(cfg), str(SCHEMA))
    monkeypatch.setitem(method_kinds.METHODS, "example-method-not-in-msid", method_kinds.MethodSpec(
        "small_molecule", needs_candidates=True, benchmark=True))
    schema = method_kinds.config_schema(SCHEMA, tmp_path)
    assert schema != str(SCHEMA)
    validate(copy.deepcopy(cfg), schema)
    assert not learned("example-method-not-in-msid") and not learned("library")
    assert learned("ranker")

    def build(res):  # as if in an msid module
        return methods.RandomRanking(res.seed)

    build.__module__ = "msid.mass_closeness"
    methods.register("mass-closer")(build)
    try:
        assert main(["methods"]) == 0
        err = capsys.readouterr().err
        assert "mass-closer runs with msid identify; the workflow needs an entry in " \
               "msid.method_kinds.METHODS" in err
    finally:
        del methods._REGISTRY["mass-closer"]
    # what a method's rank returns, from any sequence of scores
    cands = [parse_structure(s) for s in ("CCO", "CCN", "CCC")]
    ranked = methods.ranked_candidates(cands, [0.1, 0.9, 0.5])
    assert [r.score for r in ranked] == [0.9, 0.5, 0.1]
    assert ranked[0].inchikey == cands[1].inchikey
