"""The ``msid`` command line. Every subcommand is a thin shell over the package."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import NoReturn

from msid import __version__
from msid.cli_checks import (
    fraction,
    port_number,
    positive_float,
    positive_int,
    spectrum_limit,
    top_k,
)
from msid.method_kinds import ALL_METHODS


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help names its default itself
    or there is none to name."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", argparse.SUPPRESS):
            return text
        return super()._get_help_string(action) or text


#: `msid identify`'s defaults of the options that only some calls use (one place: the parser
#: and the check that names options a call does not use both read them)
IDENTIFY_DEFAULTS = {"candidate_kind": "mass", "ppm": 10.0, "max_candidates": 256,
                     "fdr": 0.05}  # msid.rankings.CONFIDENT_FDR


def _add_identify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help="rank molecules for query spectra",
                       description="Rank candidate molecules (or library hits) for each query.")
    p.add_argument("queries", help="mzML/mzXML/MGF/MSP (gz allowed) or an msid store (.h5)")
    p.add_argument("--library", help="spectral library: msid store (.h5) or MGF/MSP; default "
                                     "for method 'library': the shipped MassBank library, "
                                     "converted once and cached in $MSID_CACHE")
    p.add_argument("--candidates", help="MassSpecGym candidates JSON (keyed by the query's "
                                        "SMILES) or TSV with columns query_id, smiles")
    p.add_argument("--pool", help="candidate index (.npz from `msid build-index`); default: the "
                                  "shipped pool, built once and cached in $MSID_CACHE")
    p.add_argument("--method", default="library",
                   help=f"identification method: {', '.join(ALL_METHODS)} (default: library; "
                        "`msid methods` lists those installed, plugins included)")
    p.add_argument("--model", help="model file for learned methods")
    p.add_argument("--candidate-kind", choices=["mass", "formula"],
                   default=IDENTIFY_DEFAULTS["candidate_kind"],
                   help="pool candidates by the query's precursor m/z (--ppm) or by its formula "
                        "(its structure's, else an MGF FORMULA= line; a query with neither "
                        "gets a row saying so)")
    p.add_argument("--ppm", type=positive_float, default=IDENTIFY_DEFAULTS["ppm"],
                   help="window for pool candidates: a candidate's ion (as the query's adduct) "
                        "within this many ppm of the precursor m/z (default: 10)")
    p.add_argument("--max-candidates", type=positive_int,
                   default=IDENTIFY_DEFAULTS["max_candidates"],
                   help="candidates per query at most (default: 256)")
    p.add_argument("--top-k", type=top_k, default=20,
                   help="ranks kept per query (default: 20; 0: all; EI methods: up to 10,000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the candidate order, the random baseline and the decoy "
                        "spectra behind the q-values")
    p.add_argument("--out", required=True, help="Rankings TSV, or mzTab-M 2.0 when it ends "
                                                "in .mztab")
    p.add_argument("--compounds", help="also write the library hits grouped by structure "
                                       "(one row per compound; method 'library')")
    p.add_argument("--fdr", type=fraction, default=IDENTIFY_DEFAULTS["fdr"],
                   help="q-value up to which a library hit is confident (--compounds; "
                        "default 0.05)")


EI_ALL_HITS = 10_000  # what --top-k 0 ("all") fetches from an EI library per query


def _library_usable(store: Path, name: str, ei: bool = False) -> bool:
    """Say what a library file lost (quarantined records, by reason) and whether any record
    is left to search (``ei``: an EI library, whose records need no precursor or structure)."""
    from collections import Counter

    from msid.store import SpectrumStore, damage_notes, lost_records

    with SpectrumStore(store) as st:
        n, reasons = len(st), Counter(lost_records(st.quarantine)["reason"].astype(str))
        damage = damage_notes(st.quarantine)
        # two columns, not the whole table (which the search reads again)
        no_structure = int(((st.column("smiles").astype(str) == "")
                            & (st.column("inchikey").astype(str) == "")).sum()) if n else 0
    if no_structure:
        print(f"msid identify: library {name}: {no_structure} of {n} record(s) have no "
              "structure (no SMILES or InChIKey): their matches name the library record only",
              file=sys.stderr)
    if reasons:
        top = "; ".join(f"{c} x {r}" for r, c in reasons.most_common(3))
        more = f"; {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
        print(f"msid identify: library {name}: {sum(reasons.values())} of "
              f"{n + sum(reasons.values())} record(s) quarantined ({top}{more})",
              file=sys.stderr)
    for note in damage:
        print(f"msid identify: library {name} is damaged: {note}", file=sys.stderr)
    if not n:
        need = "peaks" if ei else "peaks, a precursor m/z and a parseable SMILES"
        print(f"msid identify: error: library {name} has no usable record (a library record "
              f"needs {need})", file=sys.stderr)
    return n > 0


def _uses_model(method: str) -> bool:
    """Whether ``method`` loads a model file (``--model``): the learned retrieval and generation
    methods and the EI embedding; an installed package's method is given the benefit."""
    from msid.method_kinds import METHODS

    spec = METHODS.get(method)  # msid's own methods; a package's may read --model however
    return spec is None or bool(spec.models) or method.startswith("ei-embedding")


#: what ``msid identify --method`` would be asked by someone who wants peptide sequencing
PEPTIDE_METHODS = ("peptrm", "dp")


def _ignored_options(a: argparse.Namespace, makes_candidates: bool) -> list[str]:
    """Options given that this call of ``msid identify`` does not use, with why."""
    out = []
    if a.pool and a.candidates:
        out.append("--pool (--candidates gives each query's candidates)")
    if a.fdr != IDENTIFY_DEFAULTS["fdr"] and not a.compounds:
        out.append("--fdr (it sets which --compounds are confident)")
    if a.model and not _uses_model(a.method):
        out.append(f"--model (method '{a.method}' uses no model)")
    if not makes_candidates:
        given = ["--" + k.replace("_", "-") for k in ("ppm", "max_candidates", "candidate_kind")
                 if getattr(a, k) != IDENTIFY_DEFAULTS[k]]
        if given:
            out.append(f"{', '.join(given)} (method '{a.method}' ranks no pool candidates: "
                       "give --pool or --candidates, or a method that ranks candidates)")
    return out


def cmd_identify(a: argparse.Namespace) -> int:
    from msid.candidate_sets import CandidateFileReport, candidates_for_queries, read_candidate_file
    from msid.cli_checks import check_input, check_model, check_output
    from msid.identify import (
        cache_dir,
        cached_index,
        cached_library,
        default_library,
        identify_to_file,
        load_queries,
        temp_workdir,
    )
    from msid.io.errors import InputFileError
    from msid.methods import MethodResources, load_library, make_method
    from msid.store import lost_records

    if a.method in PEPTIDE_METHODS:
        print(f"msid identify: error: '{a.method}' sequences peptides: use 'msid denovo-peptides "
              f"QUERIES --method {a.method} --out OUT.tsv'", file=sys.stderr)
        return 2
    ei = a.method.startswith("ei-")  # EI library matching: nominal-mass spectra, no precursor
    check_input(a.queries, "queries")  # user mistakes surface before any work
    for option, path in (("--library", a.library), ("--pool", a.pool)):
        if path:
            check_input(path, option)
    if a.model:  # its card too, before the queries are read
        check_model(a.model)
    if a.method.startswith("ei-embedding"):
        from msid.cli_checks import licence_notice
        from msid.ei.methods import default_model

        licence_notice(a.model or default_model(), "msid identify")
    if a.pool:
        from msid.chem.candidates import check_index_file

        try:
            check_index_file(a.pool)
        except InputFileError as e:
            raise InputFileError(f"--pool {a.pool}", e.problem) from None
    inputs = {"queries": a.queries, "--library": a.library, "--pool": a.pool,
              "--model": a.model, "--candidates": a.candidates}
    check_output(a.out, inputs=inputs)
    if Path(a.out).suffix.lower() == ".csv":
        print(f"msid identify: warning: {a.out} will hold tab-separated text (msid writes TSV, "
              "or mzTab-M for .mztab)", file=sys.stderr)
    if a.compounds:
        if a.method != "library":
            print("msid identify: error: --compounds groups library hits: it needs "
                  "--method library", file=sys.stderr)
            return 2
        check_output(a.compounds, "--compounds", inputs={**inputs, "--out": a.out})
    table = read_candidate_file(a.candidates) if a.candidates else None
    report = CandidateFileReport(a.candidates or "")
    with temp_workdir() as work:
        if ei:
            from msid.ei.search import load_ei_queries

            q = load_ei_queries(a.queries, work, warn=lambda m: print(
                f"msid identify: warning: {m}", file=sys.stderr))
        else:
            q = load_queries(a.queries, work, n_jobs=2, warn=lambda m: print(
                f"msid identify: warning: {m}", file=sys.stderr))
        n_bad = len(lost_records(q.quarantine))  # records (a damaged file's note is none)
        if not len(q):  # nothing to rank: no table, which a script could take for a result
            _tell_quarantined(q, n_bad, ei, "0 queries to rank")
            print(f"msid identify: error: no query left to rank in {a.queries}"
                  + (f" (all {n_bad} input records quarantined, reasons above)" if n_bad
                     else ""), file=sys.stderr)
            q.close()
            return 1
        library = None
        if ei and a.library:  # converted (and cached) here, so that its losses are told
            from msid.ei.search import library_store_path

            with _named_as("--library", a.library):
                lib_store = library_store_path(a.library)
            if not _library_usable(lib_store, a.library, ei=True):
                return 2
        if not ei and (a.library or a.method == "library"):
            with _named_as("--library", a.library):
                store = cached_library(a.library)
            if not _library_usable(store, a.library or "the shipped library"):
                return 2
            # a store msid cached from a library file gets its search index cached beside it
            # every hit the user asked for (--top-k 0: all), one row per structure
            library = load_library(str(store), config={"top_k": a.top_k},
                                   cache=store.parent == cache_dir(), n_jobs=2)
        # EI hits fetched per query: at least 50 (re-ranked to one row per structure); for
        # --top-k 0 up to 10,000 (an index search returns queries x hits scores at once)
        hits = max(a.top_k, 50) if a.top_k > 0 else EI_ALL_HITS
        options = {"ei_library": a.library, "hits": hits} if ei else {}
        if a.method == "denovo" and a.top_k > 0:  # de novo generates as many as asked
            options["top_k"] = a.top_k
        method = make_method(a.method, MethodResources(library=library, model_path=a.model,
                                                       seed=a.seed, options=options))
        candidates = None
        makes_candidates = bool(a.candidates or method.needs_candidates or a.pool)
        for what in _ignored_options(a, makes_candidates):
            print(f"msid identify: warning: not used: {what}", file=sys.stderr)
        if makes_candidates:
            index = None if a.candidates else cached_index(a.pool)
            candidates = candidates_for_queries(
                q, list(range(len(q))), index=index, candidate_file=table,
                kind=a.candidate_kind, ppm=a.ppm, max_n=a.max_candidates, seed=a.seed,
                report=report)
        mztab = Path(a.out).suffix.lower() == ".mztab"
        ranked_path = Path(work) / "identifications.tsv" if mztab else a.out
        identify_to_file(method, q, ranked_path, candidates, top_k=a.top_k,
                         candidate_source="file" if a.candidates else
                         "pool-formula" if a.candidate_kind == "formula" else "pool",
                         seed=a.seed)
        if mztab:  # the Rankings table written as mzTab-M, every row of it
            from msid.export.mztab import write_mztab_m

            predicted: set[str] = set()
            if ei:  # matches to in-silico spectra are MSI level 3, as in the DAG's export
                from msid.ei.predicted import predicted_ids

                predicted = predicted_ids(method.library.store_path)
            searched = a.library or (default_library() if a.method == "library" else None)
            write_mztab_m(ranked_path, q.path, a.out, sample=Path(a.queries).name.split(".")[0],
                          top_k=a.top_k or 1_000_000, ei=ei, location=a.queries,
                          predicted=predicted, library_file=searched)
        if a.compounds:
            from msid.compounds import write_compound_table

            found = write_compound_table(ranked_path, a.compounds, fdr=a.fdr)
            rule = found.attrs.get("confident_rule", "")
            print(f"msid identify: {len(found)} compounds ({int(found['confident'].sum())} "
                  f"confident: {rule}) -> {a.compounds}", file=sys.stderr)
        _tell_quarantined(q, n_bad, ei, f"{len(q)} queries ranked with '{a.method}' -> {a.out}")
        if ei:
            from msid.ei.spectrum_kind import ms2_like_warning

            warning = ms2_like_warning(q.metadata)
            if warning:
                print(f"msid identify: warning: {warning}", file=sys.stderr)
        for line in report.lines():  # what the candidate file held that no query could use
            print(f"msid identify: warning: {line}", file=sys.stderr)
        q.close()
    return 0


@contextmanager
def _named_as(option: str, path: str | None):
    """A file that cannot be read is named with the option that gave it (``--library x.mgf:
    file is empty``), so that a library is not taken for the queries."""
    from msid.io.errors import InputFileError

    try:
        yield
    except InputFileError as e:
        if path and os.path.abspath(e.path) == os.path.abspath(path):
            raise InputFileError(f"{option} {path}", e.problem) from None
        raise


def _tell_quarantined(q, n_bad: int, ei: bool, head: str) -> None:
    """``head``, then every quarantined input record with its reason (stderr); when every
    query was lost for want of a precursor (GC-MS spectra), which methods take them."""
    print(f"msid identify: {head}" + (f"; {n_bad} input record(s) quarantined:" if n_bad else ""),
          file=sys.stderr)
    from msid.report.quarantine import all_lost_for_want_of_precursor
    from msid.store import is_kept_note, kept_notes

    said = q.quarantine[~is_kept_note(q.quarantine["reason"])]  # records, a file's damage
    for _, r in said.iterrows():
        print(f"  {r.source_file}\t{r.record_id}\t{r.reason}", file=sys.stderr)
    for _, r in kept_notes(q.quarantine).iterrows():  # stored records: a note each
        print(f"msid identify: note: {r.source_file}\t{r.record_id}\t{r.reason}",
              file=sys.stderr)

    if not ei and all_lost_for_want_of_precursor(len(q), q.quarantine):
        print("msid identify: no query has a precursor m/z: for EI (GC-MS) spectra use an "
              "EI method (--method ei-weighted-cosine, ei-embedding, ...)", file=sys.stderr)


def cmd_convert(a: argparse.Namespace) -> int:
    from msid.cli_checks import check_input, check_output
    from msid.convert import convert_file

    check_input(a.input, "input")
    check_output(a.out, inputs={"input": a.input}, suffixes=(".h5",),
                 what="an msid spectrum store")
    stats = convert_file(a.input, a.out, n_jobs=a.jobs)
    print(json.dumps({"read": stats.read, "stored": stats.stored,
                      "quarantined": dict(stats.quarantined), "renamed": stats.renamed,
                      "damaged": stats.damaged, "kept_without_a_value": dict(stats.noted)}))
    if stats.noted:  # stored, each without one value it stated (a note row says which)
        said = "; ".join(f"{n} x {r}" for r, n in stats.noted.most_common())
        print(f"msid convert: {sum(stats.noted.values())} record(s) of {a.input} stored "
              f"without a value it stated that could not be used ({said})", file=sys.stderr)
    if stats.damaged:  # the spectra before the damage are stored; the rest are lost
        print(f"msid convert: warning: {a.input} is damaged: {stats.damaged}", file=sys.stderr)
    if not stats.stored:  # the store holds the quarantine table (reasons), no spectrum
        why = "; ".join(f"{n} x {r}" for r, n in stats.quarantined.most_common(5))
        if len(stats.quarantined) > 5:
            why += f"; +{len(stats.quarantined) - 5} more reasons"
        print(f"msid convert: error: no spectrum of {a.input} could be stored"
              + (f" (quarantined: {why})" if why else "")
              + f"; {a.out} holds the quarantine table, one row per record", file=sys.stderr)
        return 1
    return 0


def cmd_preprocess(a: argparse.Namespace) -> int:
    from msid.cli_checks import check_input, check_output, check_store, read_yaml_config
    from msid.preprocess import PreprocessConfig, preprocess_store

    check_input(a.store, "store")
    cfg = PreprocessConfig.from_dict(read_yaml_config(a.config, allowed=PreprocessConfig))
    check_store(a.store)
    check_output(a.out, inputs={"store": a.store, "--config": a.config}, suffixes=(".h5",),
                 what="an msid spectrum store")
    stats = preprocess_store(a.store, a.out, cfg, n_jobs=a.jobs)
    print(json.dumps({"read": stats.read, "kept": stats.kept,
                      "quarantined": dict(stats.quarantined)}))
    return 0


def cmd_build_index(a: argparse.Namespace) -> int:
    from msid.chem.candidates import PoolSource, build_index
    from msid.cli_checks import check_input
    from msid.identify import default_pool_sources

    bad = [s for s in a.source or [] if "=" not in s or not all(s.split("=", 1))]
    if bad:
        print(f"msid build-index: error: --source takes NAME=FILE (e.g. pool=molecules.tsv), "
              f"not {bad[0]!r}", file=sys.stderr)
        return 2
    sources = ([PoolSource(Path(s.split("=", 1)[1]), s.split("=", 1)[0]) for s in a.source]
               if a.source else default_pool_sources())
    for s in sources:
        check_input(s.path, "--source")
    meta = build_index(sources, a.out, n_jobs=a.jobs,
                       log=lambda m: print(m, file=sys.stderr))  # stdout: the JSON alone
    print(json.dumps({k: meta[k] for k in ("n_molecules", "n_unparseable", "build_seconds",
                                           "digest")}))
    return 0


RETRIEVAL_FAMILIES = ("ranker", "reconstructor", "deepsets", "fp_ffn")
#: what each family trains from (options that must be given), for ``msid train``
TRAIN_INPUTS = {**{f: ("train", "val", "index") for f in RETRIEVAL_FAMILIES},
                "denovo": ("train", "val", "index"), "peptrm": ("data",), "llm4ms": ("data",)}


def _train_sizes(family: str) -> tuple[str, ...]:
    """The preset sizes ``--size`` takes for ``family``."""
    if family in RETRIEVAL_FAMILIES:
        from msid.models.config import SIZES
    elif family == "denovo":
        from msid.generation.config import SIZES
    elif family == "peptrm":
        from msid.peptides.model import SIZES
    else:
        return ()
    return tuple(SIZES)


#: the top-level keys of each family's ``msid train --config`` (retrieval and de novo configs
#: name their own unknown keys)
TRAIN_CONFIG_KEYS = {"peptrm": {"size", "model", "train", "curriculum", "folds"},
                     "llm4ms": {"embedding", "train"}}


def cmd_train(a: argparse.Namespace) -> int:
    from msid.cli_checks import check_input, check_output, read_yaml_config

    missing = [f"--{o}" for o in TRAIN_INPUTS[a.family] if not getattr(a, o)]
    if missing:
        print(f"msid train: error: {a.family} trains from {' and '.join(missing)} "
              f"(see 'msid train -h')", file=sys.stderr)
        return 2
    for option in ("train", "val", "test", "index"):
        if getattr(a, option, None):
            check_input(getattr(a, option), f"--{option}")
    for path in a.data or []:
        check_input(path, "--data")
    inputs = {f"--{o}": getattr(a, o, None) for o in ("train", "val", "test", "index")}
    inputs |= {f"--data {i + 1}": p for i, p in enumerate(a.data or [])}
    inputs["--config"] = a.config
    check_output(a.out, inputs=inputs, suffixes=(".safetensors",),
                 what="the model card is written beside it as .json", shipped_ok=True)
    check_output(Path(a.out).with_suffix(".json"), "model card", inputs=inputs, shipped_ok=True)
    config = read_yaml_config(a.config, allowed=TRAIN_CONFIG_KEYS.get(a.family))
    if a.size:
        sizes = _train_sizes(a.family)
        if a.size not in sizes:
            print(f"msid train: error: --size {a.size}: {a.family} sizes are "
                  f"{', '.join(sizes) or 'none (use --config)'}", file=sys.stderr)
            return 2
        config["size"] = a.size
    if a.family in RETRIEVAL_FAMILIES:
        from msid.models import train_model

        metrics = train_model(a.family, a.train, a.val, a.index, config, a.out)
    elif a.family == "denovo":
        from msid.generation.training import train_denovo

        metrics = train_denovo(a.train, a.val, a.test, a.index, config, a.out)
    elif a.family == "peptrm":
        from msid.peptides.training import train_peptrm

        metrics = train_peptrm(a.data, config, a.out)
    else:  # llm4ms
        from msid.ei.embedding import EmbeddingConfig
        from msid.ei.embedding_train import EmbeddingTrainConfig, train_from_files

        out = Path(a.out)
        metrics = train_from_files(a.data, out, EmbeddingConfig.from_dict(config.get("embedding")),
                                   EmbeddingTrainConfig.from_dict(config.get("train")),
                                   workdir=out.parent / f"{out.stem}.work")
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from msid.cli_checks import check_input, check_model
    from msid.gui.app import SearchApp, ServeConfig, serve, with_default_library

    libraries: dict[str, str] = {}
    for p in a.library or []:  # a library that is not there fails now, not at the first search
        check_input(p, "--library")
        label = Path(p).name
        if label in libraries:  # the page offers libraries by file name
            label = str(Path(p).resolve())
        libraries[label] = p
    if a.model:  # the EI embedder the searches use: checked now, not at the first search
        check_model(a.model, "llm4ms")
    from msid.cli_checks import licence_notice
    from msid.ei.methods import default_model

    licence_notice(a.model or default_model(), "msid serve")
    cfg = ServeConfig(host=a.host, port=a.port, libraries=libraries, model_path=a.model,
                      max_upload_bytes=int(a.max_upload_mb * 1e6))
    # read every library now (the shipped one when none is named): one that is not a
    # spectrum file stops the server here
    SearchApp(with_default_library(cfg)).load_libraries(
        lambda line: print(line, file=sys.stderr, flush=True))
    serve(cfg)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from msid.cli_checks import check_output, check_store
    from msid.export.spectra import export_format, export_losses, export_spectra
    from msid.io.errors import InputFileError
    from msid.store import SpectrumStore

    check_store(a.store)
    check_output(a.out, inputs={"store": a.store})
    with SpectrumStore(a.store) as st:
        if not len(st):  # an empty file is no library: msid convert would refuse it
            raise InputFileError(a.store, "holds no spectra: nothing to export")
    suffix = Path(a.out).suffix.lower().lstrip(".")
    if a.format and suffix in ("mgf", "msp") and suffix != a.format:
        print(f"msid export: warning: {a.out} will hold {a.format.upper()} text",
              file=sys.stderr)
    n = export_spectra(a.store, a.out, a.format or "")
    print(f"msid export: {n} spectra -> {a.out}", file=sys.stderr)
    for line in export_losses(a.store, export_format(a.out, a.format or "")):
        print(f"msid export: warning: {line}", file=sys.stderr)
    return 0


def cmd_methods(a: argparse.Namespace) -> int:
    from msid.method_kinds import SPEC_ENTRY_POINT_GROUP, method_table, spec_errors
    from msid.methods import available, plugin_errors, registered_by

    built, declared = available(), method_table()
    print("\n".join(built))
    for plugin, why in plugin_errors().items():
        print(f"msid methods: plugin {plugin} not loaded: {why}", file=sys.stderr)
    for spec, why in spec_errors().items():
        print(f"msid methods: method spec {spec} left out: {why}", file=sys.stderr)
    for m in sorted(set(built) - set(declared)):
        where = ("an entry in msid.method_kinds.METHODS" if registered_by(m).startswith("msid.")
                 else f"its MethodSpec (entry-point group {SPEC_ENTRY_POINT_GROUP})")
        print(f"msid methods: {m} runs with msid identify; the workflow needs {where}",
              file=sys.stderr)
    for m in sorted(set(declared) - set(built)):
        print(f"msid methods: {m} is declared for the workflow but no loaded module registers "
              "it", file=sys.stderr)
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from msid.bench import run_bench
    from msid.resources import resource

    a.library = a.library or str(resource("massbank_esi", "massbank_esi_msms.mgf.gz"))

    run_bench(a)
    return 0


def _add_denovo_peptides(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("denovo-peptides", help="de novo peptide sequencing (PepTRM or DP)",
                       description="Peptide sequences for MS/MS spectra without a database.")
    p.add_argument("queries", help="mzML/mzXML/MGF (gz allowed) or an msid store (.h5)")
    p.add_argument("--out", action="append", required=True,
                   help="output file, repeatable: .tsv (query_id, rank, sequence, score, "
                        "precursor_mz_error_ppm) and/or .mztab (mzTab 1.0 PSMs)")
    p.add_argument("--method", choices=PEPTIDE_METHODS, default="peptrm",
                   help="PepTRM (learned, default) or the spectrum-graph DP baseline")
    p.add_argument("--model", help="PepTRM model file (default: the shipped one)")
    p.add_argument("--decoding", choices=["beam", "greedy"], default="beam")
    p.add_argument("--beam-size", type=positive_int, default=10)
    p.add_argument("--top-n", type=positive_int, default=1,
                   help="sequences per spectrum, ranked (beam search: the best distinct ones "
                        "that match the precursor mass; default: 1)")
    p.add_argument("--ppm", type=positive_float, default=50.0, help="precursor mass tolerance")
    p.add_argument("--max-spectra", type=spectrum_limit, default=0,
                   help="first N spectra only (0: all)")
    p.add_argument("--metrics", help="with an MGF whose records carry SEQ=: the metrics of the "
                                     "rank-1 sequences against them, as JSON (they are printed "
                                     "either way)")


def _score_labels(a: argparse.Namespace, df, beyond: set[str]) -> None:
    """An MGF with SEQ= lines: the rank-1 sequences scored against them (stderr, --metrics);
    the spectra in ``beyond`` (past --max-spectra) were not sequenced and are not scored."""
    import json

    from msid.atomic import write_text
    from msid.peptides.labelled import is_mgf, mgf_sequences, score_labelled

    labels = mgf_sequences(a.queries) if is_mgf(a.queries) else {}
    n_beyond = sum(k in beyond for k in labels)
    labels = {k: v for k, v in labels.items() if k not in beyond}
    if n_beyond:
        print(f"msid denovo-peptides: {n_beyond} labelled spectra past --max-spectra "
              f"{a.max_spectra} were not sequenced: not scored", file=sys.stderr)
    if not labels:
        if a.metrics:
            print(f"msid denovo-peptides: no --metrics: no record of {a.queries} carries SEQ=",
                  file=sys.stderr)
        return
    m = score_labelled(df, labels)
    print(f"msid denovo-peptides: {int(m['labelled'])} spectra carry SEQ="
          + (f" ({int(m['unreadable_labels'])} outside the vocabulary, not scored)"
             if m["unreadable_labels"] else "")
          + (f"; {int(m['without_sequence'])} of them got no sequence (quarantined, or no "
             "mass match), each a miss" if m["without_sequence"] else "")
          + (f"; rank 1 against them: peptide recall {m['peptide_recall']:.3f}, AA precision "
             f"{m['aa_precision']:.3f}, AA recall {m['aa_recall']:.3f} (Casanovo's conventions:"
             " residues matched by mass, I = L; a spectrum without a sequence is a miss)"
             if "peptide_recall" in m else ""), file=sys.stderr)
    if a.metrics:
        write_text(a.metrics, json.dumps({"method": a.method, "input": str(a.queries), **m},
                                         indent=2) + "\n")


def cmd_denovo_peptides(a: argparse.Namespace) -> int:
    import numpy as np

    from msid.cli_checks import check_input, check_model, check_output
    from msid.identify import load_queries, temp_workdir
    from msid.peptides.denovo import DecodeConfig, denovo_run, sequenced_rows, shipped_model
    from msid.store import lost_records

    outs = [Path(o) for o in a.out]
    bad = [str(o) for o in outs if o.suffix.lower() not in (".tsv", ".mztab")]
    if bad:
        raise ValueError(f"--out must end in .tsv or .mztab: {bad}")
    suffixes = [o.suffix.lower() for o in outs]
    if len(set(suffixes)) < len(suffixes):
        raise ValueError("--out takes at most one .tsv and one .mztab file, not "
                         f"{', '.join(map(str, outs))}")
    check_input(a.queries, "queries")
    if a.model and a.method != "dp":  # dp reads none (said below)
        check_model(a.model, "peptrm")
    for o in outs:
        check_output(o, inputs={"queries": a.queries, "--model": a.model,
                                **{f"--out {p}": p for p in outs if p is not o}})
    if a.metrics:
        check_output(Path(a.metrics), "--metrics",
                     inputs={"queries": a.queries, "--model": a.model,
                             **{f"--out {p}": p for p in outs}})
    tsv = next((o for o in outs if o.suffix.lower() == ".tsv"), None)
    mztab = next((o for o in outs if o.suffix.lower() == ".mztab"), None)
    if a.method == "dp":  # the DP baseline reads no model and decodes no network
        given = [f"--{k.replace('_', '-')}" for k, default in
                 (("model", None), ("decoding", "beam"), ("beam_size", 10))
                 if getattr(a, k) != default]
        if given:
            print(f"msid denovo-peptides: warning: not used: {', '.join(given)} (--method dp "
                  "reads no model)", file=sys.stderr)
    cfg = DecodeConfig(method=a.decoding, beam_size=a.beam_size, ppm=a.ppm,
                       max_spectra=a.max_spectra, top_n=a.top_n)
    with temp_workdir() as work:
        q = load_queries(a.queries, work)
        store_path, lost = q.path, q.quarantine
        # spectra --max-spectra leaves out: not sequenced, so not scored against labels
        pmz = q.column("precursor_mz")
        beyond = set(q.column("native_id").astype(str)[np.setdiff1d(
            sequenced_rows(pmz), sequenced_rows(pmz, a.max_spectra))])
        q.close()
        df = denovo_run(store_path, a.model or shipped_model(), cfg,
                        tsv=tsv or Path(work) / "denovo.tsv", mztab=mztab,
                        run_location=a.queries, method=a.method,
                        dp_cfg={"ppm": cfg.ppm, "isotopes": cfg.isotopes},  # --ppm for dp too
                        log=lambda m: print(f"msid denovo-peptides: {m}", file=sys.stderr))
    n_lost = len(lost_records(lost))  # records (a damaged file's note is none)
    print(f"msid denovo-peptides: {len(df)} sequences -> {', '.join(map(str, outs))}"
          + (f"; {n_lost} input record(s) quarantined:" if n_lost else ""),
          file=sys.stderr)
    for _, r in lost.iterrows():
        print(f"  {r.source_file}\t{r.record_id}\t{r.reason}", file=sys.stderr)
    if not len(df):  # exit 1: a table of no sequence is not a result a script may take
        print(f"msid denovo-peptides: error: no sequence for any spectrum of {a.queries}"
              + (" (reasons above)" if n_lost else ""), file=sys.stderr)
        return 1
    _score_labels(a, df, beyond)
    return 0


def _add_predict_ei(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict-ei", help="predicted EI spectra of molecules (in-silico library)",
                       description="EI mass spectra predicted from structures (NEIMS v2).")
    p.add_argument("smiles_file", help="one SMILES a line (optionally a name after it), or a "
                                       "TSV/CSV with a smiles column (and name); gz allowed")
    p.add_argument("--out", required=True, help="LIB.msp (NIST MSP) or LIB.h5 (spectrum store)")
    p.add_argument("--model", help="NEIMS model file (default: the shipped student)")


def cmd_predict_ei(a: argparse.Namespace) -> int:
    from msid.cli_checks import check_input, check_model, check_output
    from msid.ei.insilico import predict_file

    check_input(a.smiles_file, "smiles_file")
    if a.model:
        check_model(a.model, "neims")
    check_output(a.out, inputs={"smiles_file": a.smiles_file, "--model": a.model},
                 suffixes=(".msp", ".h5"), what="NIST MSP or an msid spectrum store")
    from msid.cli_checks import licence_notice
    from msid.ei.insilico import default_model

    licence_notice(a.model or default_model(), "msid predict-ei")
    res = predict_file(a.smiles_file, a.out, a.model, progress=sys.stderr.isatty())
    for line, smi, reason in res["rejected"]:
        print(f"msid predict-ei: line {line} skipped ({smi!r}): {reason}", file=sys.stderr)
    print(f"msid predict-ei: {res['predicted']} spectra -> {a.out} in {res['seconds']:.1f} s"
          + (f"; {len(res['rejected'])} line(s) skipped" if res["rejected"] else ""),
          file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with msid's one error line: no usage block, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="msid", description=__doc__)
    parser.add_argument("--version", action="version", version=f"msid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_identify(sub)
    p = sub.add_parser("convert", help="raw run or library file -> spectrum store",
                       description="Read a run or library file into an msid spectrum store "
                       "(HDF5), unfiltered; bad records are quarantined in the store with "
                       "their reason. Prints the counts as JSON.")
    p.add_argument("input", help="mzML, mzXML, MGF or MSP file (gzip allowed)")
    p.add_argument("--out", required=True, help="the spectrum store to write (.h5)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="worker processes for parsing (default: 1)")
    p = sub.add_parser("preprocess", help="spectrum store -> filtered spectrum store",
                       description="Clean a spectrum store with the matchms filters msid uses "
                       "(metadata harmonisation, peak filters, structure standardisation); "
                       "records that fail are quarantined with their reason.")
    p.add_argument("store", help="an msid spectrum store (.h5, from msid convert)")
    p.add_argument("--out", required=True, help="the cleaned store to write (.h5)")
    p.add_argument("--config", help="YAML with PreprocessConfig fields (default: msid's)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="worker processes (default: 1)")
    p = sub.add_parser("build-index", help="build the candidate-pool index",
                       description="Build the candidate index (neutral masses, formulas, "
                       "standardised SMILES) that ranking methods draw candidates from by "
                       "precursor mass or formula. Molecules that do not parse are counted.")
    p.add_argument("--source", action="append", metavar="NAME=PATH",
                   help="molecule file: TSV/CSV with a smiles column (formula, "
                   "monoisotopic_mass, inchikey optional; repeatable); default: the shipped "
                   "pool and MOSES decoys")
    p.add_argument("--out", required=True, help="the index to write (.npz)")
    p.add_argument("--jobs", type=positive_int, default=2,
                   help="worker processes (default: 2)")
    p = sub.add_parser(
        "train", help="train one model family (safetensors + model card)",
        description="Train one model family from the command line (the DAG's `models` target "
                    "trains them all). Retrieval families and de novo train on structure-"
                    "labelled stores (--train, --val, --index); PepTRM on annotated peptide "
                    "MGF and the LLM4MS embedder on EI library files (--data, split by "
                    "sequence or structure). GLMR (it needs the de novo model and the Ranker) "
                    "and NEIMS (it needs ALFABET's BDEs from their own environment) train "
                    "through their Snakemake rules: train_glmr, ei_prediction_train.")
    p.add_argument("family", choices=list(TRAIN_INPUTS))
    p.add_argument("--train", help="training store (.h5, structure-labelled)")
    p.add_argument("--val", help="validation store (.h5)")
    p.add_argument("--test", help="denovo: test store whose structures pretraining leaves out")
    p.add_argument("--index", help="candidate index (.npz): hard negatives and validation "
                                   "candidate sets (retrieval), pretraining molecules (denovo)")
    p.add_argument("--data", action="append", help="peptrm: annotated peptide MGF; llm4ms: "
                                                   "EI library file (MSP/MGF/store); repeatable")
    p.add_argument("--config", help="YAML overrides, e.g. {size, model: {...}, train: {...}} "
                                    "(llm4ms: {embedding: {...}, train: {...}})")
    p.add_argument("--size", help="preset size (tiny, or the family's larger preset)")
    p.add_argument("--out", required=True, help="model file (.safetensors); card beside it")
    sub.add_parser("methods", help="list identification methods",
                   description="The methods msid identify takes (--method), one a line; a "
                               "warning on stderr for each method the workflow cannot run. De "
                               f"novo peptide sequencing ({', '.join(PEPTIDE_METHODS)}) runs "
                               "with msid denovo-peptides --method.")
    p = sub.add_parser("export", help="spectrum store -> MGF or MSP (cleaned spectra)")
    p.add_argument("store", help="msid spectrum store (.h5), e.g. results/runs/RUN/spectra.h5")
    p.add_argument("--out", required=True, help="output file (.mgf or .msp); '-': standard "
                                                "output")
    p.add_argument("--format", choices=["mgf", "msp"],
                   help="default: from the suffix (MGF for standard output)")
    _add_denovo_peptides(sub)
    _add_predict_ei(sub)
    p = sub.add_parser("serve", help="local web GUI for EI library search")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: "
                                                      "this machine only)")
    p.add_argument("--port", type=port_number, default=8765, help="0 picks a free port")
    p.add_argument("--library", action="append", help="EI library (MSP/MGF/store), repeatable; "
                                                      "default: the shipped MassBank EI library")
    p.add_argument("--model", help="llm4ms model file (default: the shipped one)")
    p.add_argument("--max-upload-mb", type=positive_float, default=5.0,
                   help="upload size limit, MB (default 5)")
    p = sub.add_parser(
        "bench", help="throughput benchmarks (prints numbers)",
        description="Speed and memory benchmarks, each beside its baseline measured in the same "
                    "run: library conversion and cleaning, candidate index, library search vs "
                    "FlashEntropySearch, first and cached `msid identify` vs a plain script, "
                    "peak memory of a larger run, model ranking and training throughput, de "
                    "novo peptides, EI prediction and the EI vector index. Prints JSON.",
        formatter_class=_DefaultsHelp)
    p.add_argument("--library", help="ESI MS/MS library (MGF) to convert and search "
                                     "(default: the shipped MassBank library)")
    p.add_argument("--queries", type=positive_int, default=2000,
                   help="library spectra searched as queries")
    p.add_argument("--jobs", type=positive_int, default=2, help="worker processes")
    p.add_argument("--skip-index", action="store_true",
                   help="skip building the candidate index")
    p.add_argument("--skip-first-call", action="store_true",
                   help="skip timing msid identify (first and cached call) against a plain "
                        "FlashEntropySearch script")
    p.add_argument("--first-call-queries", help="query file for that comparison (default: every "
                                                 "16th spectrum of --library)")
    p.add_argument("--skip-memory", action="store_true",
                   help="skip the peak-memory benchmark of converting a larger run")
    p.add_argument("--memory-n", type=int, default=10,
                   help="the larger run is the demo runs concatenated this many times")
    p.add_argument("--skip-models", action="store_true",
                   help="skip the learned retrieval models' ranking and training throughput")
    p.add_argument("--skip-peptides", action="store_true",
                   help="skip the de novo peptide throughput benchmark")
    p.add_argument("--skip-ei-prediction", action="store_true",
                   help="skip the EI spectrum prediction benchmark")
    p.add_argument("--ei-teacher", help="NEIMS teacher model (default: the shipped one)")
    p.add_argument("--ei-student", help="NEIMS student model (default: the shipped one)")
    p.add_argument("--ei-library-sample", type=int, default=20_000,
                   help="molecules predicted to extrapolate the 1.6M library build time")
    p.add_argument("--ei-library-full", action="store_true",
                   help="build the whole 1.6M-molecule in-silico library (measured)")
    p.add_argument("--model-queries", type=int, default=1000,
                   help="test-fold queries ranked by each learned model")
    p.add_argument("--train-steps", type=int, default=200,
                   help="training steps timed per model family")
    p.add_argument("--skip-ei", action="store_true", help="skip the EI search benchmark")
    p.add_argument("--ei-entries", type=int, default=1_600_000,
                   help="EI vector index size (default: 1.6M)")
    p.add_argument("--ei-library", help="EI library whose real embeddings seed the index "
                                        "(default: the shipped MassBank EI)")
    p.add_argument("--ei-vectors", help=".npy of in-silico library embeddings (else "
                                        "synthetic mixes of real ones, said so)")
    p.add_argument("--ei-model", help="llm4ms model file (default: the shipped one)")
    p.add_argument("--ei-m", type=int, help="HNSW links per node (default: the index's, "
                                              "msid.ei.index.IndexConfig)")
    p.add_argument("--ei-storage", choices=["flat", "fp16", "sq8"],
                   help="HNSW vector storage (default: the index's)")
    p.add_argument("--ei-ef-search", type=int, help="HNSW ef_search of the EI index timed "
                                                    "(default: the index's)")
    p.add_argument("--ei-ef-sweep", default="",
                   help="also time these ef_search values on the same index, e.g. 48,64")
    p.add_argument("--ei-refine-sweep", default="",
                   help="also time these hnsw_refine_k values (shortlist = k x 10) on the same "
                        "index at --ei-ef-search, e.g. 8,12")
    p.add_argument("--out", help="also write the numbers as JSON here")
    return parser


COMMANDS = {"identify": cmd_identify, "convert": cmd_convert, "preprocess": cmd_preprocess,
            "build-index": cmd_build_index, "methods": cmd_methods, "bench": cmd_bench,
            "train": cmd_train, "serve": cmd_serve, "export": cmd_export}
COMMANDS["denovo-peptides"] = cmd_denovo_peptides
COMMANDS["predict-ei"] = cmd_predict_ei


def _redeliver_interrupt(unraisable) -> None:
    """sys.unraisablehook: a Ctrl-C that lands in a finaliser or callback (where Python only
    prints "Exception ignored" and goes on) is sent again a moment later, from another thread,
    so that it is raised in the command's own code and ends it."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.unraisablehook = _redeliver_interrupt
    from msid.atomic import STDOUT, install_signal_cleanup, messages_to_stderr
    from msid.io.errors import InputFileError, ModelFileError

    install_signal_cleanup()  # SIGTERM/SIGHUP: temporary files and work folders are removed
    outs = getattr(args, "out", None)
    outs = outs if isinstance(outs, list) else [outs]
    try:
        # --out -: the table is what reaches stdout; any other line printed goes to stderr
        with messages_to_stderr() if STDOUT in outs else nullcontext():
            return COMMANDS[args.command](args)
    except (InputFileError, ModelFileError) as e:
        print(f"msid {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the command needed could not be read or written
        where = f"{e.filename}: " if e.filename else ""
        print(f"msid {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as e:  # bad method name, option or candidate file
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"msid {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: outputs are atomic, so nothing half-written stays
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: the same one line
        print(f"\nmsid {args.command}: interrupted (an output not finished was not written)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
