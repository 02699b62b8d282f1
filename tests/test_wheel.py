"""The package works installed from its wheel, outside the repository."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

from conftest import DATA, ROOT


def _run(*cmd: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**{k: v for k, v in os.environ.items() if k != "MSID_DATA_DIR"},
                               "MPLBACKEND": "Agg", **(env or {})})


def test_wheel_installs_and_identifies_outside_the_repo(tmp_path):
    """Build the wheel from a copy of the sources, install it into a fresh venv (dependencies
    reused from this environment through a .pth line, so nothing is downloaded), then run
    ``msid identify`` from a folder outside the repository."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "workflow" / "msid", src / "workflow" / "msid",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    res = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "-q", "-w", str(tmp_path / "dist"), str(src), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("msid-*.whl"))
    venv = tmp_path / "venv"
    res = _run(sys._base_executable, "-m", "venv", str(venv), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    py = venv / "bin" / "python"
    purelib = _run(str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                   cwd=tmp_path).stdout.strip()
    Path(purelib, "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    res = _run(str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel),
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(str(py), "-c", "import msid; print(msid.__file__)", cwd=work).stdout
    assert where.startswith(purelib), where  # the installed copy, not the checkout
    q = DATA / "gnps_pesticides_matchms_train.mgf.gz"
    msid = str(venv / "bin" / "msid")
    res = _run(msid, "identify", str(q), "--library", str(q), "--out", "ids.tsv", cwd=work,
               env={"MSID_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-3000:]
    lines = (work / "ids.tsv").read_text().splitlines()
    assert lines[0].startswith("query_id\trank") and len(lines) > 64
    # the shipped library is data, not code: without a data folder the error says what to do
    res = _run(msid, "identify", str(q), "--out", "x.tsv", cwd=work)
    assert res.returncode == 2 and "MSID_DATA_DIR" in res.stderr, res.stderr[-2000:]
    res = _run(str(py), "-c", "from msid.resources import resource; "
               "print(resource('models', 'ranker.safetensors'))", cwd=work,
               env={"MSID_DATA_DIR": str(ROOT / "resources")})
    assert res.returncode == 0 and "ranker.safetensors" in res.stdout, res.stderr[-2000:]
    # every family finds its shipped files through MSID_DATA_DIR, none through the source path
    data = {"MSID_DATA_DIR": str(ROOT / "resources")}
    res = _run(str(py), "-c", "from msid.ei import insilico, methods; "
               "from msid.generation.modelio import default_path; "
               "from msid.models.methods import default_model_path; "
               "from msid.peptides.denovo import shipped_model; "
               "print(methods.default_library()); print(methods.default_model()); "
               "print(insilico.default_model()); print(default_path('denovo')); "
               "print(default_model_path('ranker')); print(shipped_model())",
               cwd=work, env=data)
    assert res.returncode == 0, res.stderr[-2000:]
    paths = [Path(p) for p in res.stdout.split()]
    assert len(paths) == 6 and all(p.is_relative_to(ROOT / "resources") and p.exists()
                                   for p in paths), paths
    res = _run(msid, "identify", str(ROOT / "resources/runs/gcms_ei_demo.msp"), "--method",
               "ei-weighted-cosine", "--out", "ei.tsv", cwd=work,
               env={**data, "MSID_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((work / "ei.tsv").read_text().splitlines()) > 10
