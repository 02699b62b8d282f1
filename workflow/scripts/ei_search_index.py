"""Rule script: the EI library's vector index (built beside the library; summary JSON out)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

import json

from msid.atomic import write_text
from msid.ei.methods import EIEmbeddingSearch, get_library

method = EIEmbeddingSearch(get_library(snakemake.input.library), snakemake.input.model,
                           {**snakemake.params.index, "threads": snakemake.threads})
meta = {**method.index.meta, "index_file": str(method.index.path)}
write_text(snakemake.output[0], json.dumps(meta, indent=1) + "\n")
print(json.dumps(meta))
