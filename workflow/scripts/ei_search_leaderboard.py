"""Rule script: EI metrics JSONs -> results/leaderboard/ei_search.{md,csv}."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.search_eval import write_ei_leaderboard

df = write_ei_leaderboard(list(snakemake.input), snakemake.output.csv, snakemake.output.md)
print(df.to_string())
