"""``msid bench``: throughput of the backbone, measured side by side in one run, printed.

1. preprocessing: spectra/s through convert (matchms harmonisation) and the filter chain;
2. candidate index: build time for the shipped pool + 1.58M decoys, and a cached reload;
3. library search: queries/s of msid's identity search vs ms-entropy's FlashEntropySearch
   identity search, same library, same queries, same tolerances; plus score agreement;
4. learned models: training throughput (spectra/s, tiny preset, the train fold of the store
   from step 1) and ranking throughput (queries/s with mass candidates from the index, shipped
   models), every family, beside random ranking measured on the same queries and candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def bench_preprocess(library: str, work: Path, jobs: int) -> dict:
    from msid.convert import convert_file
    from msid.preprocess import PreprocessConfig, preprocess_store

    raw, clean = work / "lib.raw.h5", work / "lib.h5"
    cs, t_conv = _timed(convert_file, library, raw, n_jobs=jobs, progress=False)
    ps, t_pre = _timed(preprocess_store, raw, clean,
                       PreprocessConfig(require_structure=True, assign_folds=True),
                       n_jobs=jobs, progress=False)
    one, t_one = _timed(convert_file, library, work / "lib.onepass.h5", n_jobs=jobs,
                        progress=False,
                        clean=PreprocessConfig(require_structure=True, assign_folds=True))
    return {"spectra": cs.read, "kept": ps.kept, "jobs": jobs,
            "convert_s": t_conv, "preprocess_s": t_pre,
            "convert_spectra_per_s": cs.read / t_conv,
            "preprocess_spectra_per_s": ps.read / t_pre,
            "total_spectra_per_s": cs.read / (t_conv + t_pre), "store": str(clean),
            "one_pass_s": t_one, "one_pass_kept": one.stored,
            "one_pass_spectra_per_s": one.read / t_one}


def write_query_mgf(library: str | os.PathLike, out: Path, every: int = 16) -> int:
    """Every ``every``-th record of an MGF library, verbatim, as a query file."""
    from msid.io.mgf import BLOCK, MgfChunk, mgf_chunks

    n = 0
    with open(out, "w") as fh:
        for chunk in mgf_chunks(library):
            if not isinstance(chunk, MgfChunk):  # what the file lost: no query to write
                continue
            for block in BLOCK.findall(chunk.text):
                if n % every == every - 1:
                    fh.write(f"BEGIN IONS{block}END IONS\n\n")
                n += 1
    return n // every


def _structure_keys(path: str | os.PathLike) -> dict[str, str]:
    """Record id -> InChIKey first block of its standardised structure ('' when none)."""
    from msid.chem.structures import parse_structure
    from msid.io import RawSpectrum, read_spectra

    out = {}
    for r in read_spectra(path):
        if isinstance(r, RawSpectrum):
            st = parse_structure(str(r.params.get("smiles", "")))
            out[r.record_id] = st.inchikey14 if st else str(r.params.get("inchikey", ""))[:14]
    return out


def _hit1(path: Path, truth: dict[str, str], id_col: str, key_of_hit) -> float:
    """Share of queries whose rank-1 hit has the query's structure (``key_of_hit(row)``)."""
    import pandas as pd

    t = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "rank" in t:
        t = t[t["rank"] == "1"]
    top = {row[id_col]: key_of_hit(row) for _, row in t.iterrows()}
    return sum(1 for q, ik in truth.items() if ik and top.get(q) == ik) / max(len(truth), 1)


def _ei_sweep(a: argparse.Namespace) -> list[dict]:
    """The search settings ``--ei-ef-sweep`` and ``--ei-refine-sweep`` ask to time."""
    def values(flag: str) -> list[int]:
        return [int(x) for x in str(getattr(a, flag, "") or "").split(",") if x.strip()]

    return ([{"ef_search": v} for v in values("ei_ef_sweep")]
            + [{"hnsw_refine_k": v} for v in values("ei_refine_sweep")])


def bench_first_call(library: str, work: Path, queries: str | None = None) -> dict:
    """Whole-process time of a first and a second ``msid identify --library LIB`` (fresh
    cache, then cached) beside a plain FlashEntropySearch script on the same files."""
    import subprocess
    import sys

    qpath = Path(queries) if queries else work / "queries.mgf"
    if not queries:
        write_query_mgf(library, qpath)
    truth = _structure_keys(qpath)
    env = {**os.environ, "MSID_CACHE": str(work / "first-call-cache")}

    def run(cmd: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - t

    ident = [sys.executable, "-m", "msid.cli", "identify", str(qpath), "--library",
             str(library), "--top-k", "10"]
    first = run([*ident, "--out", str(work / "first.tsv")])
    second = run([*ident, "--out", str(work / "second.tsv")])
    script = run([sys.executable, "-m", "msid.search.flash_baseline", str(library), str(qpath),
                  str(work / "flash.tsv")])
    lib_keys = _structure_keys(library)  # the script's hits, by library record
    return {"queries": len(truth), "first_s": first, "second_s": second, "script_s": script,
            "first_ratio": script / first, "second_ratio": script / second,
            "msid_hit1": _hit1(work / "second.tsv", truth, "query_id",
                               lambda r: r["inchikey"][:14]),
            "script_hit1": _hit1(work / "flash.tsv", truth, "query_id",
                                 lambda r: lib_keys.get(r["library_id"], ""))}


def bench_index(work: Path, jobs: int) -> dict:
    from msid.chem.candidates import CandidateIndex, build_index
    from msid.identify import default_pool_sources

    out = work / "candidates.npz"
    meta, t_build = _timed(build_index, default_pool_sources(), out, n_jobs=jobs,
                           log=lambda *_: None)
    _, t_load = _timed(CandidateIndex, out)
    return {"molecules": meta["n_molecules"], "jobs": jobs, "build_s": t_build,
            "cached_load_s": t_load}


def bench_search(store_path: str, n_queries: int, seed: int = 0) -> dict:
    from ms_entropy import FlashEntropySearch

    from msid.search.library import LibrarySearchConfig, SpectralLibrary
    from msid.store import SpectrumStore

    cfg = LibrarySearchConfig()
    with SpectrumStore(store_path) as st:
        md = st.metadata
        mz, inten, off = st.all_peaks()
        prec = md["precursor_mz"].to_numpy()
        rng = np.random.default_rng(seed)
        qrows = rng.choice(len(st), size=min(n_queries, len(st)), replace=False)
        lib, t_msid_build = _timed(SpectralLibrary, st, cfg)
    spectra = [{"precursor_mz": float(prec[i]), "row": i,
                "peaks": np.column_stack([mz[off[i]:off[i + 1]],
                                          inten[off[i]:off[i + 1]]]).astype(np.float32)}
               for i in range(len(prec))]
    fes = FlashEntropySearch()
    t = time.perf_counter()
    indexed = fes.build_index(spectra, min_ms2_difference_in_da=cfg.min_peak_separation_da,
                              precursor_ions_removal_da=cfg.precursor_ions_removal_da,
                              noise_threshold=cfg.noise_threshold)
    t_flash_build = time.perf_counter() - t
    flash_rows = np.array([s["row"] for s in indexed])
    queries = [(float(prec[i]), mz[off[i]:off[i + 1]], inten[off[i]:off[i + 1]]) for i in qrows]

    def run_msid():
        return [lib.search(p, m, i, top_k=10) for p, m, i in queries]

    def run_flash():
        res = []
        for p, m, i in queries:
            pk = fes.clean_spectrum_for_search(
                p, np.column_stack([m, i]).astype(np.float32),
                precursor_ions_removal_da=cfg.precursor_ions_removal_da,
                noise_threshold=cfg.noise_threshold,
                min_ms2_difference_in_da=cfg.min_peak_separation_da)
            s = fes.identity_search(p, pk, cfg.precursor_tol_da, cfg.fragment_tol_da)
            top = np.argsort(-s, kind="stable")[:10]
            res.append([(int(flash_rows[k]), float(s[k])) for k in top if s[k] > 0])
        return res

    run_msid(), run_flash()  # warm caches
    r_msid, t_msid = _timed(run_msid)
    r_flash, t_flash = _timed(run_flash)
    same_top1 = sum(1 for a, b in zip(r_msid, r_flash, strict=True)
                    if (not a and not b) or (a and b and abs(a[0].score - b[0][1]) < 1e-4))
    max_diff = max((abs(x.score - y[1]) for a, b in zip(r_msid, r_flash, strict=True)
                    for x, y in zip(a, b, strict=False)), default=0.0)
    return {"library_spectra": len(prec), "queries": len(queries),
            "msid_build_s": t_msid_build, "flash_build_s": t_flash_build,
            "msid_queries_per_s": len(queries) / t_msid,
            "flash_queries_per_s": len(queries) / t_flash,
            "throughput_ratio": t_flash / t_msid,
            "top1_score_agreement": same_top1 / len(queries),
            "max_abs_score_diff_top10": max_diff}


def bench_models(store_path: str, index_path: str | os.PathLike, work: Path, n_queries: int,
                 train_steps: int, families: list[str], seed: int = 0) -> dict:
    from msid.benchmark import BenchmarkConfig, select_queries, split_folds
    from msid.candidate_sets import candidates_for_queries
    from msid.chem.candidates import CandidateIndex
    from msid.methods import MethodResources, make_method, rank_queries
    from msid.models.training import train_model
    from msid.store import SpectrumStore

    folds = split_folds(store_path, {"train": work / "train.h5", "test": work / "test.h5"})
    index = CandidateIndex(index_path)
    out: dict[str, dict] = {"train_spectra": folds["train"]}
    with SpectrumStore(work / "test.h5") as test:
        rows = select_queries(test, BenchmarkConfig(max_queries=n_queries, seed=seed))
        cands = candidates_for_queries(test, rows, index=index, kind="mass", ppm=10.0,
                                       max_n=256, include_true=True, seed=seed)
        n_cand = int(sum(len(v) for v in cands.values()))
        for name in ["random", *families]:
            method = make_method(name, MethodResources(seed=seed))
            rank_queries(method, test, rows[:8], cands, progress=False)  # warm-up (caches)
            _, t = _timed(rank_queries, method, test, rows, cands, progress=False)
            out[name] = {"rank_queries_per_s": len(rows) / t, "queries": len(rows),
                         "candidates": n_cand}
    for fam in families:
        cfg = {"size": "tiny", "train": {"max_steps": train_steps, "eval_every": 0,
                                         "checkpoint_every": 0, "progress": False,
                                         "val_max_queries": 0, "num_threads": 1,
                                         "warmup_steps": min(100, train_steps // 2)},
               "members": []}  # one model's throughput, also for ensemble families
        m = train_model(fam, work / "train.h5", "", index_path, cfg,
                        work / "models" / f"{fam}.safetensors", log=lambda *_: None)
        out[fam].update(train_spectra_per_s=m["train_spectra_per_second"],
                        train_steps=m["steps"], train_s=m["train_seconds"])
    return out


def run_bench(a: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="msid-bench-") as tmp:
        work = Path(tmp)
        print(f"== preprocessing: {a.library} ({a.jobs} processes)", flush=True)
        results["preprocess"] = pre = bench_preprocess(a.library, work, a.jobs)
        print(f"   {pre['spectra']:,} spectra: convert {pre['convert_s']:.1f} s "
              f"({pre['convert_spectra_per_s']:,.0f}/s), filter chain {pre['preprocess_s']:.1f} s "
              f"({pre['preprocess_spectra_per_s']:,.0f}/s); overall "
              f"{pre['total_spectra_per_s']:,.0f} spectra/s (two stages, as the DAG runs them)",
              flush=True)
        print(f"   one pass (convert + clean, as msid identify builds a library): "
              f"{pre['one_pass_s']:.1f} s, {pre['one_pass_spectra_per_s']:,.0f} spectra/s "
              "(goal >= 10,000)", flush=True)
        if not getattr(a, "skip_first_call", False):
            print("== first and second msid identify --library LIB (whole process, fresh cache) "
                  "vs a plain FlashEntropySearch script (python -m msid.search.flash_baseline)",
                  flush=True)
            results["first_call"] = fc = bench_first_call(a.library, work,
                                                          getattr(a, "first_call_queries", None))
            print(f"   {fc['queries']:,} queries: msid first {fc['first_s']:.1f} s, second "
                  f"{fc['second_s']:.1f} s | script {fc['script_s']:.1f} s | ratio script/msid "
                  f"first {fc['first_ratio']:.2f}, second {fc['second_ratio']:.2f} (goal >= 1) | "
                  f"Hit@1 msid {fc['msid_hit1']:.3f}, script {fc['script_hit1']:.3f}",
                  flush=True)
        if not getattr(a, "skip_memory", False):
            from msid.io.memory_bench import bench_memory

            print(f"== peak memory converting the demo runs x1 and x{a.memory_n} (fresh process "
                  "each)", flush=True)
            results["memory"] = bench_memory(work / "memory", n=a.memory_n,
                                             log=lambda s: print(s, flush=True))
        if not a.skip_index:
            print(f"== candidate index: shipped pool + decoys ({a.jobs} processes)", flush=True)
            results["index"] = ix = bench_index(work, a.jobs)
            print(f"   {ix['molecules']:,} molecules: build {ix['build_s']:.1f} s (goal < 90 s); "
                  f"cached reload {ix['cached_load_s']:.2f} s", flush=True)
        print(f"== library search: {a.queries} queries, identity search, top 10", flush=True)
        results["search"] = se = bench_search(pre["store"], a.queries)
        print(f"   library {se['library_spectra']:,} spectra; index build msid "
              f"{se['msid_build_s']:.1f} s, FlashEntropySearch {se['flash_build_s']:.1f} s",
              flush=True)
        print(f"   msid {se['msid_queries_per_s']:,.0f} queries/s | FlashEntropySearch "
              f"{se['flash_queries_per_s']:,.0f} queries/s | ratio {se['throughput_ratio']:.2f} "
              f"(goal >= 1)", flush=True)
        print(f"   top-1 score agreement {se['top1_score_agreement']:.3f}; max |score diff| in "
              f"top 10 {se['max_abs_score_diff_top10']:.4f}", flush=True)
        if not a.skip_models:
            fams = ["ranker", "reconstructor", "deepsets", "fp_ffn"]
            print(f"== learned models: ranking {a.model_queries} test-fold queries (mass "
                  f"candidates, shipped models); training {a.train_steps} steps each (tiny, "
                  "1 thread)", flush=True)
            index_path = work / "candidates.npz"
            if not index_path.exists():
                from msid.identify import cached_index

                index_path = cached_index().path
            results["models"] = mo = bench_models(pre["store"], index_path, work,
                                                  a.model_queries, a.train_steps, fams)
            r = mo["random"]
            print(f"   {r['queries']} queries, {r['candidates']:,} candidates; random ranking "
                  f"{r['rank_queries_per_s']:,.0f} queries/s", flush=True)
            for fam in fams:
                f = mo[fam]
                print(f"   {fam:<14} train {f['train_spectra_per_s']:,.0f} spectra/s | rank "
                      f"{f['rank_queries_per_s']:,.0f} queries/s", flush=True)
            from msid.generation.benchmark import bench_generation

            print("== generation: de novo (beam search) and GLMR re-ranking", flush=True)
            results["generation"] = bench_generation(work / "test.h5", index_path,
                                                     min(a.model_queries, 50))
        if not getattr(a, "skip_ei", True):
            from msid.ei.index import IndexConfig
            from msid.ei.index_bench import bench_ei
            from msid.ei.methods import default_library

            print(f"== EI search (llm4ms): embedding throughput; {a.ei_entries:,}-entry vector "
                  f"index ({a.jobs} threads)", flush=True)
            results["ei"] = bench_ei(a.ei_library or default_library(), a.ei_model,
                                     n=a.ei_entries, threads=a.jobs,
                                     cfg=IndexConfig(kind="hnsw", **{
                                         f: v for f, v in (("hnsw_m", a.ei_m),
                                                           ("hnsw_storage", a.ei_storage),
                                                           ("ef_search", a.ei_ef_search))
                                         if v is not None}),
                                     vectors=a.ei_vectors,
                                     sweep=_ei_sweep(a),
                                     log=lambda s: print(s, flush=True))
    if not getattr(a, "skip_peptides", False):
        from msid.peptides.bench import bench_peptides

        print("== de novo peptides: PepTRM (shipped model, beam) and the DP baseline, peptide "
              "test fold", flush=True)
        results["peptides"] = bench_peptides(log=lambda s: print(s, flush=True))
    if not getattr(a, "skip_ei_prediction", False):
        from msid.ei.insilico import DEFAULT_STUDENT
        from msid.ei.neims_bench import bench_ei_prediction
        from msid.resources import shipped_model

        print(f"== EI spectrum prediction (NEIMS v2): teacher vs student predictions/s, the "
              f"1.6M-molecule in-silico library on {a.jobs} processes", flush=True)
        results["ei_prediction"] = bench_ei_prediction(
            a.ei_teacher or shipped_model("neims_teacher_cc-by-nc-sa"),
            a.ei_student or shipped_model(DEFAULT_STUDENT),
            library_sample=a.ei_library_sample, jobs=a.jobs, full=a.ei_library_full,
            log=lambda s: print(s, flush=True))
    results["machine"] = {"cpus": os.cpu_count()}
    if a.out:
        from msid.atomic import write_text

        write_text(a.out, json.dumps(results, indent=2, default=str))
    return results
