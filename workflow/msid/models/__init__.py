"""Retrieval models (MassSpecGym retrieval task): Ranker, Reconstructor, DeepSets, FP FFN.

Light to import: the heavy parts load on use. Entry points:

* :func:`train_model` (``msid.models.training``): train one family, write safetensors + card;
* ``msid.models.methods``: registers the ``ranker``/``reconstructor``/``deepsets``/``fp_ffn``
  identification methods;
* :class:`RunConfig` presets (family x ``tiny``/``seed``).
"""

from __future__ import annotations

from msid.models.config import FAMILIES, SIZES, EncoderConfig, ModelConfig, RunConfig, TrainConfig

__all__ = ["FAMILIES", "SIZES", "EncoderConfig", "ModelConfig", "RunConfig", "TrainConfig",
           "train_model"]


def train_model(*args, **kwargs) -> dict:
    """See :func:`msid.models.training.train_model`."""
    from msid.models.training import train_model as _train

    return _train(*args, **kwargs)
