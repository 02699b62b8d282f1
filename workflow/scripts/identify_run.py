"""Rule script: a run's store -> identification table (Rankings TSV), every configured method."""
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given
logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                    format="%(asctime)s %(name)s: %(message)s")

from msid.chem.candidates import CandidateIndex
from msid.run_methods import RunMethodsConfig, identify_run
from msid.rankings import quarantined_rows, write_rankings
from msid.search.library import LibrarySearchConfig, SpectralLibrary
from msid.store import SpectrumStore

ident = dict(snakemake.params.identify)
method_options = dict(ident.get("method_options", {}))  # de novo starts from generation.denovo
method_options["denovo"] = {**snakemake.params.denovo, **method_options.get("denovo", {})}
cfg = RunMethodsConfig(methods=list(ident["methods"]), top_k=int(ident["top_k"]),
                       fdr=float(ident["fdr"]),
                       min_delta_score=float(ident["min_delta_score"]),
                       candidate_ppm=float(ident.get("candidate_ppm", 10.0)),
                       max_candidates=int(ident.get("max_candidates", 256)),
                       options={"num_threads": snakemake.threads},
                       method_options=method_options)
search = dict(snakemake.params.search)
search.setdefault("top_k", cfg.top_k)
library = (SpectralLibrary(snakemake.input.library, LibrarySearchConfig(**search))
           if "library" in cfg.methods else None)
index = CandidateIndex(snakemake.input.index) if "index" in snakemake.input.keys() else None
with SpectrumStore(snakemake.input.queries) as queries:
    rows = identify_run(queries, cfg, library=library, index=index,
                        model_dir=snakemake.params.model_dir, kind=snakemake.params.kind,
                        progress=True)
    n = len(queries)
    # the run file's records that were quarantined get a row per method too, with the reason
    methods = list(dict.fromkeys(r["method"] for r in rows)) or list(cfg.methods)
    rows += quarantined_rows(queries.quarantine, methods,
                             stored=queries.metadata["id"].astype(str))
write_rankings(rows, snakemake.output[0])
print(f"{len(rows)} rows for {n} spectra from methods {cfg.methods}")
