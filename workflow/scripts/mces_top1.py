"""Rule script: MCES@1 of every distinct (truth, top-1) pair of every method's rankings."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.benchmark import truth_table
from msid.evaluate import hit_ranks, mces_table
from msid.rankings import read_rankings, write_table
from msid.store import SpectrumStore

candidates = {Path(f).name.split(".")[1]: f for f in snakemake.input.candidates}
truths = {}
with SpectrumStore(snakemake.input.queries) as queries:
    for kind, path in candidates.items():
        truths[kind] = truth_table(queries, path)
pairs = []
for path in snakemake.input.rankings:
    kind = Path(path).name.split(".")[-3]  # {method}.{kind}.standard.tsv
    per_query = hit_ranks(read_rankings(path), truths[kind], seed=snakemake.params.seed)
    pairs += list(zip(per_query["true_smiles"], per_query["top1_smiles"], strict=True))
table = mces_table(pairs, processes=snakemake.threads)
write_table(table, snakemake.output[0])
print(f"{len(pairs)} top-1 pairs, {len(table)} distinct, on {snakemake.threads} processes")
