"""Peak memory of converting a run: the demo runs' spectra written N times into one large mzML.

The 1x and Nx runs are each converted (``msid.convert.convert_file``) in a fresh Python process,
so each peak RSS is that conversion's alone. A streaming reader keeps the Nx peak close to the 1x
peak; a reader that loads the whole run grows with N.

    python -m msid.io.memory_bench --n 10        # or --n 50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: the folder holding the msid package (put on the child's PYTHONPATH)
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
#: the demo's raw runs (config/samples.tsv, under resources/runs/): an LC-MS/MS small-molecule
#: and a peptide run
DEMO_RUNS = ("pestmix_dda.mzML.gz", "peptide_qc1.mzML.gz")


def build_run(sources: Sequence[Path], n: int, out: Path) -> int:
    """Write every spectrum (MS1 included) of ``sources``, ``n`` times over, to the mzML ``out``
    with unique native IDs (``copy=<k> <id>``); returns the number of spectra written.

    Spectra are read and written one at a time (pyOpenMS consumers), so building a large run
    needs little memory; binary arrays are zlib-compressed as most instrument converters do.
    """
    import pyopenms as oms

    writer = oms.PlainMSDataWritingConsumer(str(out))
    opts = writer.getOptions()
    opts.setCompression(True)
    writer.setOptions(opts)

    class Copy:
        """Consumer: each spectrum of one source, renamed for copy ``k``, into ``writer``."""

        def __init__(self, out: object, k: int, first: bool) -> None:
            self.out, self.k, self.first = out, k, first

        def setExpectedSize(self, n_spectra: int, n_chromatograms: int) -> None:
            pass

        def setExperimentalSettings(self, settings: object) -> None:
            if self.first:  # the output's instrument etc. come from the first source
                self.out.setExperimentalSettings(settings)

        def consumeSpectrum(self, spec: object) -> None:
            spec.setNativeID(f"copy={self.k} {spec.getNativeID()}")
            self.out.consumeSpectrum(spec)

        def consumeChromatogram(self, chrom: object) -> None:
            pass

    for k in range(n):
        for j, src in enumerate(sources):
            oms.MzMLFile().transform(str(src), Copy(writer, k, k == 0 and j == 0), True, False)
    n_written = int(writer.getNrSpectraWritten())
    del writer  # the consumer closes the document when it is destroyed
    return n_written


def _child(path: Path, out: Path, jobs: int) -> dict:
    """Convert ``path`` in this (fresh) process; peak RSS and the RSS before converting."""
    import pyopenms  # noqa: F401 - loaded before the baseline, as convert_file would load it

    from msid.convert import convert_file

    baseline = _rss_now_mb()
    t0 = time.perf_counter()
    stats = convert_file(path, out, n_jobs=jobs, progress=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"spectra": stats.stored, "read": stats.read, "seconds": seconds,
            "peak_rss_mb": peak, "baseline_rss_mb": baseline}


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(path: Path, out: Path, jobs: int = 1) -> dict:
    """Convert ``path`` to ``out`` in a fresh process; its spectra, seconds and peak RSS."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")) if p)}
    res = subprocess.run([sys.executable, "-m", "msid.io.memory_bench", "--child", str(path),
                          str(out), "--jobs", str(jobs)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"converting {path} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_memory(work: Path, n: int = 10, sources: Sequence[Path] | None = None, jobs: int = 1,
                 log: Callable[[str], None] = print) -> dict:
    """Peak RSS of converting the 1x and the ``n``-x run (built under ``work``), and their ratio.

    Returns ``{"n", "size_1x_mb", "size_nx_mb", "spectra_1x", "spectra_nx", "seconds_1x",
    "seconds_nx", "peak_rss_1x_mb", "peak_rss_nx_mb", "baseline_rss_mb", "ratio", "growth_1x_mb",
    "growth_nx_mb"}``. ``ratio`` is peak_rss_nx_mb / peak_rss_1x_mb (goal: at most 1.5); most of a
    peak is the libraries a process with msid.convert loaded holds (``baseline_rss_mb``), so the
    growth above it (``growth_*_mb``) is what the reader and the store writer add. ``sources``:
    the demo's runs (:data:`DEMO_RUNS`) unless given.
    """
    from msid.resources import resource

    sources = sources or [resource("runs", name) for name in DEMO_RUNS]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    runs = {}
    for k in (1, n):
        path = work / f"run_x{k}.mzML"
        if not path.exists():
            build_run(sources, k, path)
        runs[k] = (path, measure(path, work / f"run_x{k}.h5", jobs))
    (p1, one), (pn, many) = runs[1], runs[n]
    out = {"n": n, "size_1x_mb": p1.stat().st_size / 2**20, "size_nx_mb": pn.stat().st_size / 2**20,
           "spectra_1x": one["spectra"], "spectra_nx": many["spectra"],
           "seconds_1x": one["seconds"], "seconds_nx": many["seconds"],
           "peak_rss_1x_mb": one["peak_rss_mb"], "peak_rss_nx_mb": many["peak_rss_mb"],
           "baseline_rss_mb": one["baseline_rss_mb"],
           "ratio": many["peak_rss_mb"] / one["peak_rss_mb"],
           "growth_1x_mb": one["peak_rss_mb"] - one["baseline_rss_mb"],
           "growth_nx_mb": many["peak_rss_mb"] - many["baseline_rss_mb"]}
    for k, size, r in ((1, out["size_1x_mb"], one), (n, out["size_nx_mb"], many)):
        log(f"   {k:>3}x run ({size:,.1f} MB mzML): {r['spectra']:,} MS2 spectra stored in "
            f"{r['seconds']:.1f} s; peak RSS {r['peak_rss_mb']:,.0f} MB "
            f"({r['peak_rss_mb'] - r['baseline_rss_mb']:,.0f} MB above the "
            f"{r['baseline_rss_mb']:,.0f} MB of a process with msid loaded)")
    log(f"   peak RSS {n}x / 1x = {out['ratio']:.2f} (goal <= 1.5); above the baseline "
        f"{out['growth_nx_mb']:,.0f} MB vs {out['growth_1x_mb']:,.0f} MB")
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m msid.io.memory_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="copies of the demo runs (default 10)")
    ap.add_argument("--jobs", type=int, default=1, help="convert processes (default 1)")
    ap.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--child", nargs=2, type=Path, metavar=("RUN", "STORE"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        res = _child(*a.child, a.jobs)
        print(json.dumps(res))
        return res
    print(f"== peak memory: converting the demo runs x1 and x{a.n} ({a.jobs} process(es))",
          flush=True)
    if a.work:
        return bench_memory(a.work, a.n, jobs=a.jobs, log=lambda s: print(s, flush=True))
    with tempfile.TemporaryDirectory(prefix="msid-memory-") as d:
        return bench_memory(Path(d), a.n, jobs=a.jobs, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
