"""Rule script: molecule files -> candidate index."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.chem.candidates import PoolSource, build_index

sources = [PoolSource(Path(p), n) for n, p in zip(snakemake.params.names, snakemake.input)]
meta = build_index(sources, snakemake.output[0], n_jobs=snakemake.threads)
print(f"{meta['n_molecules']} molecules indexed in {meta['build_seconds']:.1f} s")
