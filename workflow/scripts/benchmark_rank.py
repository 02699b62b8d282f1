"""Rule script: one method ranks every benchmark query's candidates."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.candidate_sets import candidates_for_queries
from msid.method_kinds import method_table
from msid.methods import MethodResources, make_method, rank_queries
from msid.rankings import write_rankings
from msid.search.library import LibrarySearchConfig, SpectralLibrary
from msid.store import SpectrumStore

search = {k: v for k, v in snakemake.params.search.items() if k != "top_k"}
resources = MethodResources(seed=snakemake.params.seed,
                            model_path=snakemake.input.model or None)
if method_table()[snakemake.wildcards.method].needs_library:
    resources.library = SpectralLibrary(snakemake.input.library, LibrarySearchConfig(**search))
method = make_method(snakemake.wildcards.method, resources)
with SpectrumStore(snakemake.input.queries) as queries:
    rows_idx = list(range(len(queries)))
    cands = candidates_for_queries(queries, rows_idx, candidate_file=snakemake.input.candidates,
                                   seed=snakemake.params.seed)
    rows = rank_queries(method, queries, rows_idx, cands)
write_rankings(rows, snakemake.output[0])
print(f"{len(rows)} ranked rows")
