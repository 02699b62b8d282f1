"""Shared fixtures: real spectra from tests/data and resources/, converted once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
RESOURCES = ROOT / "resources"
os.environ.setdefault("MPLBACKEND", "Agg")
# what msid caches on first use (converted libraries, the candidate index, EI stores) goes to a
# folder of this test session, never the user's ~/.cache: every run starts as a new machine
# does, whatever an earlier run left behind (removed at the end of the session)
_CACHE = tempfile.mkdtemp(prefix="msid-test-cache-")
os.environ["MSID_CACHE"] = _CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def pesticides_store(tmp_path_factory) -> Path:
    """GNPS pesticide spectra (64 real spectra, 38 structures), converted + preprocessed."""
    from msid.convert import convert_file
    from msid.preprocess import PreprocessConfig, preprocess_store

    d = tmp_path_factory.mktemp("pesticides")
    convert_file(DATA / "gnps_pesticides_matchms_train.mgf.gz", d / "raw.h5", progress=False)
    preprocess_store(d / "raw.h5", d / "lib.h5",
                     PreprocessConfig(require_structure=True, assign_folds=True), progress=False)
    return d / "lib.h5"


@pytest.fixture(scope="session")
def pool_index(tmp_path_factory) -> Path:
    """Candidate index over the shipped 27k-molecule pool (decoys left out to stay fast)."""
    from msid.chem.candidates import PoolSource, build_index

    out = tmp_path_factory.mktemp("index") / "pool.npz"
    build_index([PoolSource(RESOURCES / "candidates" / "candidate_pool.tsv.gz", "pool")], out,
                log=lambda *_: None)
    return out


def run_snakemake(workdir: Path, *args: str, profile: str | None = None,
                  env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """The real workflow in ``workdir`` (config/ and resources/ linked from the repo)."""
    targets = [a for a in args if a == "all"]  # targets first: --configfile takes every word
    options = [a for a in args if a != "all"]
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s",
           str(ROOT / "workflow" / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--profile", profile] if profile else ["--cores", "2"]
    return subprocess.run([*cmd, *options], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})


def make_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in ("config", "resources"):
        (path / name).symlink_to(ROOT / name)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The demo DAG (config/demo.yaml) run locally once per session."""
    work = make_workdir(tmp_path_factory.mktemp("demo"))
    res = run_snakemake(work, "--configfile", str(ROOT / "config" / "demo.yaml"), "all")
    assert res.returncode == 0, res.stderr[-5000:]
    return work
