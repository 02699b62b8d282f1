"""Configuration of the generation models (dataclasses, presets ``tiny`` for 2 CPU cores and
``seed`` for a GPU). Unknown keys are errors, as in :mod:`msid.models.config`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from msid.models.config import (
    EncoderConfig,
    TrainConfig,
    config_from_dict,
    settings,
    with_encoder_from_dict,
)

SIZES = ("tiny", "seed")
FUSIONS = ("none", "cross", "concat", "average", "copy")
MAX_CANDIDATE_SLOTS = 64  # copy fusion: candidate tags (random per training set, 0..K-1 at use)




@dataclass
class GenModelConfig:
    """Spectrum-conditioned SMILES decoder (+ GLMR candidate fusion when ``fusion != none``)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    max_peaks: int = 48
    d_model: int = 128  # decoder width
    n_layers: int = 3
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    n_memory: int = 4  # spectrum tokens the pooled spectral embedding is projected to
    mass_freqs: int = 32  # Fourier features of the neutral mass (the decoder's mass token)
    tokenizer: str = "smiles"  # "smiles" or "selfies"
    max_len: int = 100  # tokens incl. <bos>/<eos>
    fusion: str = "none"  # GLMR: "cross" (spectrum tokens attend to candidates), "concat",
    #                       "average" (candidates as frozen Ranker encodings), "copy" (the
    #                       candidates' SMILES tokens join the memory and a pointer can copy
    #                       them); "none" for the de novo model
    cand_dim: int = 0  # GLMR: size of the frozen candidate encodings (set at training; not
    #                    used by "copy")

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}")
        if self.tokenizer not in ("smiles", "selfies"):
            raise ValueError("tokenizer must be 'smiles' or 'selfies'")

    @classmethod
    def from_dict(cls, d: dict | None) -> GenModelConfig:
        return with_encoder_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PretrainConfig:
    """Decoder pretraining on pool molecules (a mass-conditioned SMILES language model)."""

    max_molecules: int = 60_000  # subsample of the pool (0: all)
    max_steps: int = 1200
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> PretrainConfig:
        return config_from_dict(cls, d)


@dataclass
class GLMRConfig:
    """GLMR training and re-ranking."""

    k: int = 40  # stage 1: Ranker top-K
    train_k: int = 20  # candidates per training spectrum
    p_true: float = 0.8  # training: share of sets holding the true molecule (as at test)
    max_train_spectra: int = 4000
    beam_width: int = 5  # stage 2: generated molecules per query
    weight: float = 0.1  # stage 3: score = ranker cosine + weight * max Tanimoto to generated
    #                      (tiny model, 100 val queries: 0, 0.05, 0.1, 0.2 tie on Hit@1 at 0.50,
    #                      0.5 gives 0.495, 1.0 gives 0.465)
    similarity: str = "tanimoto"
    max_steps: int = 0  # GLMR training steps (0: half the de novo model's)

    @classmethod
    def from_dict(cls, d: dict | None) -> GLMRConfig:
        return config_from_dict(cls, d)


@dataclass
class GenRunConfig:
    model: GenModelConfig
    train: TrainConfig
    pretrain: PretrainConfig
    glmr: GLMRConfig

    @classmethod
    def from_dict(cls, d: dict | None) -> GenRunConfig:
        d = settings(cls, d)
        size = d.pop("size", "tiny")
        if size not in SIZES:
            raise ValueError(f"unknown size '{size}' (one of {SIZES})")
        m = dict(_MODEL[size])
        model = settings(GenModelConfig, d.pop("model", None))
        enc = {**_ENCODER[size], **settings(EncoderConfig, model.get("encoder"))}
        m.update({k: v for k, v in model.items() if k != "encoder"})
        m["encoder"] = enc
        t = {**_TRAIN[size], **settings(TrainConfig, d.pop("train", None))}
        p = {**_PRETRAIN[size], **settings(PretrainConfig, d.pop("pretrain", None))}
        g = {**_GLMR[size], **settings(GLMRConfig, d.pop("glmr", None))}
        if d:
            raise ValueError(f"GenRunConfig: unknown keys {sorted(d)}")
        return cls(GenModelConfig.from_dict(m), TrainConfig.from_dict(t),
                   PretrainConfig.from_dict(p), GLMRConfig.from_dict(g))

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": self.train.to_dict(),
                "pretrain": asdict(self.pretrain), "glmr": asdict(self.glmr)}


_ENCODER = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, ff_mult=2, n_freqs=32, dropout=0.1,
                 nominal_mz_max=1000, precursor_in_tokens=False, adduct_embedding=True),
    "seed": dict(d_model=256, n_layers=6, n_heads=8, ff_mult=4, n_freqs=128, dropout=0.1,
                 nominal_mz_max=2000, precursor_in_tokens=False, adduct_embedding=True),
}
_MODEL = {
    "tiny": dict(max_peaks=48, d_model=96, n_layers=3, n_heads=4, ff_mult=2, n_memory=4,
                 max_len=80),
    "seed": dict(max_peaks=128, d_model=512, n_layers=6, n_heads=8, ff_mult=4, n_memory=16),
}
# tiny: measured on 200 val spectra (resources/models/README.md). Pretraining 200 steps (batch
# 48, 40k molecules) then 300 on spectra gave token NLL 1.339 and a decoder that writes carbon
# chains; 3,000 pretraining steps (batch 64, 150k molecules) then 1,200 give NLL 0.880.
_TRAIN = {
    "tiny": dict(batch_size=48, lr=5e-4, warmup_steps=50, max_steps=1200, eval_every=250,
                 checkpoint_every=250, patience=0, bf16=False, compile=False, adducts=[],
                 val_max_queries=300, num_threads=1),
    "seed": dict(batch_size=256, lr=3e-4, warmup_steps=1000, max_steps=40000, eval_every=2000,
                 checkpoint_every=2000, patience=6, bf16=True, compile=True, ema_decay=0.999,
                 adducts=[], num_workers=8, val_max_queries=2000),
}
_PRETRAIN = {
    "tiny": dict(max_molecules=150_000, max_steps=3000, batch_size=64, lr=1e-3),
    "seed": dict(max_molecules=0, max_steps=100_000, batch_size=512, lr=5e-4),
}
_GLMR = {
    "tiny": dict(max_train_spectra=4000, train_k=20, max_steps=300),
    "seed": dict(max_train_spectra=0, train_k=40),
}
