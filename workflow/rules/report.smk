rule report_run:
    """Per-run HTML report: identifications, mirror plots, QC and quarantine."""
    input:
        unpack(report_inputs),
    output:
        report(
            f"{RESULTS}/runs/{{sample}}/report.html",
            caption="../report/run_report.rst",
            category="Runs",
            labels={"run": "{sample}"},
        ),
    log:
        f"{LOGS}/report_run/{{sample}}.log",
    conda:
        env("report")
    container:
        image("report")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(20),
    params:
        n_mirror=config["identify"]["report_mirror_plots"],
        fdr=config["identify"]["fdr"],
        min_delta_score=config["identify"]["min_delta_score"],
        kind=run_kind,
        search=settled(config["library_search"]),
    script:
        "../scripts/report_run.py"


rule leaderboard:
    """Leaderboard tables and bar chart from every MetricsRecord JSON."""
    input:
        metrics=expand(
            f"{RESULTS}/benchmark/metrics/{{split}}{{method}}.{{kind}}.{{variant}}.json",
            split=["", "far/"],
            method=BENCH["methods"],
            kind=BENCH["candidate_kinds"],
            variant=["standard", "spectrum_blind"],
        ),
        candidate_sets=f"{RESULTS}/benchmark/candidate_sets.json",
    output:
        csv=f"{RESULTS}/leaderboard/leaderboard.csv",
        md=f"{RESULTS}/leaderboard/leaderboard.md",
        tex=f"{RESULTS}/leaderboard/leaderboard.tex",
        png=report(
            f"{RESULTS}/leaderboard/leaderboard.png",
            caption="../report/leaderboard.rst",
            category="Leaderboard",
        ),
    log:
        f"{LOGS}/leaderboard.log",
    conda:
        env("report")
    container:
        image("report")
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    script:
        "../scripts/leaderboard.py"


rule training_curves:
    """Loss and validation Hit@1 curves of the models in the leaderboard (from their files)."""
    input:
        model_histories,
    output:
        report(
            f"{RESULTS}/leaderboard/training_curves.png",
            caption="../report/training_curves.rst",
            category="Leaderboard",
        ),
    log:
        f"{LOGS}/training_curves.log",
    conda:
        env("report")
    container:
        image("report")
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    script:
        "../scripts/training_curves.py"


rule batch_report:
    """One summary across every run: counts, reasons, QC plots, links, provenance."""
    input:
        unpack(batch_report_inputs),
    output:
        report(
            f"{RESULTS}/batch_report.html",
            caption="../report/batch_report.rst",
            category="Runs",
        ),
    log:
        f"{LOGS}/batch_report.log",
    conda:
        env("report")
    container:
        image("report")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(20),
    params:
        samples=list(samples.index),
        kinds=list(samples["kind"]),
        paths=list(samples["path"]),
        run_outputs=RUN_OUTPUTS,
        runs_dir=f"{RESULTS}/runs",
        # what runs_dir holds but no run is made of (named in the report, with why)
        unread=UNREAD,
    script:
        "../scripts/batch_report.py"
