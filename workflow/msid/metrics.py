"""The MetricsRecord contract: what the harness writes and the leaderboard and reports read.

One JSON file per (method, dataset, fold, candidate-set kind): every metric with its bootstrap
CI, the number of queries, the config and model hashes and the msid version.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
