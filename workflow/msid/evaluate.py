"""The one evaluation harness: rankings + truth -> metrics with bootstrap CIs -> MetricsRecord JSON.

Every method (baselines and models) is scored here, the same way: the true molecule is matched by
InChIKey first block; Hit@k counts a query as solved when the truth is among the first k ranks,
averaged over random orders of the candidates tied with the truth (list order never decides a
tie); MCES@1 is the maximum common edge subgraph distance (myopic-mces, HiGHS solver) between
the top-1 candidate (drawn at random among those tied for the top score) and the truth. A query
with no ranked candidate counts as a miss (Hit@k = 0) and as MCES = the threshold, so methods
cannot gain by abstaining.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd

from msid.chem.structures import parse_structure
from msid.digest import sha256_file
from msid.metrics import (
    Metric,
    MetricsRecord,
    config_hash,
    expected_hit,
    expected_rank,
    truth_ties,
)
from msid.parallel import ignore_interrupt

HIT_KS = (1, 5, 20)
MCES_THRESHOLD = 15  # MassSpecGym's cap for MCES distance


def inputs_digest(query_ids: Sequence[str], candidates: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of the query ids (sorted) and of the candidate file a ranking was scored on: a
    leaderboard compares methods only where these agree."""
    ids = "\n".join(sorted(str(q) for q in query_ids)).encode()
    return {"queries_sha256": hashlib.sha256(ids).hexdigest(),
            "candidates_sha256": sha256_file(candidates)}


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05, groups: Sequence | np.ndarray | None = None) -> Metric:
    """Mean with a percentile bootstrap CI over queries, or, with ``groups`` (one label per
    value: the query's structure), over groups: a draw takes whole groups with replacement
    and averages all their values (a cluster bootstrap). The spectra of one structure share
    its candidate set and mostly its outcome, so resampling them one by one would treat them
    as independent and give too narrow a CI."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Metric(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    inverse = None
    if groups is not None:
        labels = np.asarray(groups, dtype=object)
        if labels.shape != values.shape:
            raise ValueError(f"{labels.size} group labels for {values.size} values")
        _, inverse = np.unique(labels.astype(str), return_inverse=True)
        if inverse.max() + 1 == values.size:  # one value a group: the plain bootstrap
            inverse = None
    if inverse is None:
        idx = rng.integers(0, values.size, size=(n_boot, values.size))
        means = values[idx].mean(axis=1)
    else:
        sums = np.bincount(inverse, weights=values)
        counts = np.bincount(inverse).astype(np.float64)
        idx = rng.integers(0, sums.size, size=(n_boot, sums.size))
        means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
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
    distance = float(result[1])
    # catch_errors: a solver error or timeout comes back as a negative distance, which would
    # read as better than an exact match; it counts as the cap (no bound found)
    return float(threshold) if distance < 0 else min(distance, float(threshold))


def _mces_pair(pair: tuple[str, str]) -> float:
    return mces_distance(*pair)


def mces_table(pairs: Sequence[tuple[str, str]], processes: int = 1) -> pd.DataFrame:
    """MCES distance of each distinct (true SMILES, top-1 SMILES) pair, on ``processes``
    worker processes: columns ``true_smiles, top1_smiles, mces``. The methods of one benchmark
    often put the same wrong molecule first (on the demo, 1,716 top-1 pairs are 525 distinct
    ones), so one table computed for all of them spares most of the solver's work."""
    from msid.progress import progress_bar

    distinct = sorted({(t, p) for t, p in pairs if p})
    if processes > 1 and len(distinct) > 1:
        with ProcessPoolExecutor(processes, initializer=ignore_interrupt) as pool:
            dist = list(progress_bar(pool.map(_mces_pair, distinct, chunksize=4),
                                     total=len(distinct), desc="MCES", unit="pair",
                                     mininterval=5))
    else:
        dist = [_mces_pair(pair) for pair in progress_bar(distinct, desc="MCES", unit="pair",
                                                          mininterval=5)]
    return pd.DataFrame({"true_smiles": [t for t, _ in distinct],
                         "top1_smiles": [p for _, p in distinct], "mces": dist})


def read_mces_table(path: str | os.PathLike[str]) -> dict[tuple[str, str], float]:
    """A :func:`mces_table` written as TSV, as a lookup for :func:`evaluate_rankings`."""
    t = pd.read_csv(path, sep="\t", dtype={"true_smiles": str, "top1_smiles": str},
                    keep_default_na=False)
    return {(a, b): float(d) for a, b, d in zip(t["true_smiles"], t["top1_smiles"], t["mces"],
                                                 strict=True)}


def _query_scores(group: pd.DataFrame) -> np.ndarray:
    """A query's candidate scores in rank order, higher = better. Where the scores do not
    follow the ranks (missing, or not non-increasing), the ranks themselves are the scores."""
    g = group.sort_values("rank", kind="stable")
    scores = pd.to_numeric(g["score"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(scores).any() or (np.diff(scores) > 0).any():
        scores = -g["rank"].to_numpy(dtype=np.float64)
    return scores


def hit_ranks(rankings: pd.DataFrame, truth: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per query: how many candidates score above the truth and tie with it, its expected rank
    (inf if absent), the top-1 SMILES and the candidate count.

    Ties never favour the truth (see :func:`msid.metrics.expected_hit`): Hit@k is averaged
    over random orders of the tied candidates, and the top-1 structure (for MCES@1) is drawn
    at random (seeded per query) from the candidates tied for the top score, not taken by list
    order. ``truth`` has columns ``query_id, smiles`` (and optionally ``inchikey``).
    """
    truth = truth.copy()
    if "inchikey" not in truth or (truth["inchikey"] == "").any():
        truth["inchikey"] = [
            (parse_structure(s).inchikey if parse_structure(s) else "") for s in truth["smiles"]]
    truth["ik14"] = truth["inchikey"].str[:14]
    # a truth that does not parse has no key: it matches no candidate (not one without a key)
    true_ik = {q: k for q, k in zip(truth["query_id"].astype(str), truth["ik14"], strict=True)
               if k}
    r = rankings[rankings["rank"] > 0].copy()  # rank 0: a query's "no answer" row
    r["query_id"] = r["query_id"].astype(str)
    r["ik14"] = r["inchikey"].astype(str).str[:14]
    above, tied, top1, n_cand = {}, {}, {}, {}
    for qid, g in r.groupby("query_id", sort=False):
        g = g.sort_values("rank", kind="stable")
        scores = _query_scores(g)
        n_cand[qid] = len(g)
        top = np.flatnonzero(scores == scores[0])
        pick = int(np.random.default_rng([seed, _stable_int(qid)]).choice(top))
        top1[qid] = str(g["smiles"].iat[pick])
        key = true_ik.get(qid)  # (never compared as "\0": pandas' str dtype equals it to "")
        is_true = (g["ik14"] == key).to_numpy() if key else np.zeros(len(g), dtype=bool)
        if is_true.any():
            above[qid], tied[qid] = truth_ties(scores, is_true)
    out = truth[["query_id", "smiles"]].rename(columns={"smiles": "true_smiles"}).copy()
    # the query's structure: bootstrap CIs resample structures (bootstrap_ci's groups)
    out["structure"] = [k or s for k, s in zip(truth["ik14"], truth["smiles"].astype(str),
                                               strict=True)]
    q = out["query_id"].astype(str)
    out["n_above"] = q.map(above).astype(float)
    out["n_tied"] = q.map(tied).astype(float)
    out["true_rank"] = expected_rank(out["n_above"], out["n_tied"])
    out.loc[out["n_above"].isna(), "true_rank"] = np.inf
    out["top1_smiles"] = q.map(top1).fillna("")
    out["n_candidates"] = q.map(n_cand).fillna(0).astype(int)
    return out


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def evaluate_rankings(rankings: pd.DataFrame, truth: pd.DataFrame, *, method: str,
                      dataset: str, fold: str, candidates: str, task: str = "retrieval",
                      ks: Sequence[int] = HIT_KS, with_mces: bool = True, n_boot: int = 1000,
                      seed: int = 0, config: object = None, model_hash: str = "",
                      extra: dict | None = None, variant: str = "standard",
                      split: str = "inchikey",
                      mces_lookup: Mapping[tuple[str, str], float] | None = None,
                      ) -> tuple[MetricsRecord, pd.DataFrame]:
    """Score one method's rankings. ``mces_lookup`` (from :func:`read_mces_table`) holds
    precomputed MCES@1 distances; a pair it lacks is computed here."""
    per_query = hit_ranks(rankings, truth, seed=seed)
    for k in ks:  # expected Hit@k over random orders of ties; a missing truth is a miss
        per_query[f"hit@{k}"] = np.nan_to_num(
            expected_hit(per_query["n_above"], per_query["n_tied"], k), nan=0.0)
    if with_mces:
        lookup = mces_lookup or {}
        per_query["mces@1"] = [
            (lookup[(t, p)] if (t, p) in lookup else mces_distance(t, p)) if p
            else float(MCES_THRESHOLD)
            for t, p in zip(per_query["true_smiles"], per_query["top1_smiles"], strict=True)]
    record = MetricsRecord(task=task, method=method, dataset=dataset, fold=fold,
                           candidates=candidates, n_queries=0, metrics={},
                           config_hash=config_hash(config) if config is not None else "",
                           model_hash=model_hash, extra=dict(extra or {}), variant=variant,
                           split=split)
    return summarise(per_query, record, n_boot=n_boot, seed=seed), per_query


def summarise(per_query: pd.DataFrame, template: MetricsRecord, *, n_boot: int = 1000,
              seed: int = 0, split: str | None = None, extra: dict | None = None
              ) -> MetricsRecord:
    """The MetricsRecord of ``per_query`` (the per-query table of :func:`evaluate_rankings`,
    or a subset of its rows, e.g. one split's queries): every ``hit@k`` and ``mces@1`` column
    with its bootstrap CI (resampling structures where the table has a ``structure``
    column), and the candidate-set sizes. ``template`` gives the names."""
    groups = per_query["structure"].to_numpy() if "structure" in per_query else None
    metrics = {c: bootstrap_ci(per_query[c].to_numpy(dtype=np.float64), n_boot, seed,
                               groups=groups)
               for c in per_query.columns if c.startswith("hit@") or c == "mces@1"}
    sizes = per_query["n_candidates"].to_numpy()
    stats = {"candidates_median": float(np.median(sizes)) if sizes.size else 0.0,
             "candidates_mean": float(sizes.mean()) if sizes.size else 0.0,
             "candidates_min": int(sizes.min()) if sizes.size else 0,
             "candidates_max": int(sizes.max()) if sizes.size else 0,
             "queries_without_candidates": int((sizes == 0).sum())}
    return replace(template, n_queries=len(per_query), metrics=metrics,
                   extra={**template.extra, **stats, **(extra or {})},
                   split=template.split if split is None else split)
