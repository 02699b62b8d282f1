"""Rule script: a run's store -> identification table (Rankings TSV)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.methods import MethodResources, make_method, rank_queries
from msid.rankings import write_rankings
from msid.search.library import LibrarySearchConfig, SpectralLibrary
from msid.store import SpectrumStore

search = dict(snakemake.params.search)
top_k = search.pop("top_k", snakemake.params.top_k)
library = SpectralLibrary(snakemake.input.library, LibrarySearchConfig(top_k=top_k, **search))
rows = []
with SpectrumStore(snakemake.input.queries) as queries:
    for name in snakemake.params.methods:
        method = make_method(name, MethodResources(library=library))
        rows += rank_queries(method, queries, top_k=snakemake.params.top_k)
write_rankings(rows, snakemake.output[0])
print(f"{len(rows)} ranked rows for {len(queries)} spectra")
