"""Rule script: benchmark fold -> queries + candidate sets per kind."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import json

from msid.atomic import write_text
from msid.benchmark import BenchmarkConfig, make_benchmark_inputs

b = snakemake.params.benchmark
cfg = BenchmarkConfig(adducts=b["adducts"], max_queries=b["max_queries"], ppm=b["ppm"],
                      max_candidates=b["max_candidates"],
                      min_candidates=b.get("min_candidates") or 2,
                      hard_min_candidates=b.get("hard_min_candidates") or 16, seed=b["seed"])
outs = dict(zip(snakemake.params.kinds, snakemake.output.candidates))
stats = make_benchmark_inputs(snakemake.input.queries, snakemake.input.index, cfg,
                              snakemake.output.queries, outs,
                              out_structures=snakemake.output.structures)
write_text(snakemake.output.stats, json.dumps(stats, indent=2))
print(json.dumps(stats))
