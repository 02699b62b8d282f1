"""Rule script: peptide leaderboard (PepTRM vs DP baseline, test fold)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.peptides.leaderboard import run_leaderboard

bench = dict(snakemake.params.benchmark)
table = run_leaderboard(list(snakemake.input.data), snakemake.input.model,
                        Path(snakemake.output[0]).parent, folds=dict(snakemake.params.folds) or None,
                        decode=dict(snakemake.params.decode), dp=dict(snakemake.params.dp),
                        n_boot=int(bench.get("n_boot", 1000)), seed=int(bench.get("seed", 0)))
print(table.to_string())
