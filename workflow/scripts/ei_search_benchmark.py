"""Rule script: every EI method on the same test-fold queries and library -> metrics JSONs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.search import library_store_path
from msid.ei.search_eval import load_pool, run_benchmark, split_pool

p = snakemake.params
pool = load_pool([library_store_path(f) for f in snakemake.input.data])
split = split_pool(pool, max_queries=int(p.max_queries), seed=int(p.seed))
print(f"{len(split.queries)} test queries, library of {len(split.library)} spectra")
files = run_benchmark(pool, split, p.outdir, methods=tuple(p.methods),
                      model_path=snakemake.input.model, index=dict(p.index),
                      n_boot=int(p.n_boot), seed=int(p.seed), progress=False)
print("\n".join(map(str, files)))
