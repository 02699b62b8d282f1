"""Rule script: one method ranks every benchmark query's candidates, then the same candidates
for the spectrum-blind control queries."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.candidate_sets import read_candidate_file
from msid.chem.structures import load_structure_table
from msid.methods import benchmark_method, rank_benchmark_queries
from msid.rankings import write_rankings

method = benchmark_method(snakemake.wildcards.method, seed=snakemake.params.seed,
                          model_path=snakemake.input.model or None,
                          library=snakemake.input.library,
                          search=snakemake.params.search)
print(f"{load_structure_table(snakemake.input.structures)} candidate structures parsed by "
      "benchmark_inputs")
candidates = read_candidate_file(snakemake.input.candidates)
for queries, out in [(snakemake.input.queries, snakemake.output.standard),
                     (snakemake.input.blind, snakemake.output.blind)]:
    rows = rank_benchmark_queries(method, queries, candidates, seed=snakemake.params.seed)
    write_rankings(rows, out)
    print(f"{out}: {len(rows)} ranked rows")
