"""Rule script: GLMR leaderboard rows (vs the Ranker, controls, ablations) and the K sweep."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.generation.benchmark import run_glmr_benchmark

p, inp, out = snakemake.params, snakemake.input, snakemake.output
b = p.benchmark
models = {"cross": inp.glmr, **{f: inp[f"glmr_{f}"] for f in p.ablations}}
run_glmr_benchmark(inp.queries, inp.blind, inp.candidates, models, inp.ranker, out.csv, out.md,
                   out.sweep_csv, out.sweep_md, out.sweep_png, k_sweep=p.k_sweep,
                   max_queries=b["max_queries"], n_boot=b["n_boot"], seed=b["seed"],
                   mces=b["mces"], dataset=p.dataset, fold=p.fold,
                   options={"num_threads": snakemake.threads})
