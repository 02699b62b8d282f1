"""Leaderboard: every MetricsRecord JSON -> CSV, Markdown, LaTeX and a bar chart."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from msid.atomic import write_bytes, write_text
from msid.metrics import MetricsRecord
from msid.rankings import write_table
from msid.report.plots import leaderboard_bars

METRIC_ORDER = ("hit@1", "hit@5", "hit@20", "mces@1")


def leaderboard_table(metric_files: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per (candidate kind, method); controls (e.g. spectrum-blind) become columns."""
    rows, controls = [], []
    for f in metric_files:
        rec = MetricsRecord.from_json(Path(f).read_text())
        if rec.variant != "standard":
            if "hit@1" in rec.metrics:
                m = rec.metrics["hit@1"]
                controls.append({"candidates": rec.candidates, "method": rec.method,
                                 f"hit@1_{rec.variant}": m.value,
                                 f"hit@1_{rec.variant}_ci_low": m.ci_low,
                                 f"hit@1_{rec.variant}_ci_high": m.ci_high})
            continue
        row = {"task": rec.task, "dataset": rec.dataset, "fold": rec.fold,
               "candidates": rec.candidates, "method": rec.method, "n_queries": rec.n_queries}
        for name in METRIC_ORDER:
            if name in rec.metrics:
                m = rec.metrics[name]
                row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (
                    m.value, m.ci_low, m.ci_high)
        row["candidates_median"] = rec.extra.get("candidates_median")
        row["config_hash"] = rec.config_hash
        row["model_hash"] = rec.model_hash
        rows.append(row)
    df = pd.DataFrame(rows)
    if controls:
        ctrl = pd.DataFrame(controls).groupby(["candidates", "method"], as_index=False).first()
        df = df.merge(ctrl, on=["candidates", "method"], how="left")
    return (df.sort_values(["candidates", "hit@1", "method"], ascending=[True, False, True],
                           kind="stable").reset_index(drop=True))


def _fmt(row: pd.Series, name: str, digits: int) -> str:
    if name not in row or pd.isna(row[name]):
        return "—"
    return (f"{row[name]:.{digits}f} [{row[f'{name}_ci_low']:.{digits}f}, "
            f"{row[f'{name}_ci_high']:.{digits}f}]")


def to_markdown(df: pd.DataFrame, candidate_sets: dict | None = None) -> str:
    lines = []
    for kind, sub in df.groupby("candidates", sort=False):
        head = f"### {kind} candidates"
        if candidate_sets and kind in candidate_sets:
            cs = candidate_sets[kind]
            head += (f" ({cs['queries']} queries; candidates per query: median {cs['median']:g},"
                     f" min {cs['min']}, max {cs['max']}")
            if cs.get("left_out"):
                head += (f"; {cs['left_out']} queries with fewer than "
                         f"{cs.get('min_candidates', 2)} candidates left out")
            head += ")"

        lines += [head, "", "| method | n | Hit@1 | Hit@5 | Hit@20 | MCES@1 ↓ | "
                            "Hit@1 spectrum-blind control |",
                  "|---|---:|---|---|---|---|---|"]
        for _, r in sub.iterrows():
            lines.append(f"| {r['method']} | {r['n_queries']} | {_fmt(r, 'hit@1', 3)} | "
                         f"{_fmt(r, 'hit@5', 3)} | {_fmt(r, 'hit@20', 3)} | "
                         f"{_fmt(r, 'mces@1', 2)} | {_fmt(r, 'hit@1_spectrum_blind', 3)} |")
        lines.append("")
    lines.append("Values: mean over queries [95% bootstrap CI]. Dataset "
                 f"{df['dataset'].iloc[0]}, fold {df['fold'].iloc[0]}; all methods measured "
                 "in the same run on the same candidate sets. Spectrum-blind control: the same "
                 "queries and candidates, each query given the peaks of a query of another "
                 "structure (precursor kept); a method that identifies from the spectrum drops "
                 "towards random there.")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    out = ["\\begin{tabular}{llrccccc}", "\\toprule",
           "Candidates & Method & $n$ & Hit@1 & Hit@5 & Hit@20 & MCES@1 & Hit@1 (blind) \\\\",
           "\\midrule"]
    for _, r in df.iterrows():
        cells = [f"{r[m]:.3f}" if m in r and not pd.isna(r[m]) else "--"
                 for m in ("hit@1", "hit@5", "hit@20")]
        mces = f"{r['mces@1']:.2f}" if "mces@1" in r and not pd.isna(r["mces@1"]) else "--"
        blind = r.get("hit@1_spectrum_blind")
        blind_cell = f"{blind:.3f}" if blind is not None and not pd.isna(blind) else "--"
        method = str(r["method"]).replace("_", "\\_")
        out.append(f"{r['candidates']} & {method} & {r['n_queries']} & "
                   + " & ".join(cells) + f" & {mces} & {blind_cell} \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def write_leaderboard(metric_files: Iterable[str | os.PathLike], outputs: dict[str, str],
                      candidate_sets: str | os.PathLike | None = None) -> pd.DataFrame:
    df = leaderboard_table(metric_files)
    cs = json.loads(Path(candidate_sets).read_text()) if candidate_sets else None
    write_table(df, outputs["csv"], sep=",", float_format="%.4f")
    write_text(outputs["md"], to_markdown(df, cs))
    write_text(outputs["tex"], to_latex(df))
    write_bytes(outputs["png"], leaderboard_bars(df))
    return df
