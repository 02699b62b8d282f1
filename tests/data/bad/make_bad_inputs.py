"""Regenerate the bad-input corpus from real spectra (GNPS pesticides MGF, a matchms mzML, the
SCIEX pesticide DDA run in resources/runs, MassBank EI MSP records).

Each file takes real records and breaks them the way real files break. Run from the repo root:
    python tests/data/bad/make_bad_inputs.py
Gzip files are written with mtime 0, so the corpus is byte-for-byte reproducible.
"""

import gzip
import re
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE.parent
with gzip.open(DATA / "gnps_pesticides_matchms_train.mgf.gz", "rt") as fh:
    blocks = re.findall(r"BEGIN IONS.*?END IONS\n", fh.read(), re.S)
good = blocks[:6]


def set_key(block: str, key: str, value: str | None) -> str:
    block = re.sub(rf"^{key}=.*\n", "", block, flags=re.M)
    return block if value is None else block.replace("BEGIN IONS\n", f"BEGIN IONS\n{key}={value}\n")


def peaks_of(block: str) -> list[str]:
    return [ln for ln in block.splitlines() if ln and ln[0].isdigit()]


def with_peaks(block: str, peaks: list[str]) -> str:
    head = [ln for ln in block.splitlines() if ln and not ln[0].isdigit() and ln != "END IONS"]
    return "\n".join(head + peaks + ["END IONS"]) + "\n"


bad = {
    "no_pepmass": set_key(good[0], "PEPMASS", None),
    "empty_spectrum": with_peaks(good[1], []),
    "nan_intensity": with_peaks(good[2], [p if i != 1 else p.split()[0] + " nan"
                                          for i, p in enumerate(peaks_of(good[2]))]),
    "negative_intensity": with_peaks(good[3], [p if i != 0 else p.split()[0] + " -5.0"
                                               for i, p in enumerate(peaks_of(good[3]))]),
    "invalid_smiles": set_key(good[4], "SMILES", "C1CC(=O"),
    "duplicate_id": good[5],
}
# one MGF holding good records and every kind of bad record, plus a duplicate of a good one
records = [blocks[10], blocks[11], *bad.values(), good[5], blocks[12]]
(HERE / "mixed_bad_records.mgf").write_text("".join(records))
# MGF cut in the middle of a record (no END IONS)
(HERE / "truncated.mgf").write_text("".join(blocks[20:23]) + blocks[23][: len(blocks[23]) // 2])
# mzML cut in the middle: no longer well-formed XML
with gzip.open(DATA / "matchms_testdata.mzML.gz", "rb") as fh:
    mzml = fh.read()
(HERE / "truncated.mzML").write_bytes(mzml[: len(mzml) // 2])
# not a spectrum file at all, under a spectrum file name
(HERE / "not_spectra.mgf").write_text("this is a sample sheet, not an MGF\nsample\tpath\n")


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# -- MGF: bad metadata values (each one record), and a cut gzip -------------------------------
meta_bad = {
    "inf_pepmass": set_key(blocks[31], "PEPMASS", "inf"),
    "text_pepmass": set_key(blocks[32], "PEPMASS", "abc"),
    "sideways_ionmode": set_key(blocks[33], "IONMODE", "sideways"),
}
(HERE / "bad_metadata.mgf").write_text(blocks[30] + "".join(meta_bad.values()) + blocks[34])
mgf_8 = "".join(blocks[40:48]).encode()
(HERE / "truncated.mgf.gz").write_bytes(gz(mgf_8)[: int(len(gz(mgf_8)) * 0.6)])
(HERE / "empty.mgf").write_text("")
(HERE / "blank.mgf").write_text("\n\n   \n")

# -- mzML / mzXML: a run that gives its precursors only as isolation window targets -----------
RUN = DATA.parent.parent / "resources" / "runs" / "pestmix_dda.mzML.gz"
with gzip.open(RUN, "rb") as fh:
    pest = fh.read()
(HERE / "truncated_isolation_window.mzML").write_bytes(pest[:120_000])
head = gz(pest[:300_000])
(HERE / "truncated.mzML.gz").write_bytes(head[: len(head) // 2])
try:  # mzXML written by pyOpenMS from the same run, then cut
    import pyopenms as oms

    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(RUN), exp)
    tmp = HERE / ".pestmix.mzXML"
    oms.MzXMLFile().store(str(tmp), exp)
    mzxml = tmp.read_bytes()
    tmp.unlink()
    (HERE / "truncated.mzXML").write_bytes(mzxml[:80_000])
except ImportError:
    pass

# -- MSP: one bad record must not cost the file ------------------------------------------------
msp = (DATA / "massbank_ei_5.msp").read_text()
recs = [r.strip("\n") + "\n" for r in msp.split("\n\n") if r.strip()]


def msp_set(rec: str, key: str, value: str | None) -> str:
    lines = [ln for ln in rec.splitlines() if not ln.lower().startswith(key.lower() + ":")]
    if value is not None:
        lines.insert(1, f"{key}: {value}")
    return "\n".join(lines) + "\n"


def renamed(rec: str, suffix: str) -> str:
    rec = re.sub(r"^(DB#|SPECTRUM_ID): (.*)$", rf"\1: \2{suffix}", rec, flags=re.M)
    return re.sub(r"^NAME: (.*)$", rf"NAME: \1{suffix}", rec, count=1, flags=re.M)


peak_lines = [i for i, ln in enumerate(recs[3].splitlines()) if ln[:1].isdigit()]
r3 = recs[3].splitlines()
r3[peak_lines[5]] = r3[peak_lines[5]].split()[0]  # a peak line without its intensity
n4 = int(re.search(r"^Num Peaks: (\d+)", recs[4], re.M).group(1))
last = renamed(recs[2], "-copy")
msp_bad = [
    recs[0],                                                      # good
    msp_set(recs[1], "Num Peaks", None),                          # missing Num Peaks
    msp_set(renamed(recs[2], "-x"), "Num Peaks", "many"),         # Num Peaks not a number
    "\n".join(r3) + "\n",                                         # peak without intensity
    msp_set(recs[4], "Num Peaks", str(n4 + 5)),                   # wrong Num Peaks
    renamed(recs[0], "-copy"),                                    # good
    last[: len(last) // 2],                                       # cut last record
]
(HERE / "bad_records.msp").write_text("\n".join(msp_bad))
(HERE / "truncated.msp.gz").write_bytes(gz(msp.encode())[: int(len(gz(msp.encode())) * 0.6)])
(HERE / "empty.msp").write_text("")

# -- candidate files and configs that a user gets wrong ----------------------------------------
(HERE / "candidates_wrong_shape.json").write_text('{"CCO": 5}\n')
(HERE / "candidates_syntax_error.json").write_text('{"CCO": ["CCO", "CCN",]}\n')
(HERE / "candidates_no_columns.tsv").write_text("id\tstructure\nq1\tCCO\n")
ids = re.findall(r"^SPECTRUMID=(.*)$", "".join(blocks[:3]), re.M)
smiles = re.findall(r"^SMILES=(.*)$", "".join(blocks[:3]), re.M)
rows = ["query_id\tsmiles",
        *(f"{i}\t{s}" for i, s in zip(ids, smiles, strict=True)),
        f"{ids[0]}\tCCO", f"{ids[0]}\tC1CC(=O", f"{ids[1]}\t", f"{ids[1]}\tnot a smiles",
        "CCMSLIB_NO_SUCH_QUERY\tCCO", "CCMSLIB_NO_SUCH_QUERY\tCCN"]
(HERE / "candidates_bad_rows.tsv").write_text("\n".join(rows) + "\n")
(HERE / "pesticides_first3.mgf").write_text("".join(blocks[:3]))
(HERE / "config_syntax_error.yaml").write_text("min_peaks: [3\nmax_peaks: 500\n")
(HERE / "config_unknown_key.yaml").write_text("min_peaks: 3\nminimum_peaks: 5\n")
print("wrote", sorted(p.name for p in HERE.iterdir()))
