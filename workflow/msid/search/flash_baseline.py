"""A plain FlashEntropySearch script: the yardstick ``msid bench`` times ``msid identify`` against.

It is what a user would write with ms-entropy alone: read the library and the queries with
ms-entropy's own reader, build a FlashEntropySearch index, run identity search for each query
(the same tolerances as msid's library search: 0.01 Da precursor window, 0.02 Da fragments,
1 % noise floor, 0.05 Da peak merging, precursor-ion removal 1.6 Da), and write each query's
best hit. It imports nothing from msid, so its time is the script's own.

    python -m msid.search.flash_baseline LIBRARY QUERIES OUT.tsv
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
from ms_entropy import FlashEntropySearch, read_one_spectrum

PRECURSOR_TOL_DA = 0.01
FRAGMENT_TOL_DA = 0.02
NOISE = 0.01
MERGE_DA = 0.05
PRECURSOR_REMOVAL_DA = 1.6


def _spectra(path: str) -> list[dict]:
    out = []
    for n, s in enumerate(read_one_spectrum(path)):
        mz = s.get("precursor_mz") or s.get("pepmass")
        try:
            precursor = float(str(mz).split()[0])
        except (TypeError, ValueError):
            continue
        peaks = np.asarray(s.get("peaks", []), dtype=np.float32).reshape(-1, 2)
        if len(peaks):
            out.append({"precursor_mz": precursor, "peaks": peaks,
                        "id": str(s.get("spectrum_id") or s.get("spectrumid") or s.get("title")
                                  or s.get("identifier") or f"index={n}"),
                        "inchikey": str(s.get("inchikey") or "")})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("library")
    p.add_argument("queries")
    p.add_argument("out")
    a = p.parse_args(argv)
    search = FlashEntropySearch()
    library = search.build_index(_spectra(a.library), min_ms2_difference_in_da=MERGE_DA,
                                 precursor_ions_removal_da=PRECURSOR_REMOVAL_DA,
                                 noise_threshold=NOISE)
    with open(a.out, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["query_id", "library_id", "inchikey", "score"])
        for q in _spectra(a.queries):
            peaks = search.clean_spectrum_for_search(
                q["precursor_mz"], q["peaks"], precursor_ions_removal_da=PRECURSOR_REMOVAL_DA,
                noise_threshold=NOISE, min_ms2_difference_in_da=MERGE_DA)
            scores = search.identity_search(q["precursor_mz"], peaks, PRECURSOR_TOL_DA,
                                            FRAGMENT_TOL_DA)
            best = int(np.argmax(scores)) if len(scores) else -1
            if best >= 0 and scores[best] > 0:
                w.writerow([q["id"], library[best]["id"], library[best]["inchikey"],
                            f"{scores[best]:.6f}"])
            else:
                w.writerow([q["id"], "", "", "0"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
