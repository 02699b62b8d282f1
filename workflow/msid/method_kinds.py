"""What each identification method is, in one table the workflow reads before anything runs
(no heavy imports): which kind of run it serves, whether it ranks candidates from the pool
index, whether it reads a spectral library, which shipped model files it reads, and whether
the ESI candidate-ranking benchmark (``benchmark.methods``) ranks with it.

Small-molecule runs: spectral library search, the random baseline, the learned retrieval
models and GLMR (which rank candidates from the pool index) and de novo generation (which
proposes its own structures). EI runs: the EI family's methods (their benchmark is the EI
leaderboard, ``ei_search.benchmark``). Peptide runs use de novo peptide sequencing (configured
under ``peptides:``), not this table.

A method is registered twice, once here (what the DAG needs to know without building it) and
once with :func:`msid.methods.register` (how to build it); ``tests/test_identify_run.py``
checks that the two, and the config schema's method enums, agree.

Another installed package declares its methods' entries through the entry-point group
``msid.method_specs`` (entry-point name = method name, value = a :class:`MethodSpec`, e.g.
``mass-error = "my_pkg.specs:MASS_ERROR"``; a light module, as the workflow reads it on every
start). :func:`method_table` is this table plus theirs, and :func:`config_schema` the config
schema whose method enums accept their names; a declaration that fails to load, or names a
method already declared, is left out and named by :func:`spec_errors` (``msid methods``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path


@dataclass(frozen=True)
class MethodSpec:
    kind: str  # the run kind it serves: small_molecule, ei
    needs_candidates: bool = False  # ranks candidates (in runs: from the pool index)
    needs_library: bool = False  # reads a spectral library
    #: shipped model files the DAG hands it from models.dir (stems), its own first (a run and
    #: the benchmark load that one); the EI embedding methods take theirs from ei_search.model
    models: tuple[str, ...] = ()
    benchmark: bool = False  # ranked in the ESI candidate benchmark (benchmark.methods)
    #: the keys it reads from its options (identify.method_options.<method>); None: not
    #: declared (an installed package's method), so not checked
    options: tuple[str, ...] | None = None


#: options every method is handed in a run (RunMethodsConfig.options)
SHARED_OPTIONS = ("num_threads",)
#: options that are yes/no: a string ("false") is refused, not read as true
FLAG_OPTIONS = ("filter", "fallback", "use_formula")
_MODEL_OPTIONS = ("batch_size", "device")


_RETRIEVAL = dict(kind="small_molecule", needs_candidates=True, benchmark=True)
_EI_MATCH = ("ei_library", "hits")
_EI_EMBEDDING = (*_EI_MATCH, "index", "embedding")

METHODS: dict[str, MethodSpec] = {
    "library": MethodSpec("small_molecule", needs_library=True, benchmark=True,
                          options=("analog_k",)),
    "random": MethodSpec(**_RETRIEVAL, options=()),
    "ranker": MethodSpec(**_RETRIEVAL, models=("ranker",), options=_MODEL_OPTIONS),
    "reconstructor": MethodSpec(**_RETRIEVAL, models=("reconstructor",), options=_MODEL_OPTIONS),
    "deepsets": MethodSpec(**_RETRIEVAL, models=("deepsets",), options=_MODEL_OPTIONS),
    "fp_ffn": MethodSpec(**_RETRIEVAL, models=("fp_ffn",), options=_MODEL_OPTIONS),
    # GLMR re-ranks the Ranker's top-K; de novo re-scores its beams with the Ranker's cosine.
    # Both have their own leaderboards (the generation rules), not the candidate benchmark.
    "glmr": MethodSpec("small_molecule", needs_candidates=True, models=("glmr", "ranker"),
                       options=("ranker_model", "k", "beam_width", "weight", "similarity")),
    "denovo": MethodSpec("small_molecule", models=("denovo", "ranker"),
                         options=("rescore_with", "rescore_weight", "rescore_model",
                                  "beam_width", "top_k", "filter", "fallback", "tol_da",
                                  "tol_ppm", "use_formula")),
    "ei-embedding": MethodSpec("ei", needs_library=True, options=_EI_EMBEDDING),
    "ei-embedding-wcos": MethodSpec("ei", needs_library=True,
                                    options=(*_EI_EMBEDDING, "rescore_weight")),
    "ei-cosine": MethodSpec("ei", needs_library=True, options=_EI_MATCH),
    "ei-weighted-cosine": MethodSpec("ei", needs_library=True, options=_EI_MATCH),
    "ei-entropy": MethodSpec("ei", needs_library=True, options=_EI_MATCH),
}
RUN_KINDS = ("small_molecule", "ei", "peptide")
METHODS_BY_KIND: dict[str, tuple[str, ...]] = {
    k: tuple(m for m, s in METHODS.items() if s.kind == k) for k in RUN_KINDS}
ALL_METHODS: tuple[str, ...] = tuple(METHODS)
#: the methods the ESI candidate benchmark ranks (the schema's ``method`` enum)
BENCHMARK_METHODS: tuple[str, ...] = tuple(m for m, s in METHODS.items() if s.benchmark)
#: methods that rank pool candidates in runs (the DAG hands them the candidate index)
CANDIDATE_METHODS: tuple[str, ...] = tuple(m for m, s in METHODS.items() if s.needs_candidates)


#: entry-point group through which an installed package declares its methods' MethodSpecs
SPEC_ENTRY_POINT_GROUP = "msid.method_specs"
#: run kinds whose methods the DAG takes from the table (peptide runs have their own rules)
PLUGIN_KINDS = ("small_molecule", "ei")


@lru_cache(maxsize=1)
def _plugin_specs() -> tuple[dict[str, MethodSpec], dict[str, str]]:
    specs: dict[str, MethodSpec] = {}
    errors: dict[str, str] = {}
    for ep in entry_points(group=SPEC_ENTRY_POINT_GROUP):
        where = f"{ep.name} ({ep.value})"
        try:
            spec = ep.load()
        except Exception as e:  # a broken declaration removes its method, never msid's
            errors[where] = f"{type(e).__name__}: {e}"
            continue
        if not isinstance(spec, MethodSpec):
            errors[where] = f"is a {type(spec).__name__}, not a msid.method_kinds.MethodSpec"
        elif spec.kind not in PLUGIN_KINDS:
            errors[where] = f"kind '{spec.kind}' (one of {', '.join(PLUGIN_KINDS)})"
        elif spec.benchmark and spec.kind != "small_molecule":
            errors[where] = "only small_molecule methods join the candidate benchmark"
        elif ep.name in METHODS or ep.name in specs:
            errors[where] = f"method '{ep.name}' is already declared"
        else:
            specs[ep.name] = spec
    return specs, errors


def method_table() -> dict[str, MethodSpec]:
    """:data:`METHODS` plus the methods installed packages declare (``msid.method_specs``)."""
    return {**METHODS, **_plugin_specs()[0]}


def spec_errors() -> dict[str, str]:
    """Declarations in ``msid.method_specs`` left out of :func:`method_table`, and why."""
    return dict(_plugin_specs()[1])


def methods_of_kind(kind: str) -> tuple[str, ...]:
    return tuple(m for m, s in method_table().items() if s.kind == kind)


def config_schema(schema: str | Path, workdir: str | Path) -> str:
    """The config schema to validate with: ``schema`` itself when its method enums name what
    the method table (:func:`method_table`: :data:`METHODS` plus installed packages'
    declarations) holds; else a copy under ``workdir`` whose enums are the table's, so a
    method declared in one place (a ``METHODS`` entry, a package's MethodSpec) is accepted
    without a second list to edit. ``tests/test_identify_run.py`` keeps the file's lists,
    which document the names, equal to msid's own table."""
    import yaml

    from msid.atomic import write_text

    table = method_table()
    doc = yaml.safe_load(Path(schema).read_text())
    # identify.methods names every method (check_methods then says which kind each runs on)
    want = {("definitions", "identify_method"): list(table),
            ("definitions", "method"): [m for m, s in table.items() if s.benchmark],
            ("properties", "ei_search", "properties", "method"):
                [m for m, s in table.items() if s.kind == "ei"]}

    def node(path: tuple[str, ...]) -> dict:
        out = doc
        for key in path:
            out = out[key]
        return out

    if all(set(node(path)["enum"]) == set(names) for path, names in want.items()):
        return str(schema)
    for path, names in want.items():
        enum = node(path)["enum"]
        node(path)["enum"] = [m for m in enum if m in names] + [m for m in names
                                                                if m not in enum]
    out = Path(workdir) / "config.schema.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(doc, indent=1))
    return str(out.resolve())


def check_method_options(method_options: dict, key: str = "identify.method_options") -> None:
    """Raise ValueError naming an option key a method does not read (a typo would otherwise
    leave the method at its default without a word)."""
    table = method_table()
    for method, opts in (method_options or {}).items():
        known = table[method].options if method in table else None
        if known is None:
            continue
        unknown = sorted(set(opts or {}) - set(known) - set(SHARED_OPTIONS))
        if unknown:
            raise ValueError(f"{key}.{method}: unknown option(s) {unknown} (it reads: "
                             f"{', '.join((*SHARED_OPTIONS, *known))})")
        for flag in FLAG_OPTIONS:
            if flag in (opts or {}) and not isinstance(opts[flag], bool):
                raise ValueError(f"{key}.{method}.{flag} must be true or false, not "
                                 f"{opts[flag]!r}")


def check_methods(methods: Iterable[str], kind: str, key: str = "identify.methods") -> None:
    """Raise ValueError naming every method in ``methods`` that cannot run on ``kind`` runs
    (installed packages' declared methods included)."""
    if kind not in METHODS_BY_KIND:
        raise ValueError(f"unknown run kind '{kind}' (known: {', '.join(METHODS_BY_KIND)})")
    table = method_table()
    valid = methods_of_kind(kind)
    for m in methods:
        if m in valid:
            continue
        if m in table:
            raise ValueError(f"{key}: method '{m}' is for {table[m].kind} runs and cannot run "
                             f"on {kind} runs (valid for {kind}: {', '.join(valid) or 'none'})")
        raise ValueError(f"{key}: unknown method '{m}' (valid for {kind}: "
                         f"{', '.join(valid) or 'none'})")
