"""One summary report across a batch of runs (MultiQC-like), with provenance.

Per run: spectra read, kept and quarantined, spectra answered and confidently identified, the
reasons for spectra without an answer, links to the run's own report and mzTab-M; across runs:
quarantine reasons side by side, QC plots, and what produced the results (software versions,
parameters, the library file's digest, the cards of the models used).
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from msid import __version__
from msid.atomic import write_text
from msid.compounds import compound_table
from msid.digest import sha256_file
from msid.io.licences import card_licence, is_noncommercial, short_licence
from msid.rankings import (
    CONFIDENT_FDR,
    MIN_DELTA_SCORE,
    confident_top,
    read_rankings,
    unanswered_reasons,
)
from msid.report.plots import data_uri
from msid.report.quarantine import quarantine_summary
from msid.store import SpectrumStore, content_digest

SOFTWARE = ("msid", "pyopenms", "matchms", "rdkit", "ms-entropy", "torch", "numpy", "pandas",
            "h5py", "pyteomics", "snakemake", "scikit-learn")


def software_versions() -> list[dict]:
    out = []
    for name in SOFTWARE:
        if name == "msid":
            out.append({"package": name, "version": __version__})
            continue
        try:
            out.append({"package": name, "version": metadata.version(name)})
        except metadata.PackageNotFoundError:
            out.append({"package": name, "version": "not installed"})
    return out


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes ('' when missing)."""
    return sha256_file(path) if Path(path).is_file() else ""


#: the score each run kind's panel of the batch report's score figure shows
SCORE_LABELS = {"small_molecule": "best library score per spectrum (entropy similarity)",
                "peptide": "de novo confidence of the mass-matched sequences",
                "ei": "best EI library match score per spectrum"}


def run_summary(sample: str, kind: str, spectra: str | os.PathLike,
                identifications: str | os.PathLike | None, fdr: float,
                denovo: str | os.PathLike | None = None,
                min_delta_score: float = MIN_DELTA_SCORE,
                denovo_annotations: str | os.PathLike | None = None) -> dict:
    """Counts of one run from its spectrum store and its answers: the ranked table of a
    small-molecule or EI run (``identifications``; EI runs pass their EI store as
    ``spectra``), or the de novo sequences of a peptide run (``denovo``, answered = a
    sequence that matches the precursor mass; the spectra its ``denovo_annotations`` list as
    skipped, a precursor out of the model's reach, are counted under that reason). "confident"
    is None where the run has no q-values."""
    with SpectrumStore(spectra) as st:
        md = st.metadata
        quarantine = st.quarantine
        content = st.spectra_sha256() if len(md) else ""  # the spectra, not their file name
    lost = quarantine_summary(quarantine)  # a whole unreadable file is no record read
    base = {"sample": sample, "kind": kind, "n_read": len(md) + lost["n_records"],
            "n_kept": len(md), "n_quarantined": lost["n_records"],
            "quarantine": {r["reason"]: r["spectra"] for r in lost["reasons"]},
            "kept_notes": {r["reason"]: r["spectra"] for r in lost["kept_notes"]},
            "unreadable": lost["unreadable"],
            "damaged": lost["damaged"], "spectra_sha256": content,
            "top_scores": np.zeros(0), "score_label": SCORE_LABELS.get(kind, "")}
    if denovo is not None:
        seqs = pd.read_csv(denovo, sep="\t")
        matched = set(seqs.loc[seqs["score"] > 0, "query_id"].astype(str)) & set(md["id"])
        skipped: dict[str, str] = {}  # spectrum id -> why it was not sequenced
        if denovo_annotations and Path(denovo_annotations).is_file():
            ann = json.loads(Path(denovo_annotations).read_text(encoding="utf-8"))
            unmatched = set(md["id"].astype(str)) - matched
            skipped = {str(s["id"]): str(s.get("kind", "precursor mass out of reach"))
                       for s in ann.get("skipped", []) if str(s["id"]) in unmatched}
        rest = len(md) - len(matched) - len(skipped)
        unanswered = {"de novo: no sequence matching the precursor mass": rest} if rest else {}
        for kind in skipped.values():
            key = f"de novo: not sequenced, {kind}"
            unanswered[key] = unanswered.get(key, 0) + 1
        return {**base, "n_answered": len(matched), "n_confident": None, "n_compounds": None,
                "n_unanswered": rest + len(skipped),
                "methods": ", ".join(sorted(set(seqs["method"]))),
                "top_scores": seqs.loc[(seqs["score"] > 0) & (seqs["rank"] == 1),
                                       "score"].to_numpy(dtype=float),
                "unanswered": unanswered}
    ids = (read_rankings(identifications) if identifications else
           pd.DataFrame(columns=["query_id", "rank", "score", "method", "note", "q_value"]))
    ranked = ids[ids["rank"] > 0]
    top = ranked[ranked["rank"] == 1].drop_duplicates("query_id")
    q = pd.to_numeric(top["q_value"], errors="coerce")
    answered = set(ranked["query_id"])
    reasons = unanswered_reasons(ids, md["id"])  # each method's: "library: ...; ranker: ..."
    return {
        **base, "n_answered": len(answered & set(md["id"])),
        "n_confident": (int(confident_top(top, fdr, min_delta_score)[0].sum())
                        if (q >= 0).any() else None),
        "n_compounds": (int(compound_table(ids, fdr=fdr, min_delta=min_delta_score)
                            ["confident"].sum()) if (q >= 0).any() else None),
        "n_unanswered": len(reasons), "methods": ", ".join(sorted(set(ranked["method"]))),
        "unanswered": reasons.value_counts().to_dict(),
        # one scale per panel: the library's entropy similarity, not the rankers' cosines
        "top_scores": (top["score"] if kind == "ei" else
                       top.loc[top["method"] == "library", "score"]).to_numpy(dtype=float),
    }


def same_content(summaries: list[dict]) -> list[list[str]]:
    """Groups of runs whose stores hold the same spectra (:meth:`SpectrumStore.spectra_sha256`):
    one file sent twice, under two names, is then said, not identified twice without a word."""
    by: dict[str, list[str]] = {}
    for s in summaries:
        if s.get("spectra_sha256"):
            by.setdefault(s["spectra_sha256"], []).append(s["sample"])
    return [names for names in by.values() if len(names) > 1]


#: "answered" spectra of runs without q-values (EI, peptide): no FDR says how many are right
NO_FDR = "answered, no FDR estimate"


def spectra_bars(runs: list[dict]) -> list[tuple[str, str, np.ndarray]]:
    """(label, colour, spectra per run) of the stacked "Spectra per run" bars. Runs with
    q-values split their answers into confident and tentative; a run without (``n_confident``
    None: EI, peptide) has its answers counted under :data:`NO_FDR`, never as tentative."""
    has_q = np.array([r["n_confident"] is not None for r in runs], dtype=bool)
    confident = np.array([r["n_confident"] or 0 for r in runs], dtype=float)
    rest = np.array([r["n_answered"] for r in runs], dtype=float) - confident
    return [("confident", "tab:blue", confident),
            ("tentative", "tab:orange", np.where(has_q, rest, 0.0)),
            (NO_FDR, "tab:purple", np.where(has_q, 0.0, rest)),
            ("no answer", "tab:green", np.array([r["n_unanswered"] for r in runs], float)),
            ("quarantined", "tab:red", np.array([r["n_quarantined"] for r in runs], float))]


def fdr_curve_note(fdr_curve: str | os.PathLike, fdr: float) -> str:
    """What the benchmark's FDR curve shows and how to read it; where its table
    (``fdr_curve.tsv`` beside the figure) shows an estimate of 0 over the best hits, why."""
    png = Path(fdr_curve)
    summary = png.with_suffix(".json")
    fold = (json.loads(summary.read_text(encoding="utf-8")).get("fold", "test")
            if summary.is_file() else "test")
    text = (f"The library search's estimated FDR (target-decoy q-value) against its true FDR, "
            f"measured on the benchmark's held-out {fold} fold of the library, where each "
            f"query's structure is known (its own spectrum left out of the library), not on "
            f"the runs above, whose truth is unknown. Read it left to right as the score "
            f"cut-off is lowered and more hits are accepted: where the true line lies above "
            f"the estimate, q-values understate the share of wrong hits, so q \u2264 {fdr:g} "
            f"admits more of them than it says.")
    table = png.with_suffix(".tsv")
    if not table.is_file():
        return text
    t = pd.read_csv(table, sep="\t")
    zero = t[t["q_value"] <= 0]
    if len(zero):
        last = zero.loc[zero["n_target"].idxmax()]
        text += (f" Here the estimate is 0 for the best {int(last['n_target'])} of "
                 f"{int(t['n_target'].max())} hits (every cut-off down to score "
                 f"{float(zero['threshold'].min()):.3f}): none of the "
                 f"{int(t['n_decoy'].max())} decoy winners scored that high, while the true "
                 f"FDR there is already {float(last['true_fdr']):.1%}; the decoys are beaten "
                 f"more easily than the wrong library spectra that win.")
    return text


def _runs_figure(runs: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["sample"] for r in runs]
    # one score panel per run kind with scores: each kind's scores have their own scale
    labels = list(dict.fromkeys(r["score_label"] for r in runs
                                if len(r["top_scores"]) and r["score_label"]))
    n_panels = 1 + max(len(labels), 1)
    n_rows = (n_panels + 1) // 2
    fig, axes = plt.subplots(n_rows, 2, figsize=(10, n_rows * (0.5 * len(runs) + 2.5)),
                             squeeze=False)
    axes = axes.ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    y = np.arange(len(runs))
    ax = axes[0]
    left = np.zeros(len(runs))
    for label, color, vals in spectra_bars(runs):
        ax.barh(y, vals, left=left, label=label, color=color)
        left += vals
    ax.set_yticks(y, names)
    ax.set_xlabel("spectra")
    ax.legend(fontsize=7)
    ax.set_title("Spectra per run", fontsize=9)
    for ax, label in zip(axes[1:], labels or ["best score per spectrum"], strict=False):
        for r in runs:
            if len(r["top_scores"]) and r["score_label"] == label:
                ax.hist(r["top_scores"], bins=20, range=(0, 1), histtype="step",
                        label=r["sample"])
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("spectra")
        ax.set_title("Score distribution", fontsize=9)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return data_uri(buf.getvalue())


def used_models(config: dict, kinds: set[str]) -> list[tuple[str, Path]]:
    """(label, model file) of every model the batch's runs used: each small-molecule method's
    models (GLMR and de novo also use the Ranker), the EI search model, the peptide model."""
    from msid.method_kinds import method_table
    from msid.resources import shipped_model

    out: dict[Path, tuple[Path, str]] = {}

    def _add(path: Path, label: str) -> None:  # one entry per file, however it is written
        out.setdefault(Path(path).resolve(), (Path(path), label))

    if "small_molecule" in kinds:  # as msid.run_methods and the methods load them
        model_dir = Path(config.get("models", {}).get("dir", "resources/models"))
        table = method_table()
        ident = config.get("identify", {})
        for m in ident.get("methods", []):
            spec = table.get(m)
            if not spec or not spec.models:
                continue
            # the file the spec declares first: models.dir's, else the shipped one
            own = model_dir / f"{spec.models[0]}.safetensors"
            _add(own if own.exists() else shipped_model(spec.models[0]), m)
            opts = {**(config.get("generation", {}).get("denovo", {}) if m == "denovo" else {}),
                    **ident.get("method_options", {}).get(m, {})}
            helpers = {f: shipped_model(f) for f in spec.models[1:]}  # GLMR's Ranker
            if m == "glmr" and opts.get("ranker_model"):
                helpers = {"ranker": Path(opts["ranker_model"])}
            if m == "denovo":  # de novo re-scores with the configured model, if any
                name = opts.get("rescore_with", "ranker")
                helpers = ({name: Path(opts.get("rescore_model") or shipped_model(name))}
                           if name and opts.get("rescore_weight", 5.0) else {})
            for family, path in helpers.items():
                _add(path, f"{m} ({family})")
    ei_search = config.get("ei_search", {})
    if "ei" in kinds and str(ei_search.get("method", "")).startswith("ei-embedding") \
            and ei_search.get("model"):
        _add(Path(ei_search["model"]), ei_search["method"])
    if "peptide" in kinds and config.get("peptides", {}).get("model"):
        _add(Path(config["peptides"]["model"]), "peptrm")
    return [(label, path) for path, label in out.values()]


#: the most characters of a model card the report shows in full (a longer one ends with a
#: marker naming the card's file)
MAX_CARD_CHARS = 200_000


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fmt_metric(name: str, v: float) -> str:
    """3 decimals; a count (n_*) as a whole number."""
    return f"{v:.0f}" if name.startswith("n_") else f"{v:.3f}"


def card_metrics(card: dict) -> str:
    """A card's validation and test metrics in one line, 3 decimals ("val: hit@1 0.654 ·
    hit@5 0.852; test: ..."): its ``metrics`` dicts named val/test (the step left out) and
    flat numbers named val_*/test_*; '' where the card has none."""
    metrics = card.get("metrics")
    if not isinstance(metrics, dict):
        return ""
    parts = []
    for split in ("val", "test"):
        vals = metrics.get(split)
        if isinstance(vals, dict):
            shown = [f"{k} {_fmt_metric(k, v)}" for k, v in vals.items()
                     if k != "step" and _number(v)]
            if shown:
                parts.append(f"{split}: " + " · ".join(shown))
        flat = [f"{k} {_fmt_metric(k, v)}" for k, v in metrics.items()
                if k.startswith(f"{split}_") and _number(v)]
        if flat:
            parts.append(" · ".join(flat))
    return "; ".join(parts)


def train_spectra(card: dict) -> str:
    """The number of training spectra a card states (top level or under ``training``; an
    ensemble's members' range, "35327–51582 per member"), '' where it states none."""
    training = card.get("training") or {}
    for where in (card, training):
        if isinstance(where, dict) and isinstance(where.get("n_train_spectra"), int):
            return str(where["n_train_spectra"])
    members = training.get("members") if isinstance(training, dict) else None
    counts = sorted({m["n_train_spectra"] for m in members or []
                     if isinstance(m, dict) and isinstance(m.get("n_train_spectra"), int)})
    if len(counts) == 1:
        return str(counts[0])
    return f"{counts[0]}\u2013{counts[-1]} per member" if counts else ""


def model_cards(models: list[tuple[str, Path]]) -> list[dict]:
    """One row per (label, model file) whose card is there: file name, family, created date,
    training spectra, validation/test metrics, weights digest, and the whole card as JSON."""
    out = []
    for label, weights in models:
        card = Path(weights).with_suffix(".json")
        if not card.is_file():
            continue
        c = json.loads(card.read_text())
        text = json.dumps(c, indent=1, default=str)
        if len(text) > MAX_CARD_CHARS:
            text = text[:MAX_CARD_CHARS] + f"\n… (truncated; full card: {card})"
        out.append({"method": label, "file": str(card.with_suffix(".safetensors")),
                    "name": card.with_suffix(".safetensors").name,
                    "card_path": str(card), "family": str(c.get("family", "")),
                    "created": str(c.get("created", ""))[:10],
                    "n_train_spectra": train_spectra(c), "metrics": card_metrics(c),
                    "digest": file_digest(card.with_suffix(".safetensors"))[:12],
                    "licence": short_licence(card_licence(c)),
                    "noncommercial": is_noncommercial(card_licence(c)),
                    "card": text})
    return out


TEMPLATE = """<!doctype html><html><head><meta charset="utf-8">
<title>msid batch summary</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}td.num{text-align:right}
img{max-width:100%;height:auto}p code{overflow-wrap:anywhere}
pre{background:#f6f6f6;padding:8px;font-size:80%;overflow-x:auto}
.note{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0b400}.nw{white-space:nowrap}
</style></head><body>
<h1>msid batch summary</h1>
<p>{{ runs|length }} run(s) · msid {{ version }} · {{ created }}</p>
<h2>Runs</h2>
{% set unreadable = runs|selectattr("unreadable")|list %}
{% if unreadable %}<p class="note"><b>{{ unreadable|length }} run file(s) could not be read</b>
(no spectra, no identifications; the other runs went on):</p>
<ul>{% for r in unreadable %}<li>{{ r.sample }}: {{ r.unreadable }}</li>{% endfor %}</ul>{% endif %}
{% if unread %}<p class="note"><b>{{ unread|length }} file(s) in the runs folder or rows of
the sample sheet were not read</b> (no run was made of them; the other runs went on):</p>
<ul>{% for name, why in unread %}<li>{{ name }}: {{ why }}</li>{% endfor %}</ul>{% endif %}
{% if same_content %}<p class="note"><b>Runs with the same spectra</b> (the same peaks and
precursors: one file sent twice?):</p>
<ul>{% for names in same_content %}<li>{{ names|join(", ") }}</li>{% endfor %}</ul>{% endif %}
{% set damaged = runs|selectattr("damaged")|list %}
{% if damaged %}<p class="note"><b>{{ damaged|length }} run file(s) are damaged</b>: their
results are partial (the spectra before the damage were read):</p>
<ul>{% for r in damaged %}<li>{{ r.sample }}: {{ r.damaged }}</li>{% endfor %}</ul>{% endif %}
<table><tr><th>run</th><th>kind</th><th>read</th><th>kept</th><th>quarantined</th>
<th>answered</th><th>confident (q &le; {{ fdr }}, &Delta;score &ge; {{ min_delta }})</th>
<th>no answer</th><th>confident compounds</th><th>methods that answered</th>
<th>report</th><th>mzTab</th></tr>
{% for r in runs %}<tr><td>{{ r.sample }}
{% if r.file %}<br><small>{{ r.file }}</small>{% endif %}</td><td>{{ r.kind }}</td>
<td class="num">{{ r.n_read }}</td><td class="num">{{ r.n_kept }}</td>
<td class="num">{{ r.n_quarantined }}{% if r.unreadable %} + the file
{%- elif r.damaged %} + the file's lost rest{% endif %}</td>
<td class="num">{{ r.n_answered }}</td>
<td class="num">{{ "&ndash;"|safe if r.n_confident is none else r.n_confident }}</td>
<td class="num">{{ r.n_unanswered }}</td>
<td class="num">{% if r.n_compounds is none %}&ndash;{% elif r.compounds %}
<a href="{{ r.compounds }}">{{ r.n_compounds }}</a>{% else %}{{ r.n_compounds }}{% endif %}</td>
<td>{{ r.methods }}</td><td><a href="{{ r.report }}">report</a></td>
<td>{% if r.mztab %}<a href="{{ r.mztab }}">{{ r.mztab_kind }}</a>{% endif %}</td></tr>
{% endfor %}
</table>
<p>Answered: small-molecule and EI runs, a ranked answer from any method; peptide runs, a
de novo sequence that matches the precursor mass. EI runs count their EI spectra (no
precursor), not the ESI preprocessing. Confident compounds: distinct structures (InChIKey
first block) with at least one confident library hit, listed in each run's
<code>compounds.tsv</code>. &ndash;: no q-values for that kind of run. In the chart below,
the answers of such runs (EI, peptide) are "answered, no FDR estimate", not tentative:
tentative are the answers of runs with q-values that are not confident.</p>
<img src="{{ figure }}" alt="runs">
<h2>Spectra without an answer, by reason</h2>
{% if unanswered %}<table><tr><th>reason</th>{% for r in runs %}<th>{{ r.sample }}</th>
{% endfor %}</tr>{% for reason, row in unanswered %}<tr><td>{{ reason }}</td>
{% for v in row %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>Every kept spectrum has an answer.</p>{% endif %}
<h2>Quarantined records, by reason</h2>
{% if quarantine %}<table><tr><th>reason</th>{% for r in runs %}<th>{{ r.sample }}</th>
{% endfor %}</tr>{% for reason, row in quarantine %}<tr><td>{{ reason }}</td>
{% for v in row %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>No record was quarantined{% if unreadable or damaged %} from the files that could
be read; the unreadable and damaged files are listed above{% endif %}.</p>{% endif %}
{% set noted = runs|selectattr("kept_notes")|list %}
{% if noted %}<p>Kept, each without one value it stated that could not be used (not
quarantined: the rest of the record is used): {% for r in noted %}{{ r.sample }}:
{% for reason, n in r.kept_notes.items() %}{{ n }} x {{ reason }}{{ "; " if not loop.last }}
{%- endfor %}{{ ". " if loop.last else " | " }}{% endfor %}</p>{% endif %}
{% if fdr_curve %}<h2>Library search FDR: estimate vs truth (benchmark fold)</h2>
<p>{{ fdr_note }}</p>
<img src="{{ fdr_curve }}" alt="FDR curve">{% endif %}
<h2>Provenance</h2>
<h3>Library</h3>
<p>Small-molecule (ESI) library:
<code>{{ library_path }}</code> · sha256 <code>{{ library_digest }}</code></p>
{% if ei_sources %}<p>EI library file(s), searched by the EI runs:
{% for path, digest in ei_sources %}<code>{{ path }}</code> · sha256 <code>{{ digest }}</code>
{%- if not loop.last %}; {% endif %}{% endfor %}
{%- if ei_exclude %} (less the records listed in <code>{{ ei_exclude }}</code>){% endif %}</p>
{% endif %}
{% if searched %}<table><tr><th>runs</th><th>library store searched</th>
<th>content sha256 (mzTab-M <code>database[1]-version</code>)</th></tr>
{% for kind, path, digest in searched %}<tr><td>{{ kind }}</td><td><code>{{ path }}</code></td>
<td><code>{{ digest }}</code></td></tr>{% endfor %}</table>{% endif %}
<h3>Software versions</h3>
<table><tr><th>package</th><th>version</th></tr>
{% for s in software %}<tr><td>{{ s.package }}</td><td>{{ s.version }}</td></tr>{% endfor %}
</table>
<h3>Parameters</h3><pre>{{ parameters }}</pre>
{% if models %}<h3>Model cards</h3>
<table><tr><th>used by</th><th>model file</th><th>family</th><th>created</th>
<th>training spectra</th><th>validation / test metrics</th><th>licence</th>
<th>weights sha256</th></tr>
{% for m in models %}<tr><td>{{ m.method }}</td><td><code>{{ m.name }}</code></td>
<td>{{ m.family }}</td><td class="nw">{{ m.created }}</td>
<td class="num">{{ m.n_train_spectra or "&ndash;"|safe }}</td>
<td>{{ m.metrics or "&ndash;"|safe }}</td>
<td>{% if m.noncommercial %}<b>{{ m.licence }}</b>{% else %}{{ m.licence or
"not stated (trained on open data: resources/models/README.md)" }}{% endif %}</td>
<td class="nw"><code>{{ m.digest }}…</code></td></tr>
{% endfor %}</table>
{% for m in models %}<details><summary>{{ m.method }}: full card
(<code>{{ m.card_path }}</code>)</summary><pre>{{ m.card }}</pre></details>
{% endfor %}{% endif %}
</body></html>
"""


def _pivot(runs: list[dict], key: str) -> list[tuple[str, list[int]]]:
    reasons = sorted({k for r in runs for k in r[key]})
    return [(k, [int(r[key].get(k, 0)) for r in runs]) for k in reasons]


def write_batch_report(runs: list[dict], out: str | os.PathLike, *, config: dict,
                       fdr_curve: str | os.PathLike | None = None,
                       unread: list[tuple[str, str]] = (),
                       libraries: dict[str, str | os.PathLike] | None = None) -> None:
    """``runs``: dicts with sample, kind, spectra, report[, identifications, denovo, mztab,
    compounds] paths (see :func:`run_summary`). ``unread``: (file, why) of what the runs
    folder holds but no run was made of (:func:`msid.samples.unread_entries`).
    ``libraries``: run kind -> the library store its runs were searched against, named by its
    content digest (:func:`msid.store.content_digest`, as each run's mzTab-M names it)."""
    out = Path(out)
    ident = config.get("identify", {})
    fdr = float(ident.get("fdr", CONFIDENT_FDR))
    min_delta = float(ident.get("min_delta_score", MIN_DELTA_SCORE))
    summaries = []
    for r in runs:
        s = run_summary(r["sample"], r["kind"], r["spectra"], r.get("identifications"), fdr,
                        denovo=r.get("denovo"), min_delta_score=min_delta,
                        denovo_annotations=r.get("denovo_annotations"))
        s["report"] = os.path.relpath(r["report"], out.parent)
        s["file"] = os.path.basename(str(r.get("input") or ""))  # the run's own file name
        s["mztab"] = os.path.relpath(r["mztab"], out.parent) if r.get("mztab") else ""
        s["compounds"] = (os.path.relpath(r["compounds"], out.parent) if r.get("compounds")
                          else "")
        s["mztab_kind"] = "mzTab 1.0" if r["kind"] == "peptide" else "mzTab-M"
        summaries.append(s)
    kinds = {r["kind"] for r in runs}
    sections = ["library", "library_search", "identify", "preprocess", "candidates"]
    sections += (["ei_search"] if "ei" in kinds else []) + (
        ["peptides"] if "peptide" in kinds else [])
    params = {k: config[k] for k in sections if k in config}
    lib_path = config.get("library", {}).get("path", "")
    ei = config.get("ei_search", {}) if "ei" in kinds else {}
    # the files the EI library store is built from (the rule's EI_LIBRARY_FILES)
    ei_files = list(ei.get("libraries", [])) + (
        [ei["insilico_library"]] if ei.get("insilico_library") else [])
    curve = None
    if fdr_curve and Path(fdr_curve).is_file():
        import base64

        curve = "data:image/png;base64," + base64.b64encode(Path(fdr_curve).read_bytes()).decode()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(TEMPLATE).render(
        runs=summaries, version=__version__, fdr=fdr, min_delta=min_delta, unread=list(unread),
        same_content=same_content(summaries),
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        figure=_runs_figure(summaries), unanswered=_pivot(summaries, "unanswered"),
        quarantine=_pivot(summaries, "quarantine"), fdr_curve=curve,
        fdr_note=fdr_curve_note(fdr_curve, fdr) if curve else "",
        library_path=lib_path, library_digest=file_digest(lib_path) or "file not found",
        ei_sources=[(str(f), file_digest(f) or "file not found") for f in ei_files],
        ei_exclude=str(ei.get("library_exclude") or ""),
        searched=[(kind, str(path), content_digest(path) if Path(path).is_file()
                   else "file not found") for kind, path in sorted((libraries or {}).items())],
        software=software_versions(),
        parameters=yaml.safe_dump(params, sort_keys=False, default_flow_style=None),
        models=model_cards(used_models(config, kinds)))
    write_text(out, html)
