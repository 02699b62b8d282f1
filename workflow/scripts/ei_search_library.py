"""Rule script: EI library files (MSP/MGF/stores) -> one nominal-mass EI library store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.spectra import EI_SEARCH_LIBRARY_PREPROCESS, merge_ei_files, read_record_ids

exclude_file = getattr(snakemake.input, "exclude", None)
exclude = read_record_ids(exclude_file) if exclude_file else set()
n = merge_ei_files(list(snakemake.input.libraries), snakemake.output[0], exclude=exclude,
                   preprocess=EI_SEARCH_LIBRARY_PREPROCESS)
print(f"{n} EI library spectra from {list(snakemake.input.libraries)} -> {snakemake.output[0]}"
      + (f"; {len(exclude)} record ids excluded ({exclude_file})" if exclude else ""))
