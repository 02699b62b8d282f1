"""Figures for reports (matplotlib, Agg backend), returned as PNG bytes or data URIs.

The figures drawn here are :class:`matplotlib.figure.Figure` objects of their own, not pyplot's:
pyplot keeps one global state, and ``msid serve`` draws mirror plots for several requests at
once."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def subplots(*args, **kwargs):
    """``(figure, axes)`` as ``plt.subplots`` gives them, on a figure pyplot does not track."""
    fig_kw = {k: kwargs.pop(k) for k in ("figsize", "dpi") if k in kwargs}
    fig = Figure(**fig_kw)
    return fig, fig.subplots(*args, **kwargs)


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)  # a pyplot figure (a caller's own); a no-op for ours
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def mirror_plot(query: tuple[np.ndarray, np.ndarray], match: tuple[np.ndarray, np.ndarray],
                title: str, query_label: str = "query", match_label: str = "library") -> bytes:
    """Query peaks up, matched spectrum down, intensities scaled to the base peak."""
    fig, ax = subplots(figsize=(7, 3.2))
    for (mz, inten), sign, color, label in ((query, 1, "#1f77b4", query_label),
                                            (match, -1, "#d62728", match_label)):
        if len(mz):
            rel = np.asarray(inten, float) / max(float(np.max(inten)), 1e-12)
            ax.vlines(mz, 0, sign * rel, color=color, lw=1.1, label=label)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylim(-1.08, 1.08)
    ax.set_yticks([-1, -0.5, 0, 0.5, 1], ["100", "50", "0", "50", "100"])
    ax.set_xlabel("m/z")
    ax.set_ylabel("relative intensity (%)")
    ax.set_title(title, fontsize=9)
    # beside the axes, never over a peak (an EI base peak often sits where a legend would)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return to_png(fig)


def precursor_map(rt: np.ndarray, precursor: np.ndarray, identified: np.ndarray,
                  label: str = "library hit", other: str = "no hit",
                  without_rt: int = 0) -> bytes:
    """Precursor m/z over retention time, answered spectra in red (``without_rt`` spectra that
    have no retention time are not drawn: the title says how many)."""
    fig, ax = subplots(figsize=(6, 3.2))
    rt_min = np.asarray(rt, float) / 60.0
    ax.scatter(rt_min[~identified], precursor[~identified], s=8, c="#bbbbbb", label=other)
    ax.scatter(rt_min[identified], precursor[identified], s=12, c="#d62728", label=label)
    ax.set_xlabel("retention time (min)")
    ax.set_ylabel("precursor m/z")
    ax.legend(fontsize=8, framealpha=0.85)
    ax.set_title("MS2 precursors" + (f" ({without_rt} without retention time not shown)"
                                     if without_rt else ""), fontsize=9)
    return to_png(fig)


def histogram(values: np.ndarray, xlabel: str, title: str, bins: int = 30) -> bytes:
    fig, ax = subplots(figsize=(4.5, 3.2))
    ax.hist(values, bins=bins, color="#1f77b4")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("spectra")
    ax.set_title(title, fontsize=9)
    return to_png(fig)


def leaderboard_bars(table, metric: str = "hit@1", footnote: str = "") -> bytes:
    """One panel per candidate kind; bars per method with 95% bootstrap CIs, the
    spectrum-blind control as a red mark; method labels slanted, each ending under its own
    bar (so long names never collide); an optional ``footnote`` line below the panels."""
    kinds = list(dict.fromkeys(table["candidates"]))
    fig, axes = subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        sub = table[table["candidates"] == kind].sort_values(metric, ascending=False)
        y = sub[metric].to_numpy()
        err = np.vstack([y - sub[f"{metric}_ci_low"].to_numpy(),
                         sub[f"{metric}_ci_high"].to_numpy() - y])
        ax.bar(sub["method"], y, yerr=err, capsize=4, color="#1f77b4", label=metric)
        control = f"{metric}_spectrum_blind"
        if control in sub:
            ax.scatter(sub["method"], sub[control], marker="_", s=500, linewidths=2.5,
                       color="#d62728", zorder=3, label="spectrum-blind control")
            ax.legend(fontsize=8, frameon=False, loc="upper right")
        ax.set_ylim(0, 1)
        ax.set_title(f"{kind} candidates", fontsize=10)
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", labelrotation=40)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    if footnote:  # below the lowest tick label (the saved figure grows to hold it)
        fig.draw_without_rendering()
        bottom = min(ax.get_tightbbox().y0 for ax in axes[0]) / fig.bbox.height
        fig.text(axes[0][0].get_position().x0, bottom - 0.03, footnote, ha="left", va="top",
                 fontsize=9)
    return to_png(fig)


def load_histories(paths) -> dict[str, dict]:
    """{model name: history} from ``<model>.history.json`` files; an ensemble's members
    become ``name[1]``, ``name[2]``, ..."""
    import json
    from pathlib import Path

    out: dict[str, dict] = {}
    for p in paths:
        name = Path(p).name.removesuffix(".history.json")
        h = json.loads(Path(p).read_text())
        if "members" in h:
            for i, m in enumerate(h["members"], 1):
                out[f"{name}[{i}]"] = m
        else:
            out[name] = h
    return out


def training_curves(histories: dict[str, dict]) -> bytes:
    """One panel per model: training loss and validation Hit@1 against optimizer steps."""
    n = max(len(histories), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, h) in zip(axes.flat, histories.items(), strict=False):
        train, val = h.get("train", []), h.get("val", [])
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue",
                lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("train loss", color="tab:blue", fontsize=8)
        pts = [(r["step"], r["hit@1"]) for r in val if "hit@1" in r]
        if pts:
            ax2 = ax.twinx()
            ax2.plot(*zip(*pts, strict=True), "o-", color="tab:green", ms=3, lw=1)
            ax2.set_ylabel("val Hit@1", color="tab:green", fontsize=8)
    fig.tight_layout()
    return to_png(fig)
