"""The demo DAG through a real single-node Slurm cluster (tests/slurm/start_cluster.sh).

Needs root and Debian's Slurm packages (the start script installs them); skipped elsewhere.
Asserts from `sacct` that every job ran under Slurm and completed, in the partition its
resources ask for, and that a job killed with `scancel` is retried and the DAG still
finishes with the same results as the local run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, make_workdir

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]
STATE = Path(os.environ.get("MSID_SLURM_DIR", "/tmp/msid-slurm"))


def _gpu_rules() -> set[str]:
    rules = set()
    for f in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", f.read_text(), re.M):
            if re.search(r"\bgpu=(1|GPU_COUNT)\b", body):  # GPU_COUNT: 1 unless gres
                rules.add(name)
    return rules


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the test cluster needs root and apt-get")
    start = subprocess.run(["bash", str(ROOT / "tests/slurm/start_cluster.sh")],
                           capture_output=True, text=True, timeout=600)
    assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]
    env = {"SLURM_CONF": str(STATE / "etc" / "slurm.conf"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    yield env
    subprocess.run(["bash", str(ROOT / "tests/slurm/stop_cluster.sh")], capture_output=True,
                   timeout=120)


def _sacct(env: dict, since: str) -> pd.DataFrame:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "-o",
                          "JobIDRaw,Comment,Partition,State,AllocTRES"],
                         capture_output=True, text=True, env={**os.environ, **env}, check=True)
    rows = [ln.split("|") for ln in out.stdout.strip().splitlines() if ln]
    df = pd.DataFrame(rows, columns=["job", "comment", "partition", "state", "tres"])
    df["rule"] = df["comment"].str.extract(r"^rule_([A-Za-z0-9]+(?:_[a-z]+)*?)(?:_wildcards|$)")
    return df


def test_demo_dag_under_slurm_with_a_cancelled_job(cluster, demo_run, tmp_path):
    work = make_workdir(tmp_path / "slurm_demo")
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    # the demo DAG plus one (small) training job, which must land on the GPU partition
    cmd = [sys.executable, "-m", "snakemake", "all", "results/models/fp_ffn.safetensors",
           "-s", str(ROOT / "workflow/Snakefile"), "--directory", str(work),
           "--profile", str(ROOT / "profiles/slurm"), "--configfile",
           str(ROOT / "config/demo.yaml"), str(ROOT / "tests/slurm/train_smoke.yaml")]
    env = {**os.environ, "MPLBACKEND": "Agg", **cluster}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    # cancel the library conversion once it runs; the profile's retries must resubmit it
    cancelled = None
    deadline = time.time() + 600
    while cancelled is None and time.time() < deadline and proc.poll() is None:
        q = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"],
                           capture_output=True, text=True, env=env).stdout
        for line in q.splitlines():
            job, comment = line.split("|", 1)
            if comment.startswith("rule_convert_library"):
                subprocess.run(["scancel", job], env=env, check=True)
                cancelled = job
        time.sleep(2)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-5000:]
    assert cancelled, "convert_library never ran under Slurm"

    acct = _sacct(cluster, since)
    for _ in range(10):  # accounting can lag a second behind the last job
        if (acct["job"] != "").all() and not acct["state"].str.startswith("RUNNING").any():
            break
        time.sleep(1)
        acct = _sacct(cluster, since)
    jobs = acct[acct["comment"].str.startswith("rule_")]
    assert len(jobs) >= 20
    retried = jobs[jobs["comment"].str.startswith("rule_convert_library")]
    assert retried["state"].str.startswith("CANCELLED").sum() == 1
    assert (retried["state"] == "COMPLETED").sum() == 1
    others = jobs[jobs["job"] != cancelled]
    assert (others["state"] == "COMPLETED").all(), others[others["state"] != "COMPLETED"]
    gpu_rules = _gpu_rules()
    assert "train_model" in gpu_rules
    trained = others[others["comment"].str.startswith("rule_train_model")]
    assert len(trained) == 1 and trained["state"].iat[0] == "COMPLETED"
    for _, j in others.iterrows():
        on_gpu = any(j["comment"].startswith(f"rule_{r}") for r in gpu_rules)
        assert j["partition"] == ("gpu" if on_gpu else "cpu"), j.to_dict()
        assert ("gres/gpu=1" in j["tres"]) == on_gpu, j.to_dict()

    # same results as the local run of the same DAG
    for rel in ("results/runs/pestmix_dda/identifications.tsv",
                "results/leaderboard/leaderboard.csv"):
        a = pd.read_csv(work / rel, sep=None, engine="python")
        b = pd.read_csv(demo_run / rel, sep=None, engine="python")
        if rel.endswith("leaderboard.csv"):  # Slurm benchmarks three of the demo's six methods
            assert set(a["method"]) == {"random", "library", "ranker"}
            b = b[b["method"].isin(a["method"])].reset_index(drop=True)
            # the configs differ in their method lists, so their hashes differ
            a, b = a.drop(columns="config_hash"), b.drop(columns="config_hash")
        pd.testing.assert_frame_equal(a, b)
