"""msid: identify molecules from mass spectra."""

__version__ = "0.1.0"
