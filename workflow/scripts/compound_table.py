"""Rule script: a run's compound-level summary of its library hits."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.compounds import write_compound_table

table = write_compound_table(snakemake.input.identifications, snakemake.output[0],
                             fdr=snakemake.params.fdr,
                             min_delta=snakemake.params.min_delta_score)
print(f"{len(table)} compounds, {int(table['confident'].sum())} confident")
