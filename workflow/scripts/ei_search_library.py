"""Rule script: EI library files (MSP/MGF/stores) -> one nominal-mass EI library store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.ei.spectra import merge_ei_files

n = merge_ei_files(list(snakemake.input), snakemake.output[0])
print(f"{n} EI library spectra from {list(snakemake.input)} -> {snakemake.output[0]}")
