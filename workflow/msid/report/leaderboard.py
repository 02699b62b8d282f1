"""Leaderboard: every MetricsRecord JSON -> CSV, Markdown, LaTeX and a bar chart.

Rows are per (split, candidate setting, method): the ``inchikey`` split scores every query of
the fold, the ``far`` split only those whose structure is far from every training structure
(``msid.benchmark``).

The guard: a learned method whose Hit@1 CI overlaps its own spectrum-blind control's is marked
"does not read the spectrum" in every format (CSV column ``reads_spectrum``, a warning sign in
Markdown, a dagger in LaTeX and in the chart's axis label, explained below the chart).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from msid.atomic import write_bytes, write_text
from msid.benchmark import SPLITS
from msid.metrics import MetricsRecord
from msid.rankings import write_table
from msid.report.plots import leaderboard_bars

METRIC_ORDER = ("hit@1", "hit@5", "hit@20", "mces@1")


def _inputs(rec: MetricsRecord) -> str:
    """Short digest of the queries and candidate file a record was scored on ('' if unknown)."""
    q, c = rec.extra.get("queries_sha256", ""), rec.extra.get("candidates_sha256", "")
    return f"{q[:12]}/{c[:12]}" if q and c else ""


def same_inputs_note(sub: pd.DataFrame) -> str:
    """One line saying whether every row (and control) of a table ranked the same queries and
    candidates, by the digests the harness recorded; a record without one (written before
    digests were) is unknown, never counted as different."""
    cols = [c for c in sub.columns if c == "inputs" or c.startswith("inputs_")]
    # a string per record: its digest, or "" when it has none; NaN: no such record (a row
    # without a control)
    values = [v for c in cols for v in sub[c].tolist() if isinstance(v, str)]
    known = pd.Series([v for v in values if v], dtype=object)
    if known.empty:
        return ""
    unknown = sum(1 for v in values if not v)
    if known.nunique() == 1:
        digest = known.iloc[0]
        if not unknown:
            return (f"Every row and control ranked the same queries and candidate sets "
                    f"(sha256 {digest}).")
        return (f"The rows and controls with a recorded digest ranked the same queries and "
                f"candidate sets (sha256 {digest}); {unknown} carry none (not checked).")
    common = known.value_counts().index[0]
    rows = sub["inputs"].where(sub["inputs"].map(lambda v: isinstance(v, str)), "")
    odd = sorted(sub.loc[(rows != "") & (rows != common), "method"])
    return ("⚠ Rows were scored on different queries or candidate sets (digests "
            f"{', '.join(sorted(set(known)))}; differing from the most common: "
            f"{', '.join(odd) or 'a control'}): compare them only after rerunning.")


def leaderboard_table(metric_files: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per (split, candidate kind, method); controls (e.g. spectrum-blind) become
    columns."""
    rows, controls = [], []
    for f in metric_files:
        rec = MetricsRecord.from_json(Path(f).read_text())
        if rec.variant != "standard":
            if "hit@1" in rec.metrics:
                m = rec.metrics["hit@1"]
                controls.append({"split": rec.split, "candidates": rec.candidates,
                                 "method": rec.method, f"inputs_{rec.variant}": _inputs(rec),
                                 f"hit@1_{rec.variant}": m.value,
                                 f"hit@1_{rec.variant}_ci_low": m.ci_low,
                                 f"hit@1_{rec.variant}_ci_high": m.ci_high})
            continue
        row = {"task": rec.task, "dataset": rec.dataset, "fold": rec.fold, "split": rec.split,
               "candidates": rec.candidates, "method": rec.method, "n_queries": rec.n_queries}
        for name in METRIC_ORDER:
            if name in rec.metrics:
                m = rec.metrics[name]
                row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (
                    m.value, m.ci_low, m.ci_high)
        row["candidates_median"] = rec.extra.get("candidates_median")
        if "far_max_tanimoto" in rec.extra:
            row["far_max_tanimoto"] = rec.extra["far_max_tanimoto"]
        row["config_hash"] = rec.config_hash
        row["model_hash"] = rec.model_hash
        row["inputs"] = _inputs(rec)
        rows.append(row)
    df = pd.DataFrame(rows)
    if controls:
        keys = ["split", "candidates", "method"]
        ctrl = pd.DataFrame(controls).groupby(keys, as_index=False).first()
        df = df.merge(ctrl, on=keys, how="left")
    df["reads_spectrum"] = reads_spectrum(df)
    df["_split_order"] = [SPLITS.index(x) if x in SPLITS else len(SPLITS) for x in df["split"]]
    return (df.sort_values(["_split_order", "candidates", "hit@1", "method"],
                           ascending=[True, True, False, True], kind="stable")
            .drop(columns="_split_order").reset_index(drop=True))


NOT_READING = "does not read the spectrum"


def learned(method: str) -> bool:
    """Whether the guard judges ``method``: a method with a model file in the method table
    (msid's or a package's). Random ranking ignores the peaks by design, and library search or
    another rule-based baseline learns nothing (on a small split its CI overlaps its
    control's for want of queries, which "does not read the spectrum" would misstate); their
    control columns are still shown. A method the table does not know is judged."""
    from msid.method_kinds import method_table

    spec = method_table().get(method)
    return spec is None or bool(spec.models)


def reads_spectrum(df: pd.DataFrame, control: str = "spectrum_blind") -> pd.Series:
    """The guard: per row, False where the method's Hit@1 CI overlaps its own spectrum-blind
    control's CI (it may not be reading the spectrum at all), True where the CIs are apart
    and the method scores higher, ``None`` where there is no control or the method is not a
    learned one (:func:`learned`)."""
    lo, hi = f"hit@1_{control}_ci_low", f"hit@1_{control}_ci_high"
    out = []
    for _, r in df.iterrows():
        if (not learned(r["method"]) or lo not in df or pd.isna(r.get(lo))
                or pd.isna(r.get("hit@1_ci_low"))):
            out.append(None)
        else:
            out.append(bool(r["hit@1_ci_low"] > r[hi]))
    return pd.Series(out, index=df.index, dtype=object)


def _flagged(row: pd.Series) -> bool:
    return row.get("reads_spectrum") is False


def _fmt(row: pd.Series, name: str, digits: int) -> str:
    if name not in row or pd.isna(row[name]):
        return "—"
    return (f"{row[name]:.{digits}f} [{row[f'{name}_ci_low']:.{digits}f}, "
            f"{row[f'{name}_ci_high']:.{digits}f}]")


def to_markdown(df: pd.DataFrame, candidate_sets: dict | None = None) -> str:
    lines = []
    for (split, kind), sub in df.groupby(["split", "candidates"], sort=False):
        head = f"### {kind} candidates"
        if split == "far":
            thr = sub["far_max_tanimoto"].iloc[0] if "far_max_tanimoto" in sub else None
            head += (", far split: queries whose structure has no training structure at "
                     f"Tanimoto >= {thr:g}" if thr is not None and not pd.isna(thr) else
                     ", far split") + f" ({int(sub['n_queries'].max())} queries)"
        elif candidate_sets and kind in candidate_sets:
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
            name = f"{r['method']} ⚠ {NOT_READING}" if _flagged(r) else r["method"]
            lines.append(f"| {name} | {r['n_queries']} | {_fmt(r, 'hit@1', 3)} | "
                         f"{_fmt(r, 'hit@5', 3)} | {_fmt(r, 'hit@20', 3)} | "
                         f"{_fmt(r, 'mces@1', 2)} | {_fmt(r, 'hit@1_spectrum_blind', 3)} |")
        note = same_inputs_note(sub)
        lines += ["", note, ""] if note else [""]
    lines.append(
        "Values: mean over queries [95% bootstrap CI, resampling the queries' structures: "
        "the spectra of one structure share a candidate set, so they are drawn together]. "
        "Dataset "
        f"{df['dataset'].iloc[0]}, fold {df['fold'].iloc[0]}; each table says whether its "
        "rows ranked the same queries and candidate sets. Spectrum-blind control: the same "
        "queries and candidates, each query given the peaks of a query of another structure "
        "(precursor kept); a method that identifies from the spectrum drops towards random "
        f"there. ⚠ marks a method whose Hit@1 CI overlaps its control's: it {NOT_READING} "
        "(as far as this run can tell). Splits: the folds are split by InChIKey first block; "
        "the far split keeps the queries whose structure is far from every training "
        "structure (nearest train-fold Tanimoto on Morgan radius-2 fingerprints below the "
        "threshold named), so close analogues cannot carry it.")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    out = ["\\begin{tabular}{lllrccccc}", "\\toprule",
           "Split & Candidates & Method & $n$ & Hit@1 & Hit@5 & Hit@20 & MCES@1 & "
           "Hit@1 (blind) \\\\",
           "\\midrule"]
    for _, r in df.iterrows():
        cells = [f"{r[m]:.3f}" if m in r and not pd.isna(r[m]) else "--"
                 for m in ("hit@1", "hit@5", "hit@20")]
        mces = f"{r['mces@1']:.2f}" if "mces@1" in r and not pd.isna(r["mces@1"]) else "--"
        blind = r.get("hit@1_spectrum_blind")
        blind_cell = f"{blind:.3f}" if blind is not None and not pd.isna(blind) else "--"
        method = str(r["method"]).replace("_", "\\_") + ("$^\\dagger$" if _flagged(r) else "")
        out.append(f"{r['split']} & {r['candidates']} & {method} & {r['n_queries']} & "
                   + " & ".join(cells) + f" & {mces} & {blind_cell} \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if any(_flagged(r) for _, r in df.iterrows()):
        out.append(f"\\par $^\\dagger$ {NOT_READING}: its Hit@1 95\\% CI overlaps that of its "
                   "spectrum-blind control.")
    return "\n".join(out) + "\n"


#: the chart's mark of a flagged method (a long label collides with its neighbours')
CHART_MARK = "\u2020"
CHART_FOOTNOTE = (f"{CHART_MARK} {NOT_READING}: its Hit@1 95% CI overlaps that of its "
                  "spectrum-blind control (red mark).")


def write_leaderboard(metric_files: Iterable[str | os.PathLike], outputs: dict[str, str],
                      candidate_sets: str | os.PathLike | None = None) -> pd.DataFrame:
    df = leaderboard_table(metric_files)
    cs = json.loads(Path(candidate_sets).read_text()) if candidate_sets else None
    write_table(df, outputs["csv"], sep=",")  # full precision: a reader rounds once
    write_text(outputs["md"], to_markdown(df, cs))
    write_text(outputs["tex"], to_latex(df))
    shown = df.copy()  # the chart marks a flagged method in its axis label, and says why below
    shown["method"] = [f"{r['method']} {CHART_MARK}" if _flagged(r) else r["method"]
                       for _, r in df.iterrows()]
    shown["candidates"] = [k if sp == "inchikey" else f"{k}, {sp} split"
                           for k, sp in zip(df["candidates"], df["split"], strict=True)]
    flagged = any(_flagged(r) for _, r in df.iterrows())
    write_bytes(outputs["png"], leaderboard_bars(shown, footnote=CHART_FOOTNOTE if flagged else ""))
    return df

