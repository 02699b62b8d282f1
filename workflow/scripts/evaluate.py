"""Rule script: rankings + truth -> one MetricsRecord JSON per split (the shared harness)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import pandas as pd

from msid.benchmark import split_query_ids, truth_table
from msid.evaluate import evaluate_rankings, inputs_digest, read_mces_table, summarise
from msid.digest import sha256_file
from msid.rankings import read_rankings, write_table
from msid.store import SpectrumStore

with SpectrumStore(snakemake.input.queries) as queries:
    truth = truth_table(queries, snakemake.input.candidates)
record, per_query = evaluate_rankings(
    read_rankings(snakemake.input.rankings), truth, method=snakemake.wildcards.method,
    dataset=snakemake.params.dataset, fold=snakemake.params.fold,
    candidates=snakemake.wildcards.kind, with_mces=snakemake.params.mces,
    n_boot=snakemake.params.n_boot, seed=snakemake.params.seed, config=snakemake.params.config,
    variant=snakemake.wildcards.variant,
    model_hash=sha256_file(snakemake.input.model) if snakemake.input.model else "",
    extra=inputs_digest(truth["query_id"], snakemake.input.candidates),
    mces_lookup=read_mces_table(snakemake.input.mces) if snakemake.input.mces else None)
record.write(snakemake.output.metrics)
write_table(per_query, snakemake.output.per_query)
print(record.to_json())
splits = pd.read_csv(snakemake.input.splits, sep="\t", dtype={"query_id": str})
far = split_query_ids(splits, "far")
sub = per_query[per_query["query_id"].astype(str).isin(far)]
far_record = summarise(sub, record, n_boot=snakemake.params.n_boot,
                       seed=snakemake.params.seed, split="far",
                       extra={"far_max_tanimoto": snakemake.params.far_max_tanimoto})
far_record.write(snakemake.output.metrics_far)
print(far_record.to_json())
