"""Rule script: de novo leaderboard (model, spectrum-blind control, random generation)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.generation.benchmark import run_denovo_benchmark

p, inp, out = snakemake.params, snakemake.input, snakemake.output
b = p.benchmark
run_denovo_benchmark(inp.queries, inp.blind, inp.index, inp.model, out.csv, out.md,
                     options={**p.denovo, "num_threads": snakemake.threads,
                              "rescore_model": inp.rescorer[0] if inp.rescorer else None},
                     max_queries=b["max_queries"], n_boot=b["n_boot"], seed=b["seed"],
                     mces=b["mces"], dataset=p.dataset, fold=p.fold)
