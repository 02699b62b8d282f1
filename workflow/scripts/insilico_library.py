"""Rule script: the in-silico EI library of the candidate pool, chunked and resumable."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.insilico import build_library

stats = build_library(list(snakemake.input.pools), snakemake.input.model, snakemake.output[0],
                      snakemake.params.chunks_dir, chunk_size=snakemake.params.chunk_size,
                      n_jobs=snakemake.threads, progress=False)
print(stats)
