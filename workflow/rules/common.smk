import os
import sys

import pandas as pd

sys.path.insert(0, workflow.basedir)  # the msid package beside the Snakefile
# envs/bde.post-deploy.sh installs this checkout's msid (editable, from ${MSID_ROOT}) once
# Snakemake has created the env from its copy of envs/bde.yaml under .snakemake/conda
os.environ.setdefault("MSID_ROOT", os.path.dirname(os.path.abspath(workflow.basedir)))
# what msid caches on first use (an EI library's store, its index) stays with the results, not
# in $HOME: a cluster node's home may be another file system, small, or not the container's
os.environ.setdefault("MSID_CACHE", os.path.abspath(f"{RESULTS}/cache"))
from msid.config_values import settled
from msid.method_kinds import check_method_options, check_methods, method_table
from msid.samples import (
    record_names,
    runs_dir_samples,
    sheet_rows_unread,
    unread_entries,
)

METHODS = method_table()  # msid's methods + those installed packages declare


#: the names runs_dir's files were given (msid.samples), and the rows to record there
REGISTRY = f"{RESULTS}/runs/sample_names.tsv"
RUNS_DIR_ROWS = []
#: (file, why) of what runs_dir holds, or the sample sheet names, but no run is made of: said at
#: start, and in the batch report
UNREAD = []
SHEET_ALL_LOST = []  # a sample sheet with rows, every one of them left out


def _not_read(where, entries):
    """Keep (file, why) for the batch report and say it at start."""
    UNREAD.extend(entries)
    for name, why in entries if workflow.is_main_process else []:
        print(f"{where}: not read: {name}: {why}", file=sys.stderr)


def _duplicates(names):
    """Sample names given twice, also in case only (QC and qc would share one results folder
    on a case-insensitive share: SMB, NTFS, macOS)."""
    folded = names.str.casefold()
    return sorted(set(names[folded.duplicated(keep=False)]))


def _load_samples():
    frames = []
    sheet = config.get("samples", "")
    if sheet:
        # every cell as written: a '#' inside a path or name is no comment, and a sample
        # named NA or None is no missing value; a line starting with '#' is a comment
        if not os.path.isfile(sheet):
            raise ValueError(
                f"config samples: {sheet}: no such file (a tab-separated sample sheet with "
                "the columns sample, path, kind; samples: '' for none)"
            )
        with open(sheet, encoding="utf-8-sig") as fh:  # comment lines above the header
            lead = 0  # (a header written '#sample<TAB>path' is the header)
            for line in fh:
                fields = {f.strip() for f in line.strip().lstrip("#").split("\t")}
                if not line.lstrip().startswith("#") or {"sample", "path"} <= fields:
                    break
                lead += 1
        try:
            df = pd.read_csv(
                sheet,
                sep="\t",
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skiprows=lead,
            )
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
            raise ValueError(
                f"{sheet}: not a tab-separated sample sheet (columns sample, path, kind): "
                f"{str(e).strip()}"
            ) from None
        df.columns = [str(c).lstrip("#").strip() for c in df.columns]
        if len(df.columns):
            first = df.columns[0]
            df = df[~df[first].astype(str).str.lstrip().str.startswith("#")]
            df = df.reset_index(drop=True)
        if not {"sample", "path"} <= set(df.columns):
            raise ValueError(
                f"{sheet}: a sample sheet is tab-separated with the columns sample, path "
                f"and kind (optional); its header reads {list(df.columns)}"
            )
        dup = _duplicates(df["sample"])
        if dup:
            raise ValueError(f"{sheet}: duplicate sample names: {dup}")
        if "kind" in df:  # 'EI', 'ei ' are the kind ei
            df["kind"] = df["kind"].astype(str).str.strip().str.lower()
        lost = sheet_rows_unread(df.to_dict("records"), sheet)
        if lost:  # one mistyped row does not stop the other runs
            _not_read("samples", [(name, why) for _, name, why in lost])
            if len(lost) == len(df):  # but a sheet of which no row runs is an error
                SHEET_ALL_LOST.append(sheet)
            df = df.drop(index=df.index[[i for i, _, _ in lost]])
        frames.append(df)
    runs_dir = config.get("runs_dir", "")
    if (
        runs_dir
        and sheet
        and os.path.abspath(sheet) == os.path.abspath("config/samples.tsv")
        and workflow.is_main_process
    ):
        print(
            f"msid: runs_dir {runs_dir} is read beside the demo sample sheet {sheet}: "
            "samples: '' (in the config, or --config samples='') for runs_dir alone",
            file=sys.stderr,
        )
    if (
        runs_dir
    ):  # file names made safe for paths, kind from the subfolder (msid.samples)
        sheet_rows = (
            pd.concat(frames) if frames else pd.DataFrame(columns=["sample", "path"])
        )
        rows = runs_dir_samples(
            runs_dir,
            taken=set(sheet_rows["sample"]),
            listed=set(sheet_rows["path"]),
            registry=REGISTRY,
            write_registry=False,  # recorded on start (onstart): a dry run writes nothing
        )
        RUNS_DIR_ROWS.extend(rows)
        frames.append(pd.DataFrame(rows, columns=["sample", "path", "kind"]))
        _not_read("runs_dir", unread_entries(runs_dir))
    if not frames:
        return pd.DataFrame(columns=["sample", "path", "kind"]).set_index("sample")
    df = pd.concat(frames, ignore_index=True)
    if "kind" not in df:
        df["kind"] = "small_molecule"
    df["kind"] = df["kind"].replace("", "small_molecule").fillna("small_molecule")
    dup = _duplicates(df["sample"])
    if dup:
        raise ValueError(f"duplicate sample names: {dup}")
    validate(df, "../schemas/samples.schema.yaml")
    return df.set_index("sample", drop=False)


samples = _load_samples()


def _check_preprocess():
    """Preprocessing settings the schema cannot judge (mz_min below mz_max, fold fractions
    that sum to 1, ...): checked here, at start, as the steps that read them would."""
    from msid.preprocess_config import (
        PreprocessConfig,
    )  # light: no matchms at parse time

    for part, settings in config.get("preprocess", {}).items():
        try:
            PreprocessConfig.from_dict(dict(settings or {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"config preprocess.{part}: {e}") from None


_check_preprocess()


onstart:
    record_names(REGISTRY, RUNS_DIR_ROWS)


if samples.empty and SHEET_ALL_LOST:  # a scripted batch must not take this for success
    raise ValueError(
        f"samples: none of the rows of {SHEET_ALL_LOST[0]} names a run that can be read "
        "(each is listed above with why)"
    )
if (
    workflow.is_main_process
    and samples.empty
    and (config.get("runs_dir") or config.get("samples"))
):
    print(
        "msid: no runs to identify: runs_dir "
        f"'{config.get('runs_dir', '')}' and samples '{config.get('samples', '')}' "
        "name no readable run file (what is not read is listed above)",
        file=sys.stderr,
    )
LIB = config["library"]["name"]


def _check_library():
    """The ESI library: a file msid reads, there, and named for itself (outputs, logs and
    reports carry library.name), said at start instead of by a job."""
    from msid.samples import RUN_FILE

    path = str(config["library"]["path"])
    how = "--config 'library={name: inhouse, path: /path/to/library.mgf}'"
    if not RUN_FILE.search(path):
        raise ValueError(
            f"config library.path: {path} is not a library file msid reads (MGF, MSP, mzML "
            "or mzXML, gzip allowed)"
        )
    if not os.path.exists(path):
        raise ValueError(f"config library.path: {path}: no such file ({how})")
    shipped = os.path.join(
        workflow.basedir, "..", "resources", "massbank_esi", "massbank_esi_msms.mgf.gz"
    )
    same = lambda p: (os.path.basename(p), os.path.getsize(p))  # a copy of it passes
    if (
        LIB == "massbank_esi"
        and os.path.isfile(shipped)
        and same(path) != same(shipped)
    ):
        raise ValueError(
            f"config library.path is {path}, but library.name is still 'massbank_esi' (the "
            "shipped MassBank library's), which every output, log and report would then "
            f"carry: name your library, e.g. {how}"
        )


_check_library()
# what training jobs ask the scheduler for, for their GPU: gpu=1 (Slurm --gpus=1), or the GRES
# string models.gpu_gres names ("gpu:a100:1", --gres) on a cluster that takes only that
GPU_GRES = config["models"].get("gpu_gres", "")
GPU_COUNT = 0 if GPU_GRES else 1
BENCH = config["benchmark"]
#: what every retrieval leaderboard shows beside the methods it was asked for, measured in the
#: same run on the same queries and candidates
BENCHMARK_BASELINES = ("random", "library")
_baselines_missing = [m for m in BENCHMARK_BASELINES if m not in BENCH["methods"]]
if _baselines_missing and BENCH.get("enabled", True):
    BENCH["methods"] = [*_baselines_missing, *BENCH["methods"]]
    print(
        f"benchmark.methods: {', '.join(_baselines_missing)} added (every leaderboard shows "
        "its methods beside these baselines, measured in the same run)",
        file=sys.stderr,
    )
# the benchmark settings that shape the queries and candidate sets; with the harness settings,
# what a metrics record's config names (another method in the list reruns nothing)
BENCH_INPUT_KEYS = (
    "adducts",
    "max_queries",
    "ppm",
    "max_candidates",
    "min_candidates",
    "hard_min_candidates",
    "seed",
)
BENCH_INPUTS = {k: BENCH.get(k) for k in BENCH_INPUT_KEYS}
# library search settings that shape scores (top_k only cuts a run's hit list: the benchmark
# and the FDR curve set their own)
SEARCH_SCORING = {k: v for k, v in config["library_search"].items() if k != "top_k"}


wildcard_constraints:
    sample="[A-Za-z0-9_.-]+",
    method="[A-Za-z0-9_-]+",
    kind="mass_hard|mass|formula",
    variant="standard|spectrum_blind",
    family="ranker|reconstructor|deepsets|fp_ffn",
    fold="train|val|test",
    library="[A-Za-z0-9_-]+",


def training_threads(train, default=2):
    """CPU threads a training job asks for: the intra-op threads its training config sets
    (num_threads; 0: ``default``) plus its data-loading workers (num_workers), so that a
    Slurm CPU request or a local --cores budget matches what the job runs."""
    return (int(train.num_threads) or default) + int(train.num_workers)


def neims_threads(wildcards):
    """NEIMS training: its run's torch threads (num_threads; 0: 2) plus loader workers."""
    run = config["ei_prediction"]["run"]
    train = (
        run.get("train") or {}
    )  # its num_threads, where set, is what the trainer uses
    return (int(train.get("num_threads", run.get("num_threads", 1))) or 2) + int(
        train.get("num_workers", 0)
    )


def retrieval_threads(wildcards):
    from msid.models.config import RunConfig

    cfg = config["models"]["train"].get(wildcards.family, {})
    return training_threads(
        RunConfig.from_dict({"family": wildcards.family, **cfg}).train
    )


def generation_threads(wildcards):
    from msid.generation.config import GenRunConfig

    return training_threads(GenRunConfig.from_dict(config["generation"]["train"]).train)


def embedding_threads(wildcards):
    """LLM4MS training: its num_threads (default 1; 0: 2, never a job of no CPU)."""
    return int(config["ei_search"]["train"]["config"].get("num_threads", 1)) or 2


def peptide_threads(wildcards):
    from msid.models.config import TrainConfig

    train = {"num_threads": 1, **config["peptides"]["train"].get("train", {})}
    return training_threads(
        TrainConfig.from_dict(train)
    )  # PepTRM's default: one thread


def scaled(base):
    """A resource that grows with the attempt number, so a retried job asks for more."""
    return lambda wildcards, attempt: base * attempt


def ei_index_runtime(wildcards, input, attempt):
    """Minutes: embedding every library spectrum dominates (~150 spectra/s on 2 CPU cores,
    ~1,200 spectra per MB of store), so a 1.6M-spectrum in-silico library needs hours.
    """
    size_mb = (
        os.path.getsize(input.library) / 1e6 if os.path.exists(input.library) else 0
    )
    return attempt * int(60 + 0.15 * size_mb)


def env(name):
    """conda env file for a rule group (paths relative to the rule files)."""
    return f"../../envs/{name}.yaml"


def image(name):
    return config["containers"][name]


def run_input(wildcards):
    return samples.loc[wildcards.sample, "path"]


def run_fingerprint(wildcards):
    """The run file's size and modification time, as a param of the rules that read it: a
    file replaced by another (a re-sent transfer, `cp -p` or `rsync -t` keeping an older
    time) reruns its chain, which the newer-than test of the output alone would miss."""
    try:
        st = os.stat(run_input(wildcards))
    except OSError:  # a missing input is named by Snakemake itself
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def training_files(files):
    """Input function for EI training files: one that is missing (the non-commercial set and
    the upstream pool holding its structures are read from outside the repository, ../shared
    by default) is named with what to do, instead of Snakemake's bare MissingInputException.
    """

    def inputs(wildcards):
        for f in files:
            if not os.path.exists(f):
                raise FileNotFoundError(
                    f"EI training data not found: {f}. Point ei_prediction.noncommercial_data, "
                    "ei_prediction.noncommercial_pool and ei_search.train.noncommercial_data "
                    "(CC BY-NC-SA MassBank EI, never copied into the repository) or "
                    "training_data at your copy, or train commercial-use models on the shipped "
                    "open spectra alone: --config 'ei_prediction={commercial_only: true}'"
                )
        return files

    return inputs


def training_file(path):
    """:func:`training_files` for one file: the input function gives its path itself (a
    script reads ``snakemake.input.<name>`` as a path, not as a list of one)."""
    check = training_files([path])

    def inputs(wildcards):
        return check(wildcards)[0]

    return inputs


def candidate_files(wildcards):
    """Input function for the candidate pool files: one that is missing (config/benchmark.yaml
    reads the paper's pool from outside the repository) is named with what to do."""
    files = list(config["candidates"]["sources"].values())
    for f in files:
        if not os.path.exists(f):
            raise FileNotFoundError(
                f"candidate pool file not found: {f}. config/benchmark.yaml ranks the paper's "
                "candidate sets, whose pool also holds the structures of the non-commercial "
                "MassBank EI set (../shared/data/candidate_molecules, never copied into the "
                "repository): point candidates.sources.pool at your copy, or at "
                "resources/candidates/candidate_pool.tsv.gz (the shipped open pool; the "
                "figures then differ from the README's)"
            )
    return files


def model_for_method(wildcards):
    """Shipped model file of a benchmarked method (plain input, not a rule output)."""
    models = METHODS[wildcards.method].models
    return f"{config['models']['dir']}/{models[0]}.safetensors" if models else []


def _check_identify_methods():
    """identify.methods run on small-molecule runs: fail now, naming a method that cannot."""
    check_methods(config["identify"]["methods"], "small_molecule")
    check_method_options(config["identify"].get("method_options", {}))


_check_identify_methods()


def identify_inputs(wildcards):
    """The candidate index and model files the configured identification methods need."""
    methods = config["identify"]["methods"]
    out = {}
    if any(METHODS[m].needs_candidates for m in methods):
        out["index"] = f"{RESULTS}/candidates/index.npz"
    for m in methods:
        for f in METHODS[m].models:
            out[f"model_{f}"] = f"{config['models']['dir']}/{f}.safetensors"
    return out


def queries_for_variant(wildcards):
    if wildcards.variant == "spectrum_blind":
        return f"{RESULTS}/benchmark/queries.spectrum_blind.h5"
    return f"{RESULTS}/benchmark/queries.h5"


def mces_for_variant(wildcards):
    """The shared MCES@1 table, for the variants whose MCES@1 is reported."""
    if BENCH["mces"] and wildcards.variant == "standard":
        return f"{RESULTS}/benchmark/mces_top1.tsv"
    return []


def benchmark_outputs():
    if not BENCH.get("enabled", True):
        return []
    out = expand(
        f"{RESULTS}/leaderboard/leaderboard.{{ext}}", ext=["csv", "md", "tex", "png"]
    )
    if learned_in_benchmark():
        out.append(f"{RESULTS}/leaderboard/training_curves.png")
    return out


def learned_in_benchmark():
    return [m for m in BENCH["methods"] if METHODS[m].models]


def model_histories(wildcards):
    return [
        f"{config['models']['dir']}/{m}.history.json" for m in learned_in_benchmark()
    ]


# Run kinds: what a run of each kind gets, as {name: file under results/runs/{sample}/}. The
# run report takes these files as named inputs. A family's rule file sets the entry of the
# kinds it handles (rules/identify.smk: small_molecule; rules/peptides.smk: peptide;
# rules/ei_search.smk: ei).
RUN_OUTPUTS = {
    "small_molecule": {"identifications": "identifications.tsv"},
    "peptide": {},
    "ei": {},
}
# The library store each run kind is searched against (named in the batch report by its
# content digest, as in each run's mzTab-M); set by the same rule files.
SEARCHED_LIBRARY = {}


def run_kind(wildcards):
    return samples.loc[wildcards.sample, "kind"]


def run_outputs(wildcards):
    """Named per-run outputs of this sample's kind (for `unpack` in report_run)."""
    files = RUN_OUTPUTS[run_kind(wildcards)]
    return {name: f"{RESULTS}/runs/{wildcards.sample}/{f}" for name, f in files.items()}


def report_inputs(wildcards):
    """What a run's report reads: its kind's outputs, the run's MS2 store (not for EI runs,
    whose spectra are in their EI store) and the ESI library (small-molecule mirror plots
    only), so that an EI or peptide batch never builds the ESI library."""
    kind = run_kind(wildcards)
    out = run_outputs(wildcards)
    if kind != "ei":
        out["spectra"] = f"{RESULTS}/runs/{wildcards.sample}/spectra.h5"
    if kind == "small_molecule":
        out["library"] = f"{RESULTS}/library/{LIB}.h5"
    return out


# Leaderboard files of the other families (peptides, EI, ...): each family's rule file
# appends the files its benchmark rules write, and `all` builds them when the benchmark is on.
FAMILY_BENCHMARK_OUTPUTS = []


def batch_report_inputs(wildcards):
    """Every run's files the batch report reads (and links), plus the FDR curve if built."""
    out = {}
    for sample, kind in samples["kind"].items():
        out[f"report_{sample}"] = f"{RESULTS}/runs/{sample}/report.html"
        if kind != "ei":  # an EI run's spectra are in its EI store (RUN_OUTPUTS)
            out[f"spectra_{sample}"] = f"{RESULTS}/runs/{sample}/spectra.h5"
        for name, f in RUN_OUTPUTS[kind].items():
            out[f"{name}_{sample}"] = f"{RESULTS}/runs/{sample}/{f}"
        if kind in SEARCHED_LIBRARY:
            out[f"library_{kind}"] = SEARCHED_LIBRARY[kind]
    if BENCH.get("enabled", True):
        out["fdr_curve"] = f"{RESULTS}/benchmark/fdr_curve.png"
    return out


def all_outputs():
    out = []
    for sample, kind in samples["kind"].items():
        out += [f"{RESULTS}/runs/{sample}/{f}" for f in RUN_OUTPUTS[kind].values()]
        out.append(f"{RESULTS}/runs/{sample}/report.html")
    if len(samples):
        out.append(f"{RESULTS}/batch_report.html")
    if BENCH.get("enabled", True):
        out += FAMILY_BENCHMARK_OUTPUTS
    return out + benchmark_outputs()
