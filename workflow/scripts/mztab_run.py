"""Rule script: a run's identification table -> mzTab-M 2.0."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.export.mztab import write_mztab_m

write_mztab_m(snakemake.input.identifications, snakemake.input.spectra, snakemake.output[0],
              sample=snakemake.wildcards.sample, library_name=snakemake.params.library,
              library_file=snakemake.input.library, location=snakemake.params.location)
print(f"wrote {snakemake.output[0]}")
