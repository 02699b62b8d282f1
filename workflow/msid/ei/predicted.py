"""What marks a predicted (in-silico) EI spectrum in a store or MSP file, and which library
records are predicted: matches to them are weaker evidence than to measured spectra (the
mzTab-M export reports them at MSI level 3)."""

from __future__ import annotations

import os

from msid.store import SpectrumStore

#: ``instrument_type`` of a predicted spectrum (stores; ``Instrument_type`` in MSP files)
INSILICO_INSTRUMENT = "in-silico EI"


def predicted_ids(library: str | os.PathLike) -> set[str]:
    """Ids of the predicted (in-silico) spectra in an EI library store."""
    with SpectrumStore(library) as st:
        md = st.metadata
    return set(md.loc[md["instrument_type"] == INSILICO_INSTRUMENT, "id"].astype(str))
