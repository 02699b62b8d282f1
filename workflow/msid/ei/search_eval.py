"""The EI library-matching benchmark: folds, queries and a library with decoys.

All EI spectra (one or more stores) are pooled; each structure (InChIKey first block) falls in a
fold by :func:`msid.folds.fold_of`, so training never sees a test structure. Queries: one
spectrum of every test structure that has at least two spectra. Library: every other spectrum
of every fold, i.e. the queries' structures (through their other spectra) among all the
decoys. The embedding model trains on the train fold and is validated on the val fold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msid.folds import FoldSpec, fold_of
from msid.method_kinds import METHODS_BY_KIND
from msid.store import SpectrumRecord, SpectrumStore, SpectrumStoreWriter


@dataclass
class EIPool:
    """Spectra of several EI stores, concatenated (peaks nominal, metadata + fold + mass)."""

    peaks: list[tuple[np.ndarray, np.ndarray]]
    metadata: pd.DataFrame

    @property
    def ik14(self) -> np.ndarray:
        return self.metadata["inchikey"].str[:14].to_numpy()


def molecular_mass(smiles: str) -> float:
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Descriptors import ExactMolWt

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return float(ExactMolWt(mol)) if mol is not None else 0.0


def load_pool(stores: list[str | os.PathLike], folds: FoldSpec | None = None) -> EIPool:
    from msid.ei.search import nominal_peaks

    folds = folds or FoldSpec()

    peaks, frames = [], []
    for path in stores:
        with SpectrumStore(path) as st:
            md = st.metadata.copy()
            mz, inten, off = st.all_peaks()
        peaks += [nominal_peaks(mz[off[i]:off[i + 1]], inten[off[i]:off[i + 1]])
                  for i in range(len(md))]
        md["dataset"] = Path(path).name
        frames.append(md)
    md = pd.concat(frames, ignore_index=True)
    keep = np.array([len(p[0]) > 0 for p in peaks]) & (md["inchikey"].str.len() >= 14)
    md = md[keep].reset_index(drop=True)
    peaks = [p for p, k in zip(peaks, keep, strict=True) if k]
    ik14 = md["inchikey"].str[:14]
    md["fold"] = [fold_of(k, folds) for k in ik14]
    first = {}
    for k, smi in zip(ik14, md["smiles"], strict=True):
        if k not in first:
            first[k] = molecular_mass(smi)
    md["mass"] = ik14.map(first).astype(float)
    return EIPool(peaks, md)


@dataclass
class EISplit:
    train: np.ndarray
    val: np.ndarray
    queries: np.ndarray  # test-fold query rows
    library: np.ndarray  # every row that is not a query


def split_pool(pool: EIPool, max_queries: int = 0, seed: int = 0) -> EISplit:
    md = pool.metadata
    fold = md["fold"].to_numpy()
    rng = np.random.default_rng(seed)
    ik = pool.ik14
    queries = []
    test_rows = np.flatnonzero(fold == "test")
    by_key: dict[str, list[int]] = {}
    for r in test_rows:
        by_key.setdefault(str(ik[r]), []).append(int(r))
    for _k, members in sorted(by_key.items()):
        if len(members) >= 2:
            queries.append(members[int(rng.integers(len(members)))])
    queries = np.array(sorted(queries), dtype=np.int64)
    if max_queries and len(queries) > max_queries:
        queries = np.sort(rng.choice(queries, size=max_queries, replace=False))
    is_query = np.zeros(len(md), dtype=bool)
    is_query[queries] = True
    return EISplit(train=np.flatnonzero(fold == "train"), val=np.flatnonzero(fold == "val"),
                   queries=queries, library=np.flatnonzero(~is_query))


def write_pool_store(pool: EIPool, rows: np.ndarray, out: str | os.PathLike,
                     strip_annotation: bool = False, provenance: dict | None = None) -> Path:
    """Rows of the pool as an msid store; ``strip_annotation`` drops structure and name."""
    cols = [c for c in pool.metadata.columns if c not in ("dataset", "mass")]
    md = pool.metadata[cols].to_dict("records")
    with SpectrumStoreWriter(out, provenance=provenance) as w:
        for r in rows:
            meta = dict(md[int(r)])
            if strip_annotation:
                for c in ("smiles", "inchikey", "formula", "name"):
                    meta[c] = ""
            mz, inten = pool.peaks[int(r)]
            w.add(SpectrumRecord(mz.astype(np.float64), inten.astype(np.float32), meta))
    return Path(out)


def truth_table(pool: EIPool, rows: np.ndarray) -> pd.DataFrame:
    md = pool.metadata.iloc[rows]
    return pd.DataFrame({"query_id": md["id"].astype(str).to_numpy(),
                         "smiles": md["smiles"].to_numpy(),
                         "inchikey": md["inchikey"].to_numpy()})


BENCHMARK_METHODS = METHODS_BY_KIND["ei"]


def run_benchmark(pool: EIPool, split: EISplit, out_dir: str | os.PathLike, *,
                  methods: tuple[str, ...] = BENCHMARK_METHODS, model_path: str | None = None,
                  index: dict | None = None, n_boot: int = 1000, seed: int = 0,
                  dataset: str = "massbank_ei", progress: bool = True) -> list[Path]:
    """Every method on the same test queries and library; one MetricsRecord JSON each
    (recall@1 and @10 = hit@k, bootstrap CIs) plus its rankings, under ``out_dir``."""
    import time

    from msid.evaluate import evaluate_rankings
    from msid.methods import MethodResources, make_method, rank_queries
    from msid.rankings import write_rankings

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qpath = write_pool_store(pool, split.queries, out / "queries.h5", strip_annotation=True,
                             provenance={"stage": "ei-benchmark queries"})
    lpath = write_pool_store(pool, split.library, out / "library.h5",
                             provenance={"stage": "ei-benchmark library"})
    truth = truth_table(pool, split.queries)
    files = []
    with SpectrumStore(qpath) as queries:
        for name in methods:
            t0 = time.perf_counter()
            method = make_method(name, MethodResources(
                model_path=model_path, seed=seed,
                options={"ei_library": str(lpath), "index": index or {}, "hits": 50}))
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            rows = rank_queries(method, queries, top_k=10, progress=progress)
            t_rank = time.perf_counter() - t0
            write_rankings(rows, out / f"{name}.rankings.tsv")
            record, _ = evaluate_rankings(
                pd.DataFrame(rows), truth, method=name, dataset=dataset, fold="test",
                candidates="library", task="ei-library-search", ks=(1, 10), with_mces=False,
                n_boot=n_boot, seed=seed,
                model_hash=str(getattr(method, "model_hash", "")),
                extra={"library_size": len(split.library), "n_train_spectra": len(split.train),
                       "load_seconds": t_load, "rank_seconds": t_rank,
                       "queries_per_second": len(split.queries) / max(t_rank, 1e-9),
                       "index_kind": getattr(getattr(method, "index", None), "kind", "")})
            files.append(record.write(out / f"{name}.metrics.json"))
    return files


def leaderboard_rows(metric_files: list[str | os.PathLike]) -> pd.DataFrame:
    from msid.metrics import MetricsRecord

    rows = []
    for f in metric_files:
        r = MetricsRecord.from_json(Path(f).read_text())
        row = {"method": r.method, "dataset": r.dataset, "fold": r.fold,
               "n_queries": r.n_queries, "library_size": r.extra.get("library_size", 0)}
        for k in (1, 10):
            m = r.metrics[f"hit@{k}"]
            row[f"recall@{k}"] = m.value
            row[f"recall@{k}_ci_low"] = m.ci_low
            row[f"recall@{k}_ci_high"] = m.ci_high
        row["queries_per_second"] = r.extra.get("queries_per_second", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("recall@1", ascending=False, kind="stable")


def write_ei_leaderboard(metric_files: list[str | os.PathLike], csv_path: str | os.PathLike,
                         md_path: str | os.PathLike) -> pd.DataFrame:
    from msid.atomic import write_text
    from msid.rankings import write_table

    df = leaderboard_rows(metric_files)
    write_table(df, csv_path, sep=",")  # full precision: a reader rounds once
    lines = ["| method | recall@1 [95% CI] | recall@10 [95% CI] | queries | library | "
             "queries/s |", "|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        cells = [f"{r[f'recall@{k}']:.3f} [{r[f'recall@{k}_ci_low']:.3f}, "
                 f"{r[f'recall@{k}_ci_high']:.3f}]" for k in (1, 10)]
        lines.append(f"| {r['method']} | {cells[0]} | {cells[1]} | {r['n_queries']} | "
                     f"{r['library_size']} | {r['queries_per_second']:.0f} |")
    note = ("\nEI library search, test-fold queries (structures unseen in training, split by "
            "InChIKey first block) against a library holding their other spectra among all "
            "decoys; bootstrap 95% CIs over queries; all methods in the same run.\n")
    write_text(md_path, "\n".join(lines) + "\n" + note)
    return df
