"""Rule script: EI training files -> one nominal-mass EI store (folds by InChIKey first block)
and its molecule list (the input of the bde rule)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.ei.spectra import merge_ei_files, write_molecules

n = merge_ei_files(list(snakemake.input), snakemake.output.store, n_jobs=snakemake.threads)
m = write_molecules(snakemake.output.store, snakemake.output.molecules)
print(f"{n} EI spectra, {m} structures from {list(snakemake.input)}")
