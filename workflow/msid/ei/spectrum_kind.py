"""Whether spectra given to EI matching look like EI spectra at all (light: the report uses it)."""

from __future__ import annotations

import pandas as pd


def ms2_like_warning(metadata: pd.DataFrame) -> str:
    """A warning when most spectra carry a precursor m/z, as MS/MS spectra do ('' if not):
    EI matching is meant for 70 eV EI (GC-MS) spectra, and scores MS/MS spectra all the same."""
    n = len(metadata)
    with_precursor = int((pd.to_numeric(metadata["precursor_mz"], errors="coerce")
                          .fillna(0) > 0).sum()) if n else 0
    if with_precursor <= n / 2:
        return ""
    return (f"{with_precursor} of {n} spectra carry a precursor m/z, as MS/MS spectra do: EI "
            "methods match 70 eV EI (GC-MS) spectra; for MS/MS use --method library, ranker, "
            "glmr or denovo (in the workflow: a run of kind small_molecule, not ei)")
