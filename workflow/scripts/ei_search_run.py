"""Rule script: a GC-MS run's EI spectra -> EI store + identifications (Rankings TSV)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.search import identify_ei_run

n = identify_ei_run(snakemake.input.queries, snakemake.input.library,
                    snakemake.output.spectra, snakemake.output.identifications,
                    matches_out=snakemake.output.matches,
                    method=snakemake.params.method, model=snakemake.input.model,
                    top_k=int(snakemake.params.top_k), index=dict(snakemake.params.index),
                    unreadable_ok=True)
print(f"{n} EI spectra identified with {snakemake.params.method}")
