"""The settings of preprocessing (:mod:`msid.preprocess`), apart from its filters: light to
import (no matchms), so that the workflow checks them when it starts, in every process."""

from __future__ import annotations

from dataclasses import dataclass, field

from msid.folds import FoldSpec


@dataclass
class PreprocessConfig:
    """Filter settings; defaults suit high-resolution ESI MS/MS."""

    mz_min: float = 10.0
    mz_max: float = 2000.0
    min_relative_intensity: float = 0.001  # noise floor, fraction of base peak
    max_peaks: int = 512
    min_peaks: int = 1
    require_precursor_mz: bool = True
    require_structure: bool = False  # libraries and training data need a parseable structure
    # libraries and training data: SMILES standardised (a salt becomes its parent) and checked
    # against the InChIKey, a wrong label quarantined. Queries (False): the annotation is
    # carried as written; an unknown's label is never a reason to drop its spectrum
    standardise_structures: bool = True
    assign_folds: bool = False
    folds: FoldSpec = field(default_factory=FoldSpec)

    def __post_init__(self) -> None:
        if not 0 <= self.mz_min < self.mz_max:
            raise ValueError(f"PreprocessConfig: mz_min ({self.mz_min}) must be >= 0 and below "
                             f"mz_max ({self.mz_max})")
        if self.min_peaks < 1 or self.max_peaks < self.min_peaks:
            raise ValueError(f"PreprocessConfig: need 1 <= min_peaks ({self.min_peaks}) <= "
                             f"max_peaks ({self.max_peaks})")
        if not 0 <= self.min_relative_intensity < 1:
            raise ValueError("PreprocessConfig: min_relative_intensity must be in [0, 1)")

    @classmethod
    def from_dict(cls, d: dict | None) -> PreprocessConfig:
        """Settings from a mapping; an unknown key or a value of the wrong type is an error
        naming it (folds: a mapping of FoldSpec's train/val/test/salt)."""
        from msid.models.config import config_from_dict, settings

        d = dict(d or {})
        folds = d.pop("folds", None)
        cfg = config_from_dict(cls, d)
        if folds:
            cfg.folds = config_from_dict(FoldSpec, settings(FoldSpec, folds))
        return cfg
