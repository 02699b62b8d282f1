"""Readers for raw runs and spectral libraries; all yield :class:`RawSpectrum` or quarantine."""

from msid.io.errors import InputFileError
from msid.io.raw import RawSpectrum, read_spectra, sniff_format

__all__ = ["InputFileError", "RawSpectrum", "read_spectra", "sniff_format"]
