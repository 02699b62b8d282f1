"""Regenerate the bad-input corpus from real spectra (GNPS pesticides MGF, a matchms mzML).

Each file takes real records and breaks them the way real files break. Run from the repo root:
    python tests/data/bad/make_bad_inputs.py
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
print("wrote", sorted(p.name for p in HERE.iterdir()))
