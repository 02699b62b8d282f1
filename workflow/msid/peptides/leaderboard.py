"""Peptide leaderboard: PepTRM and the DP baseline on the test fold (peptides unseen in
training), same spectra, same run: amino-acid precision/recall, peptide recall, precision-coverage
AUC with paired bootstrap CIs; the precision-coverage curves; accuracy at each supervision step.
A spectrum-blind control decodes each spectrum with another peptide's peaks; two ablation rows
decode the same model with one part off: the transformer alone (no ion evidence) and the ion
evidence alone (the transformer's logits zeroed).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from msid.atomic import atomic_path, write_text
from msid.peptides.data import read_annotated_mgf, split_by_sequence
from msid.peptides.denovo import DecodeConfig, sequence_spectra
from msid.peptides.metrics import (
    METRICS,
    Scored,
    aa_precision_coverage,
    bootstrap,
    precision_coverage,
    score_predictions,
    summary,
)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def _other_peptide(spectra: list) -> list:
    """For each spectrum, the next one (cyclically) whose peptide differs (itself if none)."""
    n = len(spectra)
    return [next((spectra[(i + d) % n] for d in range(1, n) if spectra[(i + d) % n].key != s.key),
                 s) for i, s in enumerate(spectra)]


def run_leaderboard(data: list[str], model_path: str, out_dir: str | os.PathLike, *,
                    folds: dict | None = None, decode: dict | None = None,
                    dp: dict | None = None, n_boot: int = 1000, seed: int = 0,
                    fold: str = "test", log=print) -> pd.DataFrame:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msid.peptides.training import load_peptrm, per_step_metrics, predict

    out = Path(out_dir)
    folds = {"val": 0.1, "test": 0.1, **(folds or {})}
    cfg = DecodeConfig.from_dict({k: v for k, v in (decode or {}).items() if k != "max_spectra"})
    spectra = split_by_sequence(read_annotated_mgf(data).spectra, folds["val"],
                                folds["test"])[fold]
    truths = [s.tokens for s in spectra]
    log(f"peptide leaderboard: {len(spectra)} {fold}-fold spectra, "
        f"{len({s.key for s in spectra})} peptides")
    results: dict[str, Scored] = {}
    speed: dict[str, float] = {}
    model, card = load_peptrm(model_path)
    # the spectrum-blind control: each spectrum decoded with the peaks of the next spectrum of
    # another peptide (its own precursor m/z and charge), as the retrieval harness hands peaks
    # round
    blind = [replace(s, mz=o.mz, intensity=o.intensity)
             for s, o in zip(spectra, _other_peptide(spectra), strict=True)]
    rows_of = {"PepTRM": ("both", spectra), "PepTRM: spectrum-blind control": ("both", blind)}
    if model.evidence is not None:
        rows_of |= {"PepTRM: transformer only (no ion evidence)": ("transformer", spectra),
                    "PepTRM: ion evidence only (transformer off)": ("evidence", spectra)}
    runs = [(name, lambda c=c, sp=sp: predict(model, sp, cfg.method, cfg.beam_size, cfg.ppm,
                                              cfg.isotopes, components=c))
            for name, (c, sp) in rows_of.items()]
    runs.append(("DP baseline", lambda: sequence_spectra(spectra, "dp", model_path, cfg, dp,
                                                          progress=False)))
    for name, run in runs:
        t = time.perf_counter()
        dec = run()
        speed[name] = len(spectra) / (time.perf_counter() - t)
        results[name] = score_predictions([d.tokens for d in dec], [d.score for d in dec],
                                          truths, [d.aa_scores for d in dec])
    ci = bootstrap(results, n_boot=n_boot, seed=seed, groups=[s.key for s in spectra])
    rows = []
    for name, sc in results.items():
        sm = summary(sc)
        row = {"method": name, "n_spectra": int(sm["n_spectra"]),
               "spectra_per_s": speed[name]}
        for k in METRICS:
            row[k] = sm[k]
            row[f"{k}_lo"], row[f"{k}_hi"] = ci[name][k]
        rows.append(row)
    table = pd.DataFrame(rows)
    write_text(out / "peptides.csv", table.to_csv(index=False))
    md = [f"# De novo peptide sequencing: {fold} fold ({len(spectra)} spectra, peptides unseen "
          "in training; Casanovo conventions, I = L)", "",
          "| method | AA precision | AA recall | peptide recall | prec-cov AUC | "
          "AA prec-cov AUC | spectra/s |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['method']} | " + " | ".join(
            f"{r[k]:.3f} [{r[k + '_lo']:.3f}, {r[k + '_hi']:.3f}]" for k in METRICS)
            + f" | {r['spectra_per_s']:.1f} |")
    dp_row = next(r for r in rows if r["method"] == "DP baseline")
    md += ["", "95% bootstrap CIs in brackets (peptides resampled, each with all its spectra, "
           f"every method on the same draws, {n_boot} draws). Paired difference PepTRM - DP:",
           ""]
    for k in METRICS:
        lo, hi = ci["DP baseline"][f"delta_{k}"]
        md.append(f"- {k}: {rows[0][k] - dp_row[k]:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    md += ["", "AA prec-cov AUC: every predicted residue ranked by its own probability (Casanovo's "
           "amino-acid precision-coverage curve); the DP gives no per-residue scores, so its "
           "residues rank by their peptide's score."]
    if model.evidence is not None:
        md += ["", "The two ablation rows decode the same model with one part switched off; the "
               "spectrum-blind control decodes each spectrum with another peptide's peaks."]
    steps = pd.DataFrame(per_step_metrics(model, spectra))
    write_text(out / "peptides_steps.csv", steps.to_csv(index=False))
    md += ["", f"## PepTRM accuracy at each supervision step (greedy decoding, {fold} fold)", "",
           "| step | AA precision | AA recall | peptide recall |", "|---|---|---|---|"]
    md += [f"| {int(r.step)} | {r.aa_precision:.3f} | {r.aa_recall:.3f} | "
           f"{r.peptide_recall:.3f} |" for r in steps.itertuples()]
    first, last = steps.iloc[0], steps.iloc[-1]
    md += ["", f"Last step vs first: AA recall {last.aa_recall - first.aa_recall:+.3f}, "
           f"peptide recall {last.peptide_recall - first.peptide_recall:+.3f}.",
           "", f"Model: {Path(model_path).name} ({card['config'].get('size', '?')}, "
           f"{card['n_parameters']:,} parameters, trained "
           f"{card['training'].get('steps', '?')} steps in "
           f"{card['training'].get('train_seconds', 0) / 60:.1f} min; the weights of the best "
           f"val checkpoint, step {card['training'].get('best_step', '?')})."]
    write_text(out / "peptides.md", "\n".join(md) + "\n")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for name, sc in results.items():
        cov, prec = precision_coverage(sc)
        auc = summary(sc)["pc_auc"]
        axes[0].plot(cov, prec, label=f"{name} (AUC {auc:.3f})")
    axes[0].set_xlabel("coverage")
    axes[0].set_ylabel("peptide precision")
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, 1.02)
    axes[0].legend()
    axes[0].set_title(f"peptide precision-coverage ({fold} fold, {len(spectra)} spectra)")
    for name, sc in results.items():
        cov, prec = aa_precision_coverage(sc)
        axes[2].step(np.r_[0.0, cov], np.r_[prec[:1], prec], where="pre",
                     label=f"{name} (AUC {summary(sc)['aa_pc_auc']:.3f})")
    axes[2].set_xlabel("coverage (share of predicted residues)")
    axes[2].set_ylabel("amino-acid precision")
    axes[2].set_xlim(0, 1)
    axes[2].set_ylim(0, 1.02)
    axes[2].legend(fontsize=7)
    axes[2].set_title("amino-acid precision-coverage (by residue score)")
    x = np.arange(len(METRICS))
    width = 0.8 / len(rows)
    for k, r in enumerate(rows):
        vals = np.array([r[m] for m in METRICS])
        err = np.array([[r[m] - r[m + "_lo"] for m in METRICS],
                        [r[m + "_hi"] - r[m] for m in METRICS]])
        axes[1].bar(x + (k - (len(rows) - 1) / 2) * width, vals, width, yerr=err, capsize=3,
                    label=r["method"])
    axes[1].set_xticks(x, [m.replace("_", " ") for m in METRICS])
    axes[1].legend(fontsize=7)
    axes[1].set_title("metrics with 95% bootstrap CIs")
    fig.tight_layout()
    _save_fig(fig, out / "peptides.png")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k in ("aa_precision", "aa_recall", "peptide_recall"):
        ax.plot(steps["step"], steps[k], "o-", label=k.replace("_", " "))
    ax.set_xlabel("supervision step")
    ax.set_ylabel("metric (greedy)")
    ax.set_xticks(steps["step"])
    ax.legend()
    ax.set_title("PepTRM: accuracy per supervision step")
    fig.tight_layout()
    _save_fig(fig, out / "peptides_steps.png")
    write_text(out / "peptides.json", json.dumps(
        {"rows": rows, "steps": steps.to_dict("records"), "ci": ci}, indent=1, default=float))
    return table
