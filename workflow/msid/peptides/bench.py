"""Throughput of de novo peptide sequencing for ``msid bench``: PepTRM (shipped model, beam
decoding, 1 thread) and the DP baseline on the same spectra (the peptide test fold)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from msid.peptides.data import read_annotated_mgf, split_by_sequence
from msid.peptides.denovo import DecodeConfig, sequence_spectra, shipped_model
from msid.resources import data_dir


def bench_peptides(model: str | Path | None = None, threads: int = 1, log=print) -> dict:
    data = sorted((data_dir() / "peptides").glob("*.mgf.gz"))
    spectra = split_by_sequence(read_annotated_mgf(data).spectra)["test"]
    torch.set_num_threads(threads)
    out: dict = {"spectra": len(spectra), "threads": threads}
    for name, method in (("peptrm", "peptrm"), ("dp", "dp")):
        sequence_spectra(spectra[:4], method, str(model or shipped_model()), DecodeConfig(),
                         {"fragment_tol_da": 0.02}, progress=False)  # warm-up
        t = time.perf_counter()
        sequence_spectra(spectra, method, str(model or shipped_model()), DecodeConfig(),
                         {"fragment_tol_da": 0.02}, progress=False)
        out[f"{name}_spectra_per_s"] = len(spectra) / (time.perf_counter() - t)
    log(f"   {len(spectra)} test-fold spectra, {threads} thread(s): PepTRM (beam 10) "
        f"{out['peptrm_spectra_per_s']:,.1f} spectra/s | DP baseline "
        f"{out['dp_spectra_per_s']:,.1f} spectra/s")
    return out
