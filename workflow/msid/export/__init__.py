"""Standard outputs other tools open: mzTab-M 2.0 identifications, MGF/MSP spectra."""
