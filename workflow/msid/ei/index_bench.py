"""``msid bench`` for EI search: embedding throughput and a million-scale vector index.

1. Embedding: spectra/s of the shipped llm4ms model on real MassBank EI spectra.
2. Index: ``n`` library vectors (default 1.6M). Without an in-silico library's embeddings
   (``vectors`` = a ``.npy`` file), they are made from the real embeddings: each is a random
   mix of two real spectrum embeddings plus small noise, renormalised (the output says so).
   Vectors are generated and added in chunks, so the index is the only large thing in memory;
   the exact top-10 of the benchmark queries is tracked chunk by chunk (brute force) as the
   reference for recall.
3. Search: queries/s with the query embeddings already computed (batched, all threads), and
   recall@10 of the approximate index against exact search; index build time and the
   process's peak resident memory.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

from msid.ei.index import IndexConfig, build_index, configure_search


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB -> GB (Linux)


def _synthetic_chunk(real: np.ndarray, start: int, size: int, seed: int,
                     noise: float) -> np.ndarray:
    rng = np.random.default_rng([seed, start])
    i = rng.integers(len(real), size=size)
    j = rng.integers(len(real), size=size)
    a = rng.uniform(0.5, 1.0, size=(size, 1)).astype(np.float32)
    v = a * real[i] + (1 - a) * real[j]
    v += noise * rng.standard_normal(v.shape).astype(np.float32) / np.sqrt(real.shape[1])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def _merge_topk(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, offset: int, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    cs = np.take_along_axis(s, part, 1)
    ci = part + offset
    all_s = np.concatenate([best_s, cs], 1)
    all_i = np.concatenate([best_i, ci], 1)
    top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)


def bench_ei(library: str | Path, model: str | Path | None, n: int = 1_600_000,
             n_queries: int = 2000, threads: int = 2, cfg: IndexConfig | None = None,
             vectors: str | Path | None = None, chunk: int = 100_000, seed: int = 0,
             log=print) -> dict:
    import faiss
    import torch

    from msid.ei.embedding import load_embedder
    from msid.ei.methods import DEFAULT_MODEL, get_library

    cfg = cfg or IndexConfig(kind="hnsw")
    faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)
    out: dict = {"threads": threads, "index": cfg.kind, "n_library": n}
    lib = get_library(library)
    embedder, card = load_embedder(model or DEFAULT_MODEL)
    t0 = time.perf_counter()
    real = embedder.encode(lib.peaks)
    t_embed = time.perf_counter() - t0
    out["embed_spectra"] = len(real)
    out["embed_spectra_per_s"] = len(real) / t_embed
    log(f"   embedding: {len(real):,} MassBank EI spectra in {t_embed:.1f} s = "
        f"{out['embed_spectra_per_s']:,.0f} spectra/s ({threads} threads, "
        f"{card['config']['base_model']})")
    if vectors:
        mm = np.load(vectors, mmap_mode="r")
        n = min(n, len(mm))
        out["library_source"] = f"in-silico library embeddings {vectors}"

        def get_chunk(start: int, size: int) -> np.ndarray:
            return np.ascontiguousarray(mm[start:start + size], dtype=np.float32)
    else:
        out["library_source"] = (f"synthetic: {n:,} mixes of two of the {len(real):,} real "
                                 "MassBank EI embeddings + noise (the in-silico library is "
                                 "not built yet)")

        def get_chunk(start: int, size: int) -> np.ndarray:
            return _synthetic_chunk(real, start, size, seed, noise=0.1)
    log(f"   library vectors: {out['library_source']}")
    rng = np.random.default_rng(seed + 1)
    q = _synthetic_chunk(real, 10**9, n_queries, seed + 1, noise=0.1)
    q[: min(n_queries, len(real)) // 2] = real[rng.choice(len(real), min(n_queries,
                                                                         len(real)) // 2)]
    k = 10
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), -1, dtype=np.int64)
    d = real.shape[1]
    first = get_chunk(0, min(chunk, n))
    t_build, t_exact = 0.0, 0.0
    index = None
    for start in range(0, n, chunk):
        x = first if start == 0 else get_chunk(start, min(chunk, n - start))
        t0 = time.perf_counter()
        if index is None:  # trained (sq8, ivfpq) on the first chunk, which it then holds
            index = build_index(x, cfg, cfg.kind)
        else:
            index.add(x)
        t_build += time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in range(0, len(x), 20_000):  # bounded memory: queries x 20k scores at a time
            best_s, best_i = _merge_topk(best_s, best_i, q @ x[s:s + 20_000].T, start + s, k)
        t_exact += time.perf_counter() - t0
        del x
    first = None
    out["dim"] = d
    out["build_s"] = t_build
    log(f"   index {cfg.kind}: {index.ntotal:,} x {d} built in {t_build:.1f} s "
        f"(peak RSS so far {peak_rss_gb():.2f} GB)")
    configure_search(index, cfg)
    index.search(q[:100], k)  # warm-up
    t0 = time.perf_counter()
    _, found = index.search(q, k)
    t_search = time.perf_counter() - t0
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, best_i,
                                                                         strict=True)]))
    out.update({"queries": len(q), "queries_per_s": len(q) / t_search,
                "recall@10_vs_exact": recall, "exact_brute_force_queries_per_s":
                len(q) / max(t_exact, 1e-9), "peak_rss_gb": peak_rss_gb(),
                "ef_search": cfg.ef_search, "hnsw_m": cfg.hnsw_m})
    log(f"   search: {out['queries_per_s']:,.0f} queries/s (goal >= 15,000), recall@10 vs "
        f"exact {recall:.4f} (goal: within 0.01 of 1.0); exact brute force "
        f"{out['exact_brute_force_queries_per_s']:,.0f} queries/s; peak RSS "
        f"{out['peak_rss_gb']:.2f} GB (goal <= 4)")
    return out
