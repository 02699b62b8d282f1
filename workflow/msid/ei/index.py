"""A vector index over library embeddings (faiss): approximate (HNSW, IVF-PQ) or exact.

Embeddings are unit vectors, so inner product = cosine. ``kind``:

- ``exact``: ``IndexFlatIP``, brute force (the reference for recall).
- ``hnsw`` (default): the library vectors reduced by a PCA fitted on the library to ``pca_dim``
  dimensions (L2 there, which for unit vectors ranks like cosine; the centring PCA does would
  break inner-product ranking), an HNSW graph over them (``M`` links per node, ``ef_search`` at
  query time, vectors stored as ``hnsw_storage``), and the ``hnsw_refine_k * k`` candidates it
  finds re-ranked on the full vectors, kept as ``refine_storage``: fp16 (default; half the memory
  of float32, cosine within ~1e-4 of exact) or flat float32 (exact). ``pca_dim = 0`` (or not
  below the dimension) keeps the graph in the full space. Measured at 1.6M synthetic vectors
  (2 threads, load ~1.8; M=32, fp16 graph, efConstruction 200, built in ~250 s,
  peak RSS ~3 GB), queries/s and recall@10 against exact search:

  ========  ======================  ======================  ======================
  pca_dim   ef 48                   ef 64                   ef 96
  ========  ======================  ======================  ======================
  64, k3    17,254 / 0.983          14,676 / 0.986          11,228 / 0.988
  64, k5    15,248 / 0.986          13,692 / 0.989          10,581 / 0.992
  96, k3    15,664 / 0.985          13,570 / 0.989          10,363 / 0.991
  ========  ======================  ======================  ======================

  (k3/k5: ``hnsw_refine_k``). The full-space HNSW (M=32, fp16, ef 64) it replaces gave 3,600
  queries/s. At 64 dims recall is limited by both the graph and the shortlist, at 96 by the
  graph; ``ef_construction`` 200 instead of 80 lifted recall from 0.988 to 0.994 at 400k.
  A better graph buys the rest (1.6M, pca_dim 64, float32 graph, idle machine, 2 threads;
  queries/s / recall@10 at refine k5): efConstruction 200: ef 40 16,500 / 0.987, ef 48
  15,539 / 0.989, ef 64 13,539 / 0.991 (built in 240 s); efConstruction 400 (the default):
  ef 40 **15,921 / 0.991**, ef 48 14,527 / 0.993, ef 64 12,476 / 0.995 (built in 484 s, peak
  RSS 3.81 GB). ``msid bench`` with these defaults on a later, slower machine of the same kind
  (its preprocessing ~1.5x slower too): 10,152 / 0.988, built in 780 s, peak RSS 3.73 GB.
- ``ivfpq``: ``IndexIVFPQ`` with ``nlist`` lists, ``pq_m`` sub-quantisers, ``nprobe`` lists
  probed, re-ranked exactly (``IndexRefineFlat``) so that recall stays near exact search.

:func:`cached_library_index` keeps the index next to the library it describes
(``<library>.<model-hash>.<kind>.faiss`` + ``.json``) and rebuilds it only when the library file
or the embedding model changed; where the library's folder is read-only it goes to
``$MSID_CACHE``. Index files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from msid.atomic import atomic_path, write_text

KINDS = ("exact", "hnsw", "ivfpq")


@dataclass
class IndexConfig:
    kind: str = "hnsw"
    hnsw_m: int = 32
    hnsw_storage: str = "flat"  # vectors in the graph: flat (float32), fp16 or sq8
    ef_construction: int = 400
    ef_search: int = 40
    pca_dim: int = 64  # hnsw: graph over PCA-reduced vectors (0: full space), then re-rank
    hnsw_refine_k: int = 5  # hnsw with pca_dim: candidates re-ranked in full space = this * k
    refine_storage: str = "fp16"  # hnsw with pca_dim: full vectors for the re-rank (flat/fp16)
    nlist: int = 0  # ivfpq: 0 = about 4 sqrt(n)
    pq_m: int = 48  # ivfpq: sub-quantisers (must divide the dimension)
    nprobe: int = 16
    refine_k: int = 4  # ivfpq: candidates re-ranked exactly = refine_k * k
    exact_below: int = 5000  # libraries smaller than this are always searched exactly
    threads: int = 0  # faiss OpenMP threads (0: faiss default)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, not '{self.kind}'")
        if self.hnsw_storage not in ("flat", "fp16", "sq8"):
            raise ValueError("hnsw_storage must be flat, fp16 or sq8")
        if self.refine_storage not in ("flat", "fp16"):
            raise ValueError("refine_storage must be flat or fp16")

    @classmethod
    def from_dict(cls, d: dict | None) -> IndexConfig:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"IndexConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


def _faiss():
    import faiss

    return faiss


def effective_kind(cfg: IndexConfig, n: int) -> str:
    return "exact" if n < cfg.exact_below else cfg.kind


# the config fields a built index of each kind depends on (the rest are search-time settings)
BUILD_FIELDS = {"exact": (), "hnsw": ("hnsw_m", "hnsw_storage", "ef_construction", "pca_dim",
                                 "refine_storage"),
                "ivfpq": ("nlist", "pq_m")}


def build_config(cfg: IndexConfig | dict, kind: str) -> dict:
    """What an index of ``kind`` built with ``cfg`` depends on: a cached index whose stored
    config differs here is rebuilt."""
    d = asdict(cfg) if isinstance(cfg, IndexConfig) else dict(cfg)
    return {"kind": kind} | {f: d.get(f) for f in BUILD_FIELDS[kind]}


def _uses_pca(cfg: IndexConfig, d: int) -> bool:
    return 0 < cfg.pca_dim < d


def _hnsw(cfg: IndexConfig, d: int, metric: int):
    faiss = _faiss()
    if cfg.hnsw_storage == "flat":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, metric)
    else:
        qt = (faiss.ScalarQuantizer.QT_fp16 if cfg.hnsw_storage == "fp16"
              else faiss.ScalarQuantizer.QT_8bit)
        index = faiss.IndexHNSWSQ(d, qt, cfg.hnsw_m, metric)
    index.hnsw.efConstruction = cfg.ef_construction
    return index


def _train_sample(x: np.ndarray, size: int = 100_000) -> np.ndarray:
    if len(x) <= size:
        return x
    return x[np.sort(np.random.default_rng(0).choice(len(x), size=size, replace=False))]


def build_index(vectors: np.ndarray, cfg: IndexConfig, kind: str | None = None):
    """A faiss index holding ``vectors`` (float32, unit rows), ids = row numbers. Trained
    (PCA, scalar quantiser, IVF) on these vectors; more can be ``add``-ed afterwards."""
    faiss = _faiss()
    if cfg.threads:
        faiss.omp_set_num_threads(cfg.threads)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    kind = kind or effective_kind(cfg, n)
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw" and _uses_pca(cfg, d):
        if len(x) < cfg.pca_dim:
            raise ValueError(f"a PCA to {cfg.pca_dim} dimensions needs at least as many vectors")
        pre = faiss.IndexPreTransform(faiss.PCAMatrix(d, cfg.pca_dim),
                                      _hnsw(cfg, cfg.pca_dim, faiss.METRIC_L2))
        pre.train(_train_sample(x))
        if cfg.refine_storage == "flat":
            index = faiss.IndexRefineFlat(pre)
        else:
            index = faiss.IndexRefine(pre, faiss.IndexScalarQuantizer(
                d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2))
            index.refine_index.train(x[:1])  # fp16 needs no statistics
    elif kind == "hnsw":
        index = _hnsw(cfg, d, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained and len(x):
            index.train(_train_sample(x))
    else:
        nlist = cfg.nlist or max(int(4 * np.sqrt(n)), 1)
        pq_m = cfg.pq_m if d % cfg.pq_m == 0 else next(m for m in (32, 24, 16, 8, 4, 2, 1)
                                                        if d % m == 0)
        quant = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFPQ(quant, d, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = x[np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)]
        ivf.train(sample)
        index = faiss.IndexRefineFlat(ivf)
        index.k_factor = cfg.refine_k
    index.add(x)
    configure_search(index, cfg)
    return index


def configure_search(index, cfg: IndexConfig) -> None:
    faiss = _faiss()
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = cfg.ef_search
    elif isinstance(index, faiss.IndexRefine):
        base = faiss.downcast_index(index.base_index)
        if isinstance(base, faiss.IndexPreTransform):  # hnsw over PCA-reduced vectors
            faiss.downcast_index(base.index).hnsw.efSearch = cfg.ef_search
            index.k_factor = cfg.hnsw_refine_k
        else:
            faiss.extract_index_ivf(base).nprobe = cfg.nprobe
            index.k_factor = cfg.refine_k


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosine scores, row ids) of the ``k`` nearest library vectors per query; ids -1 pad.
    Indexes searched by L2 (the PCA-reduced HNSW) give squared distances of unit vectors,
    turned back into cosine = 1 - d/2."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, index.ntotal)
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    scores, ids = index.search(q, k)
    if index.metric_type == _faiss().METRIC_L2:
        scores = np.where(ids >= 0, 1.0 - scores / 2, scores).astype(np.float32)
    return scores, ids


def write_index(index, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        _faiss().write_index(index, str(tmp))
    return Path(path)


def read_index(path: str | os.PathLike):
    return _faiss().read_index(str(path))


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"library": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def index_paths(library: Path, model_hash: str, kind: str) -> tuple[Path, Path]:
    """Beside the library when its folder is writable, else under $MSID_CACHE."""
    stem = f"{library.name}.{model_hash[:12] or 'base'}.{kind}"
    folder = library.parent
    if not os.access(folder, os.W_OK):
        from msid.identify import cache_dir

        folder = cache_dir() / "ei-index"
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(str(library.resolve()).encode()).hexdigest()[:12]
        stem = f"{digest}-{stem}"
    return folder / f"{stem}.faiss", folder / f"{stem}.json"


@dataclass
class LibraryIndex:
    index: object
    meta: dict
    path: Path

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])


def cached_library_index(library: str | os.PathLike, model_hash: str, cfg: IndexConfig,
                         embed: Callable[[], np.ndarray]) -> LibraryIndex:
    """The index of ``library`` for the model ``model_hash``: loaded when its JSON says it was
    built from this very library file (size + mtime) and model, else built with ``embed()``."""
    library = Path(library)
    fp = _fingerprint(library)
    for kind in (cfg.kind, "exact"):
        ipath, mpath = index_paths(library, model_hash, kind)
        if ipath.exists() and mpath.exists():
            try:
                meta = json.loads(mpath.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if (meta.get("fingerprint") == fp and meta.get("model_hash") == model_hash
                    and build_config(meta.get("config", {}), kind) == build_config(cfg, kind)):
                index = read_index(ipath)
                configure_search(index, cfg)
                return LibraryIndex(index, meta, ipath)
    t0 = time.perf_counter()
    vectors = embed()
    t_embed = time.perf_counter() - t0
    kind = effective_kind(cfg, len(vectors))
    t0 = time.perf_counter()
    index = build_index(vectors, cfg, kind)
    meta = {"format": "msid-ei-index", "kind": kind, "n": len(vectors),
            "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0, "model_hash": model_hash,
            "fingerprint": fp, "config": asdict(cfg), "embed_seconds": t_embed,
            "build_seconds": time.perf_counter() - t0}
    ipath, mpath = index_paths(library, model_hash, kind)
    write_index(index, ipath)
    write_text(mpath, json.dumps(meta, indent=1) + "\n")
    return LibraryIndex(index, meta, ipath)
