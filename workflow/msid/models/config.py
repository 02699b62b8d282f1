"""Configuration dataclasses for the retrieval models, and size presets (family x size).

``tiny`` trains on 2 CPU cores in minutes; ``seed`` is the GPU starting point. Every config is a
plain dataclass with ``from_dict`` (unknown keys are an error, so typos do not pass silently) and
``to_dict`` (what the model card records).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field, fields
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

FAMILIES = ("ranker", "reconstructor", "deepsets", "fp_ffn")
ENSEMBLE_FAMILIES = ("ranker", "reconstructor")  # the baselines stay as MassSpecGym has them
SIZES = ("tiny", "seed")


#: what a config value of each declared scalar type may be (YAML gives int for 1 and float for
#: 1.0; a bool is never taken for a number)
_SCALARS: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,),
                                          str: (str,)}


def _type_problem(value: object, hint: object) -> str:
    """'' when ``value`` fits the declared type ``hint`` (scalars, lists and tuples checked;
    other annotations are the dataclass's own business), else what was expected."""
    origin = get_origin(hint)
    if hint in _SCALARS:
        ok = isinstance(value, _SCALARS[hint]) and not (hint is not bool
                                                          and isinstance(value, bool))
        return "" if ok else hint.__name__
    if origin in (list, tuple):
        return "" if isinstance(value, list | tuple) else "a list"
    if origin in (Union, UnionType) and type(None) in get_args(hint):
        if value is None:
            return ""
        rest = [h for h in get_args(hint) if h is not type(None)]
        return _type_problem(value, rest[0]) if len(rest) == 1 else ""
    return ""


def settings(cls, d: object) -> dict:
    """``d`` (None: no settings) as a dict of settings for ``cls``; anything but a mapping is
    an error naming ``cls`` (``train: 5`` in a YAML config, say)."""
    if d is not None and not isinstance(d, Mapping):
        raise ValueError(f"{cls.__name__}: expected a mapping of settings, not "
                         f"{type(d).__name__} {d!r}")
    return dict(d or {})


def config_from_dict(cls, d: dict | None):
    """``cls(**d)`` for a config dataclass; an unknown key, or a value of the wrong type, is an
    error naming the key. A float setting may be given as a numeric string (YAML 1.1 reads
    ``1e-3`` as one)."""
    d = settings(cls, d)
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    hints = get_type_hints(cls)
    for key, value in d.items():
        if hints.get(key) is float and isinstance(value, str):
            with suppress(ValueError):
                d[key] = value = float(value)
        expected = _type_problem(value, hints.get(key))
        if expected:
            raise ValueError(f"{cls.__name__}: {key} must be {expected}, not "
                             f"{type(value).__name__} {value!r}")
    return cls(**d)



def with_encoder_from_dict(cls, d: dict | None):
    """A model config holding an ``encoder: EncoderConfig`` (retrieval and generation models),
    from a dict whose ``encoder`` entry may itself be a dict."""
    d = settings(cls, d)
    enc = d.pop("encoder", None)
    cfg = config_from_dict(cls, d)
    if enc is not None:
        cfg.encoder = enc if isinstance(enc, EncoderConfig) else EncoderConfig.from_dict(enc)
    return cfg


@dataclass
class EncoderConfig:
    """Spectral transformer encoder (peaks as a set of tokens)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    n_freqs: int = 32  # Fourier frequencies of m/z (log-spaced periods)
    min_period: float = 1e-3  # Da
    max_period: float = 1e3  # Da
    neutral_losses: bool = True  # also encode precursor m/z - peak m/z
    intensity_eps: float = 1e-4  # log(intensity + eps)
    precursor_in_tokens: bool = True  # add the precursor m/z code to every peak token
    adduct_embedding: bool = False  # add a learned adduct code (msid.spectra_dataset.ADDUCTS)
    #                                 to every token: lets one model train on every adduct
    nominal_mz_max: int = 0  # >0: also a learned embedding of each peak's (and loss's) nominal
    #                          m/z, up to this many Da (0: Fourier features only)
    binned_width: float = 0.0  # >0: one more token, the whole spectrum binned at this width
    #                            (Da, square-root intensities) through a learned projection:
    #                            the 0.1 Da fragment identity the Fingerprint FFN exploits
    binned_max_mz: float = 1000.0
    binned_hidden: int = 256

    @classmethod
    def from_dict(cls, d: dict | None) -> EncoderConfig:
        return config_from_dict(cls, d)


@dataclass
class ModelConfig:
    family: str = "ranker"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    max_peaks: int = 64  # top-N peaks by intensity
    fp_bits: int = 2048  # Morgan fingerprint (target, and molecule input)
    fp_radius: int = 2
    mol_fp: str = "count"  # molecule encoder input: "count" (log1p counts) or "bits"
    emb_dim: int = 128  # ranker: joint embedding size
    mol_hidden: int = 512  # ranker: molecule MLP hidden size
    head_hidden: int = 512  # reconstructor head / baselines' hidden size
    focal_gamma: float = 2.0
    focal_alpha: float = -1.0  # <0: no class weighting
    init_temperature: float = 0.07
    ffn_bin_width: float = 0.1  # fp_ffn: bin width (Da)
    ffn_max_mz: float = 1005.0
    ffn_layers: int = 2
    deepsets_hidden: int = 128
    deepsets_layers: int = 2
    deepsets_mz_freqs: int = 0  # deepsets: 0 = m/z as one scalar (m/z / 1000); n > 0 = plus
    #                    n Fourier frequencies of m/z (periods 0.01-1000 Da), which it needs to
    #                    tell peaks apart at less than ~1 Da
    dropout: float = 0.1  # heads / baselines
    activation: str = "gelu"  # heads / baselines: "gelu" or "relu"
    intensity_transform: str = "none"  # baselines: "none" or "sqrt" of base-peak-relative
    intensity_scale: float = 1.0  # baselines: base peak intensity before the transform
    peak_dropout: float = 0.0  # training augmentation: each peak hidden with this probability
    mol_layers: int = 2  # ranker: hidden layers of the molecule MLP (0: linear projection)
    mol_input_dropout: float = 0.0  # ranker: fingerprint features dropped while training
    fp_aux_weight: float = 0.0  # ranker: weight of an auxiliary fingerprint-prediction loss
    in_batch_negatives: bool = True  # ranker: other spectra's molecules count as negatives
    members: list = field(default_factory=list)  # ensemble (ENSEMBLE_FAMILIES): member configs
    #                    (a candidate's score is the mean of the members' cosines)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family '{self.family}' (one of {FAMILIES})")
        if self.activation not in ("gelu", "relu"):
            raise ValueError("activation must be 'gelu' or 'relu'")
        if self.intensity_transform not in ("none", "sqrt"):
            raise ValueError("intensity_transform must be 'none' or 'sqrt'")
        if self.mol_fp not in ("count", "bits"):
            raise ValueError("mol_fp must be 'count' or 'bits'")
        if self.members:
            if self.family not in ENSEMBLE_FAMILIES:
                raise ValueError(f"only the {' and '.join(ENSEMBLE_FAMILIES)} families have "
                                 "ensemble members (the baselines stay single, faithful models)")
            shared = ("fp_bits", "fp_radius", "mol_fp", "max_peaks")
            for m in self.members:
                if {k: m.get(k) for k in shared} != {k: getattr(self, k) for k in shared}:
                    raise ValueError(f"ensemble members must share {shared} with the ensemble")

    @classmethod
    def from_dict(cls, d: dict | None) -> ModelConfig:
        return with_encoder_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 2000  # optimizer steps
    min_lr_ratio: float = 0.05  # cosine decays to lr * this
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0: no EMA
    eval_every: int = 250
    checkpoint_every: int = 250
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    seed: int = 0
    device: str = "auto"  # auto: cuda > mps > cpu
    bf16: bool = True  # autocast bf16 (CUDA only)
    compile: bool = False  # torch.compile (CUDA only)
    num_workers: int = 0
    num_threads: int = 0  # CPU: torch intra-op threads (0: torch's default); 1 is fastest on
    #                       small or shared CPUs (OpenMP spinning under contention)
    sample_by: str = "spectrum"  # "structure": each epoch visits every structure once
    n_hard_negatives: int = 4  # ranker: per sample, drawn from the candidate index
    hard_negative_pool: int = 32  # ranker: candidates kept per training structure
    hard_negative_ppm: float = 10.0
    hard_negative_source: str = "index"  # ranker: "index" (same mass), "train" (training
    #                                      structures nearest in mass) or "both"
    adducts: list[str] = field(default_factory=lambda: ["[M+H]+"])  # [] = all
    max_train_spectra: int = 0  # 0: all
    val_max_queries: int = 500
    val_max_candidates: int = 256
    val_min_candidates: int = 1  # validation queries need at least this many candidates (16:
    #                              the hard setting, where a model must read the spectrum)
    max_train_seconds: float = 0.0  # >0: stop after this much training time (not reproducible)
    progress: bool = True
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.sample_by not in ("spectrum", "structure"):
            raise ValueError("sample_by must be 'spectrum' or 'structure'")
        if self.hard_negative_source not in ("index", "train", "both"):
            raise ValueError("hard_negative_source must be 'index', 'train' or 'both'")

    @classmethod
    def from_dict(cls, d: dict | None) -> TrainConfig:
        d = settings(cls, d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return config_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


# Size presets. Measured on the MassBank val fold (1,000 [M+H]+ queries, mass candidates; the
# numbers are in resources/models/README.md): the precursor m/z added to every peak token lets a
# model match in-batch molecules by mass alone (useless when all candidates share that mass) and
# it then overfits within a few hundred steps; without it, neutral losses still carry the
# precursor. Nominal-mass embeddings, dropout and peak dropout help at the tiny size.
_ENCODERS = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, ff_mult=2, n_freqs=32, dropout=0.1,
                 nominal_mz_max=1000, precursor_in_tokens=False),
    "seed": dict(d_model=256, n_layers=6, n_heads=8, ff_mult=4, n_freqs=128, dropout=0.1,
                 nominal_mz_max=2000, precursor_in_tokens=False),
}

_MODELS = {
    "tiny": dict(max_peaks=48, emb_dim=128, mol_hidden=256, head_hidden=512,
                 deepsets_hidden=128, ffn_layers=2, peak_dropout=0.1),
    "seed": dict(max_peaks=128, emb_dim=512, mol_hidden=2048, head_hidden=2048,
                 deepsets_hidden=512, ffn_layers=3, fp_bits=4096, peak_dropout=0.1),
}

_TRAIN = {
    "tiny": dict(batch_size=64, lr=1e-3, warmup_steps=100, max_steps=1500, eval_every=250,
                 checkpoint_every=250, patience=4, bf16=False, compile=False, ema_decay=0.0,
                 n_hard_negatives=3, val_max_queries=300),
    "seed": dict(batch_size=256, lr=3e-4, warmup_steps=1000, max_steps=60000, eval_every=2000,
                 checkpoint_every=2000, patience=6, bf16=True, compile=True, ema_decay=0.999,
                 num_workers=8, val_max_queries=2000),
}

# Ensembles: (family, size) -> per-member overrides on top of the family preset. Members that
# see different data or start from different seeds disagree where each is unsure. On the val
# fold (queries with at least 2 candidates; resources/models/README.md) single tiny members
# score 0.43-0.46 Hit@1 with mass candidates, two members 0.497, these four 0.566 (formula
# candidates: 0.40-0.41 single, 0.443 two, 0.491 four). Training longer does not help: an
# every-adduct member peaks near step 2,100 of 6,000. Members share the ensemble's validation
# queries (1,000 for the tiny Ranker, see _FAMILY: on 300, a noisy early peak stopped one
# member at step 750).
_EVERY_ADDUCT = {"model": {"encoder": {"adduct_embedding": True}},  # every adduct, adduct code
                 "train": {"adducts": [], "max_steps": 3000, "eval_every": 150,
                           "checkpoint_every": 150, "patience": 10}}
ENSEMBLES: dict[tuple[str, str], list[dict]] = {
    ("ranker", "tiny"): [
        {},  # [M+H]+ spectra only
        _EVERY_ADDUCT,
        {**_EVERY_ADDUCT, "train": {**_EVERY_ADDUCT["train"], "seed": 1}},
        {**_EVERY_ADDUCT, "train": {**_EVERY_ADDUCT["train"], "seed": 2}},
    ],
}

# MassSpecGym's fingerprint-prediction baselines, trained as MassSpecGym trains them: BCE against
# 2048-bit Morgan (radius 2) fingerprints, Adam (no weight decay) at a constant 1e-3, batch 256,
# no warmup, no gradient clipping, no augmentation, ~8 epochs of the [M+H]+ training spectra
# (35k spectra / 256 = 138 steps per epoch), validated every epoch on the hard setting's val
# queries (at least 16 candidates; on small sets chance is ~0.3 and hides whether a model reads
# the spectrum); the best epoch is kept.
# Intensities are relative to a base peak of 1000 (MassBank's per-mille convention) before the
# square root: with a base peak of 1 the inputs are ~30x smaller, the first layer barely moves
# at lr 1e-3 and the model stays at the mean fingerprint (on 256 training spectra, fingerprint
# F1 after 50 full-batch steps: 0.24 at scale 1, 0.60 at scale 1000).
# The FFN bins every peak (0.1 Da to m/z 1000, square-root intensities, max per bin) into one
# hidden layer of 1024 ReLU units (dropout 0.3); DeepSets embeds each of the 60 most intense
# peaks (m/z, sqrt intensity) with a ReLU MLP, sums, and maps the sum with a second one.
# DeepSets reads m/z through 32 Fourier features besides the scalar: with the scalar alone (or
# raw m/z, as MassSpecGym feeds it) a ReLU MLP is piecewise linear in m/z and cannot tell
# peaks 1 Da apart; trained 552 steps it then ranks hard val queries no better than with
# another query's peaks (Hit@1 0.016 vs 0.023 as shipped before; raw m/z: 0.048 vs 0.048,
# dead units), with the Fourier features 0.138 vs 0.014 (434 val queries).
_BASELINE_TRAIN = dict(batch_size=256, lr=1e-3, weight_decay=0.0, warmup_steps=0,
                       min_lr_ratio=1.0, grad_clip=0.0, max_steps=1104, eval_every=138,
                       checkpoint_every=138, patience=0, val_max_queries=1000,
                       val_min_candidates=16)
_BASELINE_MODEL = dict(fp_bits=2048, fp_radius=2, activation="relu", intensity_transform="sqrt",
                       intensity_scale=1000.0, peak_dropout=0.0)

# Per-family changes to the size presets: (model, train) overrides.
_FAMILY: dict[tuple[str, str], tuple[dict, dict]] = {
    ("fp_ffn", "tiny"): (dict(_BASELINE_MODEL, max_peaks=512, ffn_max_mz=1000.0,
                              ffn_layers=1, head_hidden=1024, dropout=0.3),
                         dict(_BASELINE_TRAIN)),
    ("deepsets", "tiny"): (dict(_BASELINE_MODEL, max_peaks=60, deepsets_hidden=512,
                                deepsets_layers=1, head_hidden=512, dropout=0.0,
                                deepsets_mz_freqs=32),
                           dict(_BASELINE_TRAIN)),
    # the tiny Reconstructor: validated on the hard setting's val queries (like the baselines
    # it is compared with), trained on every adduct (4,309 structures, not 3,046) with an
    # adduct code and the binned-spectrum token (0.1 Da). Val hard Hit@1 on the 434 [M+H]+
    # queries (resources/models/README.md): [M+H]+ only, 1,500 steps 0.230; 12,000-step
    # schedule 0.346 (BCE instead of focal loss 0.283; 96 peaks 0.348 at twice the cost);
    # + binned token 0.353; every adduct 0.346; every adduct + binned token 0.406 (shipped)
    ("reconstructor", "tiny"): (dict(encoder=dict(binned_width=0.1, binned_hidden=256,
                                                  adduct_embedding=True)),
                                dict(max_steps=8000, eval_every=1000, checkpoint_every=1000,
                                     patience=3, val_max_queries=1000, val_min_candidates=16,
                                     adducts=[])),
    # the tiny Ranker: a linear molecule encoder (less room to memorise the ~3k training
    # structures), fingerprint-bit dropout, substructure supervision of the spectrum encoder,
    # every available negative close in mass, half from the candidate index, half other
    # training structures (so "decoy-like" is not a shortcut); it peaks early, so short with
    # frequent validation
    ("ranker", "tiny"): (dict(mol_layers=0, mol_input_dropout=0.2, fp_aux_weight=1.0),
                         dict(weight_decay=0.05, n_hard_negatives=8, hard_negative_source="both",
                              max_steps=800, eval_every=100, checkpoint_every=100,
                              patience=6, val_max_queries=1000)),
    ("ranker", "seed"): (dict(mol_input_dropout=0.2, fp_aux_weight=1.0),
                         dict(weight_decay=0.05, n_hard_negatives=16, hard_negative_pool=64,
                              hard_negative_source="both")),
}


@dataclass
class RunConfig:
    model: ModelConfig
    train: TrainConfig

    @classmethod
    def preset(cls, family: str, size: str = "tiny") -> RunConfig:
        return cls.from_dict({"family": family, "size": size})

    @classmethod
    def from_dict(cls, d: dict | None) -> RunConfig:
        """``{"family", "size", "model": {...overrides}, "train": {...overrides}}``."""
        d = settings(cls, d)
        family = d.pop("family", None) or settings(ModelConfig, d.get("model")).get("family") \
            or "ranker"
        size = d.pop("size", "tiny")
        if size not in SIZES:
            raise ValueError(f"unknown size '{size}' (one of {SIZES})")
        d.pop("members", None)  # ensemble members: see msid.models.training.train_model
        m_over = settings(ModelConfig, d.pop("model", None))
        t_over = settings(TrainConfig, d.pop("train", None))
        if d:
            raise ValueError(f"RunConfig: unknown keys {sorted(d)}")
        fam_model, fam_train = _FAMILY.get((family, size), ({}, {}))
        fam_model = dict(fam_model)
        enc = {**_ENCODERS[size], **(fam_model.pop("encoder", None) or {}),
               **(m_over.pop("encoder", None) or {})}
        model = ModelConfig.from_dict({**_MODELS[size], **fam_model, **m_over,
                                       "family": family, "encoder": enc})
        train = TrainConfig.from_dict({**_TRAIN[size], **fam_train, **t_over})
        return cls(model, train)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": self.train.to_dict()}
