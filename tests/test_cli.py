import subprocess
import sys
from pathlib import Path

import pytest

from msid.chem.structures import parse_structure
from msid.cli import main
from msid.rankings import ALL_COLUMNS, read_rankings
from msid.store import SpectrumStore


def test_identify_library_finds_each_spectrum_itself(data_dir, tmp_path, pesticides_store):
    q = data_dir / "gnps_pesticides_matchms_train.mgf.gz"
    out = tmp_path / "ids.tsv"
    assert main(["identify", str(q), "--library", str(q), "--out", str(out)]) == 0
    r = read_rankings(out)
    assert tuple(r.columns) == ALL_COLUMNS
    top = r[r["rank"] == 1].set_index("query_id")
    with SpectrumStore(pesticides_store) as st:
        truth = st.metadata.set_index("id")["inchikey"].str[:14]
    assert len(top) == 64
    assert (top["inchikey"].str[:14] == truth.loc[top.index]).all()
    assert (top["library_id"] != "").all() and (top["method"] == "library").all()


def test_identify_names_the_options_it_does_not_use(data_dir, tmp_path, pesticides_store,
                                                    capsys, monkeypatch):
    """Options that change nothing in this call are named, never silently dropped; the seed
    reaches the decoys behind the q-values."""
    q = data_dir / "bad" / "pesticides_first3.mgf"
    args = ["identify", str(q), "--library", str(pesticides_store)]
    assert main([*args, "--ppm", "5", "--fdr", "0.01", "--out", str(tmp_path / "a.tsv")]) == 0
    err = capsys.readouterr().err
    assert "warning: not used: --fdr" in err and "warning: not used: --ppm" in err
    assert main([*args, "--out", str(tmp_path / "b.tsv")]) == 0
    assert "not used" not in capsys.readouterr().err
    import msid.identify

    seeds = []
    real = msid.identify.add_qvalues
    monkeypatch.setattr(msid.identify, "add_qvalues",
                        lambda *x, seed=0: seeds.append(seed) or real(*x, seed=seed))
    assert main([*args, "--seed", "7", "--out", str(tmp_path / "c.tsv")]) == 0
    assert seeds == [7]  # as the workflow's identify_run passes its seed


def test_identify_with_massspecgym_candidates(data_dir, tmp_path):
    out = tmp_path / "r.tsv"
    rc = main(["identify", str(data_dir / "massspecgym_debug_5_train.mgf.gz"),
               "--candidates", str(data_dir / "massspecgym_debug_5_candidates_train.json.gz"),
               "--method", "random", "--top-k", "0", "--out", str(out)])
    assert rc == 0
    r = read_rankings(out)
    assert r["query_id"].nunique() == 4
    assert (r.groupby("query_id").size() >= 20).all()  # 26-369 candidates each, de-duplicated
    # candidates are normalised (canonical, stereo removed) so spelling cannot leak the answer
    assert not r["smiles"].str.contains("@").any()
    assert all(parse_structure(s).smiles_flat == s for s in r["smiles"].head(50))


def test_identify_with_pool_candidates(data_dir, tmp_path, pool_index):
    out = tmp_path / "r.tsv"
    rc = main(["identify", str(data_dir / "gnps_pesticides_matchms_train.mgf.gz"),
               "--library", str(data_dir / "gnps_pesticides_matchms_train.mgf.gz"),
               "--pool", str(pool_index), "--out", str(out)])
    assert rc == 0
    r = read_rankings(out)
    assert r["query_id"].nunique() > 30
    # only a candidate that is a library hit's own structure names a library entry
    named = r[r["library_id"] != ""]
    assert 0 < len(named) < len(r) and (named["rank"] == 1).mean() > 0.5


def test_methods_and_entry_point():
    exe = Path(sys.executable).parent / "msid"
    res = subprocess.run([str(exe), "methods"], capture_output=True, text=True, check=True)
    assert {"library", "random"} <= set(res.stdout.split())
    assert "peptrm" not in res.stdout.split()  # the names msid identify takes, nothing else
    helped = subprocess.run([str(exe), "methods", "--help"], capture_output=True, text=True,
                            check=True).stdout
    assert "(peptrm, dp) runs with msid denovo-peptides" in " ".join(helped.split())


SHIPPED = ("ranker", "reconstructor", "deepsets", "fp_ffn")


@pytest.mark.parametrize("method", SHIPPED)
def test_identify_with_shipped_models(method, data_dir, tmp_path):
    """The committed model files work out of the box, and their cards say how they were made."""
    import json

    from conftest import RESOURCES

    model = RESOURCES / "models" / f"{method}.safetensors"
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["family"] == method
    out = tmp_path / "r.tsv"
    rc = main(["identify", str(data_dir / "massspecgym_debug_5_train.mgf.gz"),
               "--candidates", str(data_dir / "massspecgym_debug_5_candidates_train.json.gz"),
               "--method", method, "--top-k", "0", "--out", str(out)])
    assert rc == 0
    r = read_rankings(out)
    assert r["query_id"].nunique() == 4 and (r["method"] == method).all()
    scores = r.groupby("query_id")["score"].apply(lambda s: s.is_monotonic_decreasing)
    assert scores.all()


def test_bad_method_and_model_give_clean_errors(data_dir, tmp_path, capsys):
    q = str(data_dir / "massspecgym_debug_5_train.mgf.gz")
    cands = str(data_dir / "massspecgym_debug_5_candidates_train.json.gz")
    assert main(["identify", q, "--candidates", cands, "--method", "nope",
                 "--out", str(tmp_path / "o.tsv")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    assert main(["identify", q, "--candidates", cands, "--method", "ranker", "--model",
                 str(broken), "--out", str(tmp_path / "o.tsv")]) == 2
    err = capsys.readouterr().err
    assert "broken.safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "o.tsv").exists()


def test_an_installed_package_adds_a_method_through_the_entry_point_group(
        data_dir, tmp_path, monkeypatch, capsys):
    """A package declaring an `msid.methods` entry point gets its method into `msid methods`
    and `msid identify`; a plugin that fails to import is named, and msid's own methods stay."""
    from importlib.metadata import EntryPoint

    import msid.methods as methods

    eps = [EntryPoint("mass_error", "plugin_mass_error", methods.ENTRY_POINT_GROUP),
           EntryPoint("broken", "no_such_plugin_module", methods.ENTRY_POINT_GROUP),
           EntryPoint("shadow", "plugin_shadows_library", methods.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(methods, "entry_points",
                        lambda group=None: [e for e in eps if e.group == group])
    monkeypatch.setattr(methods, "_plugins_loaded", False)
    monkeypatch.setattr(methods, "_PLUGIN_ERRORS", {})
    assert main(["methods"]) == 0
    out = capsys.readouterr()
    assert {"mass-error", "library", "ranker"} <= set(out.out.split())
    assert "no_such_plugin_module" in out.err
    # a plugin may not replace a method msid (or another plugin) registered
    assert "plugin_shadows_library" in out.err and "'library' is already registered" in out.err
    assert methods._REGISTRY["library"].__module__ == "msid.methods"
    res = tmp_path / "r.tsv"
    assert main(["identify", str(data_dir / "massspecgym_debug_5_train.mgf.gz"),
                 "--candidates", str(data_dir / "massspecgym_debug_5_candidates_train.json.gz"),
                 "--method", "mass-error", "--top-k", "3", "--out", str(res)]) == 0
    r = read_rankings(res)
    assert r["query_id"].nunique() == 4 and (r["method"] == "mass-error").all()
    assert (r.groupby("query_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
