"""Checks the command line runs before any work: numbers, input files, outputs, config files.

Each failure is an :class:`~msid.io.errors.InputFileError` (or an argparse error for numbers)
whose one-line message names the option or file and what is wrong; ``msid.cli.main`` prints it
and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from msid.io.errors import InputFileError


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {rule}, not {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _whole_number(text, 1, "a positive whole number")


def top_k(text: str) -> int:
    """argparse type for ``--top-k``: a whole number >= 0, where 0 keeps every rank."""
    return _whole_number(text, 0, "0 (every rank) or more")


def spectrum_limit(text: str) -> int:
    """argparse type for ``--max-spectra``: a whole number >= 0, where 0 reads every spectrum."""
    return _whole_number(text, 0, "0 (every spectrum) or more")


def port_number(text: str) -> int:
    """argparse type for a TCP port: 0 (any free port) to 65535."""
    value = _whole_number(text, 0, "0 or more")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, not {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1] (an FDR, a share)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], not {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, not {text}")
    return value


def _label(path: str | os.PathLike, option: str) -> str:
    return f"{option} {path}" if option else str(path)


def check_input(path: str | os.PathLike, option: str = "") -> Path:
    """``path`` exists, is a file and is readable."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(_label(p, option), "does not exist")
    if p.is_dir():
        raise InputFileError(_label(p, option), "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InputFileError(_label(p, option), "is not readable (permission denied)")
    return p


def check_store(path: str | os.PathLike, option: str = "store") -> Path:
    """``path`` is a readable HDF5 file (an msid spectrum store), not a run or library file
    given where a store is read."""
    import h5py

    p = check_input(path, option)
    if not h5py.is_hdf5(p):
        raise InputFileError(_label(p, option), "is not an msid spectrum store (HDF5): make "
                                                "one first with 'msid convert FILE --out "
                                                "STORE.h5'")
    return p


def check_model(path: str | os.PathLike, family: str | None = None,
                option: str = "--model") -> Path:
    """A model file given on the command line, checked before any work: it exists and is a
    file, its card is there and well formed, names ``family`` (when given) and matches the
    weights' sha256 (:func:`msid.modelfile.verified_card`; a ModelFileError names the file)."""
    from msid.modelfile import verified_card

    p = check_input(path, option)
    suffix = p.suffix.lower()
    if suffix == ".json" and p.with_suffix(".safetensors").exists():
        raise InputFileError(_label(p, option), "is a model card: give the weights file beside "
                             f"it, {p.with_suffix('.safetensors')}")
    if suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"):
        raise InputFileError(_label(p, option), "looks like a pickled (torch.save) checkpoint: "
                             "msid reads model weights only as .safetensors with an msid model "
                             "card beside them, and never unpickles a file")
    verified_card(p, family)
    return p


def licence_notice(path: str | os.PathLike, prog: str) -> None:
    """One stderr line when the model at ``path`` is for non-commercial use only (its card's
    licence): the shipped EI models are, and a user should hear it where they use them."""
    from msid.io.licences import NONCOMMERCIAL, card_licence, is_noncommercial
    from msid.modelfile import read_card

    try:
        licence = card_licence(read_card(path))
    except Exception:  # a missing or damaged card is check_model's or the loader's to name
        return
    if is_noncommercial(licence):
        print(f"{prog}: note: {Path(path).name} is licensed {NONCOMMERCIAL} (its "
              "card): trained on non-commercial spectra; commercial-use EI models train with "
              "make models and ei_prediction.commercial_only: true", file=sys.stderr)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


#: the files that come with a model's weights (``ranker.safetensors``): its card, a generator's
#: tokenizer, the training history and the training structures' list
MODEL_COMPANIONS = (("model card", ".json"), ("tokenizer", ".tokenizer.json"),
                    ("training history", ".history.json"),
                    ("training structures", ".train_structures.txt"))


def _with_companions(inputs: dict[str, str | os.PathLike | None]
                     ) -> dict[str, str | os.PathLike | None]:
    """``inputs`` plus, for each model weights file among them, the files beside it that
    belong to it (:data:`MODEL_COMPANIONS`): an output written over a model's card loses the
    model as surely as one written over its weights."""
    out = dict(inputs)
    for option, q in inputs.items():
        if q and Path(q).suffix == ".safetensors":
            for what, suffix in MODEL_COMPANIONS:
                out[f"the {what} of {option}"] = Path(q).with_suffix(suffix)
    return out


def _shipped_model_file(p: Path) -> bool:
    """``p`` is (or will replace) a file in msid's shipped models folder."""
    from msid.resources import DataDirError, data_dir

    try:
        models = data_dir() / "models"
    except DataDirError:
        return False
    return p.exists() and models.is_dir() and _same_file(p.parent, models)


def check_output(path: str | os.PathLike, option: str = "--out",
                 inputs: dict[str, str | os.PathLike | None] | None = None,
                 suffixes: tuple[str, ...] = (), what: str = "",
                 shipped_ok: bool = False) -> Path:
    """``path`` can be written: not a directory, its folder exists or can be made there, it
    ends in one of ``suffixes`` (when given; ``what`` says what such a file is), and it is none
    of ``inputs`` (option -> path: the files the command reads, and outputs already checked)
    nor a file that comes with a model among them (its card, tokenizer...), which writing it
    would destroy; unless ``shipped_ok`` (``msid train``), it is no file of msid's shipped
    models either (the model a method uses when no ``--model`` is given). ``-`` (standard
    output), a FIFO or a device is written into as it is; a symbolic link is written through
    (:mod:`msid.atomic`)."""
    from msid.atomic import STDOUT, destination, is_stream

    p = Path(path)
    inputs = _with_companions(inputs or {})

    def check_suffix() -> None:
        if suffixes and p.suffix.lower() not in suffixes:
            raise InputFileError(_label(p, option), f"must end in {' or '.join(suffixes)}"
                                 + (f" ({what})" if what else ""))

    if is_stream(p):
        check_suffix()
        if str(path) != STDOUT and not os.access(p, os.W_OK):
            raise InputFileError(_label(p, option), "cannot be written (permission denied)")
        return p
    if p.is_dir():
        raise InputFileError(_label(p, option), "is a directory; give a file name")
    for other, q in inputs.items():
        if q and _same_file(p, Path(q)):
            label = f"{other} ({q})" if other.startswith("the ") else _label(q, other)
            raise InputFileError(_label(p, option), f"is also {label}: writing it would "
                                 "overwrite that; give another file name")
    if not shipped_ok and _shipped_model_file(p):
        raise InputFileError(_label(p, option), "is one of msid's shipped model files: "
                             "writing it would overwrite that; give another file name")
    check_suffix()
    parent = destination(p).parent  # a link's target is what gets replaced
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputFileError(_label(p, option), f"{parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputFileError(_label(p, option), f"cannot write in {parent} (permission denied)")
    try:  # what permissions do not show (a read-only or pseudo file system, root's access)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".msid-probe-"):
            pass
    except OSError as e:
        raise InputFileError(_label(p, option),
                             f"cannot write in {parent} ({e.strerror or e})") from None
    return p


def read_yaml_config(path: str | os.PathLike | None, option: str = "--config",
                     allowed: type | set[str] | None = None) -> dict:
    """A YAML mapping from ``path`` ({} for none); ``allowed`` (a dataclass or key names) makes
    an unknown top-level key an error naming the key and the keys allowed."""
    import yaml

    if not path:
        return {}
    check_input(path, option)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputFileError(_label(path, option), f"not valid YAML{where}: {problem}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(_label(path, option), f"cannot read ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputFileError(_label(path, option),
                             f"expected a mapping of settings, found a {type(data).__name__}")
    if allowed is not None:
        keys = ({f.name for f in dataclasses.fields(allowed)} if dataclasses.is_dataclass(allowed)
                else set(allowed))
        unknown = sorted(str(k) for k in data if k not in keys)
        if unknown:
            raise InputFileError(_label(path, option),
                                 f"unknown key(s) {', '.join(unknown)} (allowed: "
                                 f"{', '.join(sorted(keys))})")
    return data
