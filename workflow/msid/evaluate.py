"""The one evaluation harness: rankings + truth -> metrics with bootstrap CIs -> MetricsRecord JSON.

Every method (baselines and models) is scored here, the same way: the true molecule is matched by
InChIKey first block; Hit@k counts a query as solved when the truth is among the first k ranks;
MCES@1 is the maximum common edge subgraph distance (myopic-mces, HiGHS solver) between the
top-1 candidate and the truth. A query with no ranked candidate counts as a miss (Hit@k = 0) and
as MCES = the threshold, so methods cannot gain by abstaining.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from msid.chem.structures import parse_structure
from msid.metrics import Metric, MetricsRecord, config_hash

HIT_KS = (1, 5, 20)
MCES_THRESHOLD = 15  # MassSpecGym's cap for MCES distance


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> Metric:
    """Mean with a percentile bootstrap CI over queries."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Metric(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Metric(float(values.mean()), float(lo), float(hi))


@lru_cache(maxsize=100_000)
def mces_distance(smiles_a: str, smiles_b: str, threshold: int = MCES_THRESHOLD) -> float:
    """MCES distance (myopic-mces with the HiGHS solver), capped at ``threshold``."""
    from myopic_mces import MCES

    a, b = parse_structure(smiles_a), parse_structure(smiles_b)
    if a is None or b is None:
        return float(threshold)
    if a.inchikey14 == b.inchikey14:
        return 0.0
    key = tuple(sorted((a.smiles_flat, b.smiles_flat)))
    result = MCES(key[0], key[1], threshold=threshold, solver="HiGHS",
                  solver_options={"msg": False, "threads": 1}, catch_errors=True)
    return float(min(result[1], threshold))


def hit_ranks(rankings: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per query: rank of the truth (inf if absent), top-1 SMILES, candidate count.

    ``truth`` has columns ``query_id, smiles`` (and optionally ``inchikey``).
    """
    truth = truth.copy()
    if "inchikey" not in truth or (truth["inchikey"] == "").any():
        truth["inchikey"] = [
            (parse_structure(s).inchikey if parse_structure(s) else "") for s in truth["smiles"]]
    truth["ik14"] = truth["inchikey"].str[:14]
    r = rankings[rankings["rank"] > 0].copy()  # rank 0: a query's "no answer" row
    r["ik14"] = r["inchikey"].astype(str).str[:14]
    merged = r.merge(truth[["query_id", "ik14"]], on="query_id", suffixes=("", "_true"))
    found = merged[merged["ik14"] == merged["ik14_true"]].groupby("query_id")["rank"].min()
    top1 = r[r["rank"] == 1].drop_duplicates("query_id").set_index("query_id")["smiles"]
    n_cand = r.groupby("query_id").size()
    out = truth[["query_id", "smiles"]].rename(columns={"smiles": "true_smiles"}).copy()
    out["true_rank"] = out["query_id"].map(found).astype(float).fillna(np.inf)
    out["top1_smiles"] = out["query_id"].map(top1).fillna("")
    out["n_candidates"] = out["query_id"].map(n_cand).fillna(0).astype(int)
    return out


def evaluate_rankings(rankings: pd.DataFrame, truth: pd.DataFrame, *, method: str,
                      dataset: str, fold: str, candidates: str, task: str = "retrieval",
                      ks: Sequence[int] = HIT_KS, with_mces: bool = True, n_boot: int = 1000,
                      seed: int = 0, config: object = None, model_hash: str = "",
                      extra: dict | None = None, variant: str = "standard"
                      ) -> tuple[MetricsRecord, pd.DataFrame]:
    per_query = hit_ranks(rankings, truth)
    metrics: dict[str, Metric] = {}
    for k in ks:
        per_query[f"hit@{k}"] = (per_query["true_rank"] <= k).astype(float)
        metrics[f"hit@{k}"] = bootstrap_ci(per_query[f"hit@{k}"].to_numpy(), n_boot, seed)
    if with_mces:
        per_query["mces@1"] = [
            mces_distance(t, p) if p else float(MCES_THRESHOLD)
            for t, p in zip(per_query["true_smiles"], per_query["top1_smiles"], strict=True)]
        metrics["mces@1"] = bootstrap_ci(per_query["mces@1"].to_numpy(), n_boot, seed)
    sizes = per_query["n_candidates"].to_numpy()
    stats = {"candidates_median": float(np.median(sizes)) if sizes.size else 0.0,
             "candidates_mean": float(sizes.mean()) if sizes.size else 0.0,
             "candidates_min": int(sizes.min()) if sizes.size else 0,
             "candidates_max": int(sizes.max()) if sizes.size else 0,
             "queries_without_candidates": int((sizes == 0).sum())}
    record = MetricsRecord(task=task, method=method, dataset=dataset, fold=fold,
                           candidates=candidates, n_queries=len(per_query), metrics=metrics,
                           config_hash=config_hash(config) if config is not None else "",
                           model_hash=model_hash, extra={**stats, **(extra or {})},
                           variant=variant)
    return record, per_query
