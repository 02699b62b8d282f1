"""EI identification methods: library matching of nominal-mass EI spectra.

``ei-embedding`` (language-model embeddings + vector index), ``ei-embedding-wcos`` (the
index's shortlist re-scored: (1 - w) x embedding cosine + w x weighted cosine, w =
:data:`RESCORE_WEIGHT` unless ``options["rescore_weight"]`` says otherwise), and the baselines
``ei-cosine``, ``ei-weighted-cosine`` (m/z^3 x intensity^0.6) and ``ei-entropy`` (ms-entropy
weighting). Each returns the library's best hits, one row per structure (InChIKey first block),
with the library entry's SMILES, InChIKey and id: the Rankings columns of every other method.

Resources: ``options["ei_library"]`` (an MSP/MGF/store path or an :class:`EILibrary`; default:
the shipped MassBank EI library), ``options["index"]`` (:class:`IndexConfig` fields),
``options["embedding"]`` (batch size), ``options["hits"]`` (library hits fetched per query
before merging structures, default 50), and ``model_path`` (default: the shipped llm4ms model).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from msid.ei.search import EILibrary, Hit
from msid.methods import Method, MethodResources, Query, register
from msid.rankings import RankedCandidate

DEFAULT_EMBEDDER = "llm4ms_cc-by-nc-sa"  # the shipped embedding model (msid.resources)


def default_model() -> Path:
    """The shipped LLM4MS embedding model file (it may be missing: callers say so)."""
    from msid.resources import shipped_model

    return shipped_model(DEFAULT_EMBEDDER)
_LIBRARIES: dict[str, EILibrary] = {}
#: ``ei-embedding-wcos``: weight of the weighted cosine in the re-scored shortlist, chosen on the
#: val fold (168 queries against 9,482 train+val spectra, shortlist 50, shipped llm4ms model):
#: recall@1 0.685 (w 0, the embedding alone), 0.744 (0.3), 0.756 (0.5), 0.774 (0.7), 0.738 (1.0:
#: the weighted cosine alone over the shortlist); the weighted cosine over the whole library 0.708
RESCORE_WEIGHT = 0.7


def default_library() -> Path:
    """The shipped MassBank EI library file (resources/massbank_ei/*.msp*)."""
    from msid.resources import data_dir

    folder = data_dir() / "massbank_ei"
    if (folder / "massbank_ei.msp.gz").exists():
        return folder / "massbank_ei.msp.gz"
    found = sorted(folder.glob("*.msp*"))
    if not found:
        raise ValueError(f"no EI library given (--library) and none in {folder}")
    return found[0]


def get_library(spec: str | os.PathLike | EILibrary | None) -> EILibrary:
    """An :class:`EILibrary`, loaded once per process and path."""
    if isinstance(spec, EILibrary):
        return spec
    path = Path(spec) if spec else default_library()
    key = str(path.resolve())
    if key not in _LIBRARIES:
        _LIBRARIES[key] = EILibrary(path)
    return _LIBRARIES[key]


def _ranked(lib: EILibrary, hits: Sequence[Hit]) -> list[RankedCandidate]:
    md = lib.metadata
    out, seen = [], set()
    for h in hits:
        ik = str(md.at[h.row, "inchikey"])
        key = ik[:14] or f"row:{h.row}"
        if key in seen:
            continue
        seen.add(key)
        out.append(RankedCandidate(str(md.at[h.row, "smiles"]), ik, h.score,
                                   str(md.at[h.row, "id"]), name=str(md.at[h.row, "name"])))
    return out


class EISpectralMatch:
    """Baseline EI library search by one of the EILibrary scores."""

    needs_candidates = False
    needs_library = True
    precursor_ppm = False  # EI: a match says nothing of a precursor ion (no ppm error)

    def __init__(self, kind: str, library: EILibrary, n_hits: int = 50) -> None:
        self.kind = kind
        self.name = f"ei-{kind}"
        self.library = library
        self.n_hits = n_hits

    def rank(self, query: Query, candidates: object = None) -> list[RankedCandidate]:
        scores = self.library.scores(query.mz, query.intensity, self.kind)
        return _ranked(self.library, self.library.top_hits(scores, self.n_hits))

    def why_empty(self, query: Query, candidates: object = None) -> str:
        return "no library spectrum shares a peak with the query"


class EIEmbeddingSearch:
    """Query embeddings searched in the library's (cached) vector index."""

    needs_candidates = False
    needs_library = True
    precursor_ppm = False  # EI: a match says nothing of a precursor ion (no ppm error)

    def __init__(self, library: EILibrary, model_path: str | os.PathLike | None,
                 index_options: dict | None = None, embedding_options: dict | None = None,
                 n_hits: int = 50, rescore_weight: float = 0.0) -> None:
        """``rescore_weight`` w > 0: the ``n_hits`` shortlist is re-scored as (1 - w) x
        embedding cosine + w x weighted cosine (method ``ei-embedding-wcos``)."""
        from msid.ei.embedding import load_embedder
        from msid.ei.index import IndexConfig, cached_library_index

        if not 0.0 <= rescore_weight <= 1.0:
            raise ValueError(f"rescore_weight must be within [0, 1], got {rescore_weight}")
        self.library = library
        self.n_hits = n_hits
        self.rescore_weight = rescore_weight
        self.name = "ei-embedding-wcos" if rescore_weight > 0 else "ei-embedding"
        path = Path(model_path) if model_path else default_model()
        if not path.exists():
            raise ValueError(f"ei-embedding: model file {path} not found (train it with "
                             f"`snakemake models` or pass --model)")
        self.embedder, self.card = load_embedder(path, embedding_options)
        self.model_hash = str(self.card["weights_sha256"])
        # the index holds the embeddings of the weights and of how spectra become text (a
        # card's text settings, e.g. average_with, can change without the weights)
        text = json.dumps({k: v for k, v in self.embedder.config.to_dict().items()
                           if k != "batch_size"}, sort_keys=True)  # batch size: same vectors
        index_key = hashlib.sha256(f"{self.model_hash}:{text}".encode()).hexdigest()
        self.index = cached_library_index(
            library.store_path, index_key, IndexConfig.from_dict(index_options),
            lambda: self.embedder.encode(library.peaks, progress=True))

    def rank_many(self, queries: Sequence[Query], candidates: object = None
                  ) -> list[list[RankedCandidate]]:
        from msid.ei.index import search
        from msid.ei.search import nominal_peaks

        if not queries:
            return []
        peaks = [nominal_peaks(q.mz, q.intensity) for q in queries]
        scores, rows = search(self.index.index, self.embedder.encode(peaks), self.n_hits)
        if self.rescore_weight > 0:
            w = self.rescore_weight
            wcos = self.library.weighted_cosine_at(peaks, rows)
            scores = (1 - w) * scores + w * wcos
            order = np.argsort(-np.where(rows >= 0, scores, -np.inf), axis=1, kind="stable")
            scores = np.take_along_axis(scores, order, 1)
            rows = np.take_along_axis(rows, order, 1)
        scores = np.minimum(scores, 1.0)  # cosines; float32 rounding can pass 1 by a hair
        return [_ranked(self.library, [Hit(int(r), float(s)) for s, r in zip(sc, rw,
                                                                              strict=True)
                                       if r >= 0])
                for sc, rw in zip(scores, rows, strict=True)]

    def rank(self, query: Query, candidates: object = None) -> list[RankedCandidate]:
        return self.rank_many([query])[0]


def _baseline(kind: str):
    def factory(res: MethodResources) -> Method:
        return EISpectralMatch(kind, get_library(res.options.get("ei_library")),
                               int(res.options.get("hits", 50)))
    return factory


register("ei-cosine")(_baseline("cosine"))
register("ei-weighted-cosine")(_baseline("weighted-cosine"))
register("ei-entropy")(_baseline("entropy"))


@register("ei-embedding")
def _embedding(res: MethodResources) -> Method:
    return EIEmbeddingSearch(get_library(res.options.get("ei_library")), res.model_path,
                             res.options.get("index"), res.options.get("embedding"),
                             int(res.options.get("hits", 50)))


@register("ei-embedding-wcos")
def _embedding_rescored(res: MethodResources) -> Method:
    return EIEmbeddingSearch(get_library(res.options.get("ei_library")), res.model_path,
                             res.options.get("index"), res.options.get("embedding"),
                             int(res.options.get("hits", 50)),
                             float(res.options.get("rescore_weight", RESCORE_WEIGHT)))


__all__ = ["EIEmbeddingSearch", "EISpectralMatch", "get_library"]
