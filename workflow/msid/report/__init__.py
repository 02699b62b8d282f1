"""Reports: per-run HTML, leaderboard tables and figures."""
