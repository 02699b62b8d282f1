"""De novo and GLMR benchmark: metrics with bootstrap CIs, baselines, leaderboard tables.

De novo (MassSpecGym's de novo task, scored by InChIKey first block):

* ``top1_exact`` / ``top{k}_exact``: the truth is the first / among the first k molecules;
* ``top1_tanimoto``: Morgan (r=2, 2048 bits) Tanimoto of the first molecule to the truth (a
  rank-1 row that does not parse misses: 0, no match);
* ``top{k}_tanimoto``: of the closest (by Tanimoto) of the first k; ``top{k}_mces``: MCES
  distance (myopic-mces, capped at 15) of that same closest molecule (one MCES per query;
  MassSpecGym takes the least MCES over the k, which is never larger, at k MCES per query);
* ``valid``: share of returned molecules that parse in RDKit (must be 1.0);
* ``answered``: share of queries with at least one molecule.

A query without an answer scores Tanimoto 0, MCES 15, no match: abstaining never helps.
CIs resample structures (a structure's queries together, :func:`msid.evaluate.bootstrap_ci`).
The random-generation baseline (:func:`random_generation`) answers each query with pool
molecules of the truth's formula (else of its mass, 10 ppm), never the truth itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from msid.chem.fingerprints import tanimoto_many
from msid.chem.structures import parse_structure
from msid.evaluate import MCES_THRESHOLD, bootstrap_ci, mces_distance
from msid.metrics import Metric, MetricsRecord
from msid.rankings import RankedCandidate, rows_for_query


def denovo_per_query(rankings: pd.DataFrame, truth: pd.DataFrame, k: int = 10,
                     with_mces: bool = True) -> pd.DataFrame:
    """One row per truth query with the de novo metrics (see the module docstring)."""
    r = rankings[rankings["rank"] > 0].copy()
    r["query_id"] = r["query_id"].astype(str)
    groups = {q: g.sort_values("rank", kind="stable") for q, g in r.groupby("query_id")}
    rows = []
    for qid, smi in zip(truth["query_id"].astype(str), truth["smiles"], strict=True):
        true = parse_structure(str(smi))
        g = groups.get(qid)
        gen = [] if g is None else [str(s) for s in g["smiles"].head(k)]
        parsed = [parse_structure(s) for s in gen]
        valid = [p for p in parsed if p is not None]
        rec = {"query_id": qid, "true_smiles": true.smiles_flat if true else str(smi),
               "structure": true.inchikey14 if true else str(smi),  # the CIs' resampling unit
               "n_generated": len(gen), "n_valid": len(valid)}
        if true is None or not valid:
            rec.update({"top1_exact": 0.0, f"top{k}_exact": 0.0, "top1_tanimoto": 0.0,
                        f"top{k}_tanimoto": 0.0, f"top{k}_mces": float(MCES_THRESHOLD),
                        "closest_smiles": ""})
            rows.append(rec)
            continue
        keys = [p.inchikey14 for p in valid]
        sims = tanimoto_many(true.smiles_flat, [p.smiles_flat for p in valid])
        best = int(np.argmax(sims))
        first = parsed[0] is not None  # top-1 is the rank-1 molecule: an invalid one misses
        rec.update({"top1_exact": float(first and keys[0] == true.inchikey14),
                    f"top{k}_exact": float(true.inchikey14 in keys),
                    "top1_tanimoto": float(sims[0]) if first else 0.0,
                    f"top{k}_tanimoto": float(sims[best]),
                    "closest_smiles": valid[best].smiles_flat})
        if with_mces:
            rec[f"top{k}_mces"] = mces_distance(true.smiles_flat, valid[best].smiles_flat)
        rows.append(rec)
    return pd.DataFrame(rows)


def denovo_record(per_query: pd.DataFrame, *, method: str, dataset: str, fold: str,
                  k: int = 10, n_boot: int = 1000, seed: int = 0, variant: str = "standard",
                  extra: dict | None = None) -> MetricsRecord:
    metrics: dict[str, Metric] = {}
    groups = per_query["structure"].to_numpy() if "structure" in per_query else None
    for col in ("top1_exact", f"top{k}_exact", "top1_tanimoto", f"top{k}_tanimoto",
                f"top{k}_mces"):
        if col in per_query:
            metrics[col] = bootstrap_ci(per_query[col].to_numpy(), n_boot, seed, groups=groups)
    n_gen = int(per_query["n_generated"].sum()) if len(per_query) else 0
    n_valid = int(per_query["n_valid"].sum()) if len(per_query) else 0
    metrics["valid"] = Metric(n_valid / n_gen if n_gen else float("nan"), float("nan"),
                              float("nan"))
    answered = (per_query["n_valid"] > 0).to_numpy(float) if len(per_query) else np.zeros(0)
    metrics["answered"] = bootstrap_ci(answered, n_boot, seed, groups=groups)
    return MetricsRecord(task="denovo", method=method, dataset=dataset, fold=fold,
                         candidates="none", n_queries=len(per_query), metrics=metrics,
                         extra=extra or {}, variant=variant)


def random_generation(truth: pd.DataFrame, index_path: str | os.PathLike, k: int = 10,
                      seed: int = 0, ppm: float = 10.0) -> pd.DataFrame:
    """Rankings of the random-generation baseline: up to ``k`` pool molecules of the truth's
    formula (else within ``ppm`` of its mass), the truth excluded, in random order."""
    from msid.chem.candidates import CandidateIndex

    index = CandidateIndex(index_path)
    rows: list[dict] = []
    for qid, smi in zip(truth["query_id"].astype(str), truth["smiles"], strict=True):
        rng = np.random.default_rng([seed, int.from_bytes(qid.encode()[-8:].rjust(8, b"\0"),
                                                          "big")])
        true = parse_structure(str(smi))
        picks: list = []
        if true is not None:
            for idx in (index.formula_matches(true.formula),
                        index.mass_window(true.exact_mass, ppm)):
                if len(idx):
                    idx = rng.permutation(idx)[:8 * k]
                    picks = index.structures(idx, k, exclude_ik14=true.inchikey14)
                if picks:
                    break
        ranked = [RankedCandidate(p.smiles_flat, p.inchikey, 1.0 / (i + 1))
                  for i, p in enumerate(picks)]
        rows += rows_for_query(qid, "random_generation", ranked,
                               reason="" if ranked else "no pool molecule of this formula/mass")
    return pd.DataFrame(rows)


def leaderboard_rows(records: Sequence[MetricsRecord]) -> pd.DataFrame:
    """One row per record: method, variant, n, each metric as value and CI columns."""
    out = []
    for r in records:
        row = {"task": r.task, "method": r.method, "variant": r.variant,
               "candidates": r.candidates, "n_queries": r.n_queries}
        for name, m in r.metrics.items():
            row[name] = m.value
            row[f"{name}_ci_low"] = m.ci_low
            row[f"{name}_ci_high"] = m.ci_high
        row.update({k: v for k, v in r.extra.items() if isinstance(v, (int, float, str))})
        out.append(row)
    return pd.DataFrame(out)


def markdown_table(df: pd.DataFrame, metrics: Sequence[str], title: str,
                   notes: Sequence[str] = ()) -> str:
    """A Markdown table: value [CI] for each metric (CI left out where there is none)."""
    head = ["method", "variant", "n", *metrics]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        cells = [str(r["method"]), str(r["variant"]), str(int(r["n_queries"]))]
        for m in metrics:
            v = r.get(m, np.nan)
            lo, hi = r.get(f"{m}_ci_low", np.nan), r.get(f"{m}_ci_high", np.nan)
            if pd.isna(v):
                cells.append("")
            elif pd.isna(lo):
                cells.append(f"{v:.3f}")
            else:
                cells.append(f"{v:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *notes, ""])


# -- runs (what the rules call) ----------------------------------------------------------------
def _sample_rows(n: int, max_queries: int, seed: int) -> list[int]:
    rows = np.arange(n)
    if max_queries and n > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))
    return rows.tolist()


def _write_tables(df: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike,
                  metrics: Sequence[str], title: str, notes: Sequence[str]) -> None:
    from msid.atomic import write_text

    write_text(csv, df.to_csv(index=False))
    write_text(md, markdown_table(df, metrics, title, notes))


def run_denovo_benchmark(queries: str, blind_queries: str, index_path: str, model_path: str,
                         out_csv: str, out_md: str, *, options: dict | None = None,
                         max_queries: int = 200, n_boot: int = 1000, seed: int = 0,
                         mces: bool = True, dataset: str = "", fold: str = "test",
                         log=print) -> pd.DataFrame:
    """De novo rows: the model, its spectrum-blind control and random generation, on the same
    (seeded sample of) benchmark queries."""
    import time

    from msid.benchmark import truth_table
    from msid.methods import MethodResources, make_method, rank_queries
    from msid.store import SpectrumStore

    opts = dict(options or {})
    k = int(opts.get("top_k", 10))
    records = []
    with SpectrumStore(queries) as st:
        rows = _sample_rows(len(st), max_queries, seed)
        truth = truth_table(st).iloc[rows].reset_index(drop=True)
    for variant, path in (("standard", queries), ("spectrum_blind", blind_queries)):
        method = make_method("denovo", MethodResources(model_path=model_path, options=opts))
        t0 = time.perf_counter()
        with SpectrumStore(path) as st:
            ranked = pd.DataFrame(rank_queries(method, st, rows, top_k=k, progress=False))
        secs = time.perf_counter() - t0
        pq = denovo_per_query(ranked, truth, k, with_mces=mces and variant == "standard")
        records.append(denovo_record(
            pq, method="denovo", dataset=dataset, fold=fold, k=k, n_boot=n_boot, seed=seed,
            variant=variant, extra={"queries_per_s": len(rows) / max(secs, 1e-9),
                                    "filter_misses": method.stats["filter_miss"],
                                    "formula_constrained": method.stats["formula_constrained"],
                                    "formula_unfinished": method.stats["formula_unfinished"]}))
        log(f"[denovo] {variant}: {len(rows)} queries in {secs:.1f} s")
    t0 = time.perf_counter()
    pq = denovo_per_query(random_generation(truth, index_path, k, seed), truth, k,
                          with_mces=mces)
    records.append(denovo_record(pq, method="random_generation", dataset=dataset, fold=fold,
                                 k=k, n_boot=n_boot, seed=seed,
                                 extra={"queries_per_s": len(rows) / max(
                                     time.perf_counter() - t0, 1e-9)}))
    df = leaderboard_rows(records)
    metrics = ["top1_exact", f"top{k}_exact", "top1_tanimoto", f"top{k}_tanimoto",
               f"top{k}_mces", "valid", "answered"]
    notes = [f"{dataset} {fold} fold, {len(rows)} queries (seeded sample of the benchmark "
             f"queries), 95% bootstrap CIs ({n_boot} resamples of the queries' structures). "
             "Exact match by InChIKey first "
             "block; Tanimoto: Morgan r=2, 2048 bits; MCES (myopic-mces, cap 15) of the top-k "
             "molecule closest to the truth by Tanimoto (MassSpecGym's top-k MCES is the least "
             "over the k, never larger). random_generation: pool molecules of "
             "the true formula (else mass), never the truth. denovo decodes under the query's "
             "formula when the store carries one (MassSpecGym's bonus formula setting; "
             "`use_formula`), as random_generation draws by it. spectrum_blind: the same model "
             "given another structure's peaks (precursor and formula kept)."]
    _write_tables(df, out_csv, out_md, metrics, "De novo generation", notes)
    return df


def run_glmr_benchmark(queries: str, blind_queries: str, candidates: str, models: dict,
                       ranker_path: str, out_csv: str, out_md: str, sweep_csv: str,
                       sweep_md: str, sweep_png: str, *, k_sweep: Sequence[int] = (10, 20, 40,
                                                                                   60, 80),
                       max_queries: int = 200, n_boot: int = 1000, seed: int = 0,
                       mces: bool = True, dataset: str = "", fold: str = "test",
                       options: dict | None = None, log=print) -> pd.DataFrame:
    """GLMR rows (cross fusion, its spectrum-blind control, concat/average ablations) beside
    the Ranker on the same candidates and queries, and the K sweep (Hit@1, s/query)."""
    import time

    from msid.benchmark import truth_table
    from msid.candidate_sets import candidates_for_queries
    from msid.evaluate import evaluate_rankings
    from msid.methods import MethodResources, make_method, rank_queries
    from msid.store import SpectrumStore

    opts = {**(options or {}), "ranker_model": ranker_path}
    with SpectrumStore(queries) as st:
        asked = set(pd.read_csv(candidates, sep="\t", dtype=str, keep_default_na=False,
                                usecols=["query_id"])["query_id"])
        ids = st.metadata["id"].astype(str).to_numpy()
        have = [i for i in range(len(st)) if ids[i] in asked]
        rows = [have[i] for i in _sample_rows(len(have), max_queries, seed)]
        truth = truth_table(st).iloc[rows].reset_index(drop=True)
        cands = candidates_for_queries(st, rows, index=None, candidate_file=candidates,
                                       kind="mass", seed=seed)
    records, sweep = [], []
    copied: dict[str, tuple[float, float]] = {}  # label -> (any candidate, the true one)

    def run(name: str, label: str, path: str, variant: str, model: str | None, **kw):
        res = MethodResources(model_path=model, options={**opts, **kw})
        method = make_method(name, res)
        t0 = time.perf_counter()
        with SpectrumStore(path) as st:
            ranked = pd.DataFrame(rank_queries(method, st, rows, candidates=cands,
                                               progress=False, label=label))
        secs = time.perf_counter() - t0
        rec, _ = evaluate_rankings(ranked, truth, method=label, dataset=dataset, fold=fold,
                                   candidates="mass", with_mces=mces and variant == "standard",
                                   n_boot=n_boot, seed=seed, variant=variant,
                                   extra={"s_per_query": secs / max(len(rows), 1)})
        log(f"[glmr] {label} {variant}: hit@1 {rec.metrics['hit@1'].value:.3f} "
            f"({secs / max(len(rows), 1):.3f} s/query)")
        if variant == "standard" and getattr(method, "last_copied", None):
            copied[label] = copy_rates(method.last_copied, truth)
        return rec

    records.append(run("ranker", "ranker", queries, "standard", ranker_path))
    records.append(run("ranker", "ranker", blind_queries, "spectrum_blind", ranker_path))
    for fusion, path in models.items():
        label = "glmr" if fusion == "cross" else f"glmr_{fusion}"
        records.append(run("glmr", label, queries, "standard", path))
        if fusion == "cross":
            records.append(run("glmr", label, blind_queries, "spectrum_blind", path))
    for k in k_sweep:
        rec = run("glmr", f"glmr_k{k}", queries, "standard", models["cross"], k=int(k))
        sweep.append({"k": int(k), "hit@1": rec.metrics["hit@1"].value,
                      "hit@1_ci_low": rec.metrics["hit@1"].ci_low,
                      "hit@1_ci_high": rec.metrics["hit@1"].ci_high,
                      "s_per_query": rec.extra["s_per_query"]})
    df = leaderboard_rows(records)
    notes = [f"{dataset} {fold} fold, {len(rows)} queries (seeded sample), mass candidates "
             f"(benchmark sets), 95% bootstrap CIs ({n_boot} resamples of the queries' "
             "structures). GLMR re-ranks the Ranker's "
             "top-K of these same sets; glmr_concat / glmr_average: the cross-fusion replaced "
             "by concatenation / averaging of the candidate encodings. spectrum_blind: another "
             "structure's peaks (precursor kept)."]
    for label in ("glmr", *(f"glmr_{f}" for f in models if f != "cross")):
        if label in copied:
            notes.append(f"{label}: a generated molecule is one of the top-K candidates (same "
                         f"InChIKey first block) for "
                         f"{copied[label][0]:.1%} of queries (the true one for "
                         f"{copied[label][1]:.1%}).")
    base = next(r for r in records if r.method == "ranker" and r.variant == "standard")
    same = [r.method for r in records if r.method.startswith("glmr") and r.variant == "standard"
            and all(r.metrics[k].value == base.metrics[k].value for k in base.metrics
                    if k in r.metrics)]
    if same:  # said, so that equal rows are not read as a copying mistake
        notes.append(f"{', '.join(same)}: every figure equals the Ranker's on these queries "
                     "(the re-ranking moved no truth across a Hit@k cut-off).")
    _write_tables(df, out_csv, out_md, ["hit@1", "hit@5", "hit@20", "mces@1", "s_per_query"],
                  "GLMR generative re-ranking", notes)
    sw = pd.DataFrame(sweep)
    from msid.atomic import write_text

    write_text(sweep_csv, sw.to_csv(index=False))
    write_text(sweep_md, "# GLMR: K sweep\n\n" + "\n".join(
        ["| K | Hit@1 [95% CI] | s/query |", "|---|---|---|"]
        + [f"| {int(r.k)} | {r['hit@1']:.3f} [{r['hit@1_ci_low']:.3f}, {r['hit@1_ci_high']:.3f}] "
           f"| {r.s_per_query:.3f} |" for _, r in sw.iterrows()]) + "\n")
    _plot_sweep(sw, sweep_png)
    return df


def copy_rates(copied: dict[str, list[str]], truth: pd.DataFrame) -> tuple[float, float]:
    """(share of queries whose generated molecules include one of the top-K candidates,
    share whose generated molecules include the true one), over the queries GLMR re-ranked."""
    true_ik = dict(zip(truth["query_id"].astype(str), truth["inchikey"].astype(str).str[:14],
                       strict=True))
    n = max(len(copied), 1)
    return (sum(bool(c) for c in copied.values()) / n,
            sum(true_ik.get(q, "?") in {k[:14] for k in c} for q, c in copied.items()) / n)


def _plot_sweep(sw: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msid.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if len(sw):
        ax.errorbar(sw["k"], sw["hit@1"], yerr=[sw["hit@1"] - sw["hit@1_ci_low"],
                                                sw["hit@1_ci_high"] - sw["hit@1"]],
                    marker="o", color="tab:blue", capsize=3)
        ax2 = ax.twinx()
        ax2.plot(sw["k"], sw["s_per_query"], "s--", color="tab:red")
        ax2.set_ylabel("s / query", color="tab:red")
    ax.set_xlabel("K (Ranker candidates re-ranked)")
    ax.set_ylabel("Hit@1", color="tab:blue")
    ax.set_title("GLMR: K sweep")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def bench_generation(test_store: str | os.PathLike, index_path: str | os.PathLike,
                     n_queries: int, seed: int = 0, log=print) -> dict:
    """``msid bench``: queries/s of the shipped ``denovo`` (no candidates) and ``glmr`` (mass
    candidates, K from its card) beside the Ranker on the same queries and candidates."""
    import time

    from msid.benchmark import BenchmarkConfig, select_queries
    from msid.candidate_sets import candidates_for_queries
    from msid.chem.candidates import CandidateIndex
    from msid.generation.modelio import default_path
    from msid.methods import MethodResources, make_method, rank_queries
    from msid.store import SpectrumStore

    out: dict[str, dict] = {}
    with SpectrumStore(test_store) as test:
        rows = select_queries(test, BenchmarkConfig(max_queries=n_queries, seed=seed))
        cands = candidates_for_queries(test, rows, index=CandidateIndex(index_path),
                                       kind="mass", ppm=10.0, max_n=256, include_true=True,
                                       seed=seed)
        for name, given in (("ranker", cands), ("denovo", None), ("glmr", cands)):
            if name != "ranker" and not default_path(name).exists():
                log(f"   {name:<14} no shipped model ({default_path(name).name}): skipped")
                continue
            method = make_method(name, MethodResources(seed=seed, options={"num_threads": 1}))
            rank_queries(method, test, rows[:2], given, progress=False)  # warm-up
            t0 = time.perf_counter()
            rank_queries(method, test, rows, given, progress=False)
            secs = time.perf_counter() - t0
            out[name] = {"queries": len(rows), "queries_per_s": len(rows) / secs}
            log(f"   {name:<14} {len(rows) / secs:,.2f} queries/s ({len(rows)} queries"
                f"{', mass candidates' if given is not None else ', no candidates'})")
    return out
