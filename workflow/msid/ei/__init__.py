"""Electron-ionization (GC-MS) spectra: ingestion shared by EI spectrum prediction and EI
library search (``msid.ei.spectra``), the NEIMS-style predictors and the EI search methods."""
