"""The MetricsRecord contract: what the harness writes and the leaderboard and reports read.

One JSON file per (method, dataset, fold, candidate-set kind, variant, split): every metric
with its bootstrap CI, the number of queries, the config and model hashes and the msid version.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from msid import __version__
from msid.atomic import write_text


@dataclass
class Metric:
    value: float
    ci_low: float
    ci_high: float


@dataclass
class MetricsRecord:
    task: str
    method: str
    dataset: str
    fold: str
    candidates: str  # candidate-set kind: "mass", "formula", "library", ...
    n_queries: int
    metrics: dict[str, Metric]
    config_hash: str = ""
    model_hash: str = ""
    extra: dict = field(default_factory=dict)
    variant: str = "standard"  # "standard" or a control such as "spectrum_blind"
    split: str = "inchikey"  # which queries: "inchikey" (the whole fold) or "far" (see benchmark)
    msid_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MetricsRecord:
        d = json.loads(text)
        d["metrics"] = {k: Metric(**v) for k, v in d["metrics"].items()}
        return cls(**d)

    def write(self, path: str | os.PathLike) -> Path:
        return write_text(path, self.to_json())


def config_hash(config: object) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


# -- tie-aware ranking metrics -------------------------------------------------------------------
# A method's list order among equal scores is arbitrary, and a candidate list can hold the true
# molecule at any position, so list order must never decide a tie with the truth. Every Hit@k in
# msid (the harness and the training validator) is the expectation over a uniformly random order
# of the tied candidates: with ``above`` candidates scoring higher than the truth and ``tied``
# other candidates scoring the same, the truth lands at each of the ranks above+1 .. above+tied+1
# with equal probability. Constant scores over n candidates thus give Hit@1 = 1/n (chance).
def expected_hit(above, tied, k: int):
    """Expected Hit@k (array or scalar) when ties with the truth are broken at random."""
    above = np.asarray(above, dtype=np.float64)
    tied = np.asarray(tied, dtype=np.float64)
    return np.clip((k - above) / (tied + 1.0), 0.0, 1.0)


def expected_rank(above, tied):
    """Mean rank of the truth over random orders of its ties (1-based)."""
    return np.asarray(above, dtype=np.float64) + 1.0 + np.asarray(tied, dtype=np.float64) / 2.0


def truth_ties(scores, is_true) -> tuple[int, int]:
    """(candidates scoring higher than the truth, other candidates tied with it) for one query;
    the truth's best-scoring copy counts. Raises if no candidate is the truth."""
    scores = np.asarray(scores, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    if not is_true.any():
        raise ValueError("the truth is not among the candidates")
    s = scores[is_true].max()
    other = scores[~is_true]
    return int((other > s).sum()), int((other == s).sum())
