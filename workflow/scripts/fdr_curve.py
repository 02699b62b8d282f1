"""Rule script: estimated vs true FDR of library search on the benchmark fold (leave-one-out)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.atomic import write_text
from msid.fdr import fdr_curve, plot_fdr_curve
from msid.rankings import write_table
from msid.search.library import LibrarySearchConfig

search = {k: v for k, v in dict(snakemake.params.search).items() if k != "top_k"}
table, summary = fdr_curve(snakemake.input.library, fold=snakemake.params.fold,
                           max_queries=snakemake.params.max_queries, seed=snakemake.params.seed,
                           cfg=LibrarySearchConfig(**search))
write_table(table, snakemake.output.tsv, float_format="%.6g")
write_text(snakemake.output.json, json.dumps(summary, indent=2, default=float))
plot_fdr_curve(table, snakemake.output.png)
print(json.dumps(summary, indent=2, default=float))
