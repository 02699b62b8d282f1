"""Rule script: benchmark queries + training store -> per-query splits (inchikey, far)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.benchmark import query_splits
from msid.rankings import write_table

table = query_splits(snakemake.input.queries, snakemake.input.train,
                     snakemake.params.far_max_tanimoto)
write_table(table, snakemake.output[0])
far = table["splits"].str.contains("far")
print(f"{len(table)} queries; far split (nearest train Tanimoto < "
      f"{snakemake.params.far_max_tanimoto}): {int(far.sum())} queries of "
      f"{table.loc[far, 'query_id'].nunique()} ids")
