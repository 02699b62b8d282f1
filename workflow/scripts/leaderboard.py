"""Rule script: metrics JSON files -> leaderboard CSV/Markdown/LaTeX/PNG."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.report.leaderboard import write_leaderboard

write_leaderboard(snakemake.input.metrics, dict(snakemake.output.items()),
                  candidate_sets=snakemake.input.candidate_sets)
