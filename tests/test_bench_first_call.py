"""``msid bench``'s first-call comparison: msid identify (fresh cache, then cached) beside a
plain FlashEntropySearch script, on real spectra."""

from __future__ import annotations

import ast
from pathlib import Path

from msid.bench import bench_first_call, write_query_mgf
from msid.io import RawSpectrum, read_spectra

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "tests/data/gnps_pesticides_matchms_train.mgf.gz"


def test_flash_baseline_is_plain_ms_entropy():
    """The yardstick imports nothing from msid: its time is a plain script's."""
    tree = ast.parse((ROOT / "workflow/msid/search/flash_baseline.py").read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module}
    assert "msid" not in modules and "ms_entropy" in modules


def test_first_call_comparison_runs_both_on_the_same_files(tmp_path):
    n = write_query_mgf(LIB, tmp_path / "q.mgf", every=4)
    ids = [r.record_id for r in read_spectra(tmp_path / "q.mgf") if isinstance(r, RawSpectrum)]
    assert n == len(ids) > 10
    out = bench_first_call(str(LIB), tmp_path, str(tmp_path / "q.mgf"))
    assert out["queries"] == len(ids)
    assert out["first_s"] > 0 and out["second_s"] > 0 and out["script_s"] > 0
    # queries taken from the library: both find their own structures at rank 1 almost always
    assert out["msid_hit1"] >= 0.8 and out["script_hit1"] >= 0.5
    assert (tmp_path / "first-call-cache").is_dir()  # the first call filled a fresh cache
