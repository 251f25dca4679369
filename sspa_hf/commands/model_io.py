"""Loading a saved SSPA model for the commands: device choice, the model and its image processor."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..checkpoints import checkpoints_newest_first
from ..errors import UserInputError, first_line


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--device and --trust_remote_code, shared by sspa-eval and sspa-predict."""
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps (default: auto)"
    )
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="load the modelling code saved in the model folder instead of this package's (for models saved by "
        "other versions)",
    )


def resolve_device(name: str) -> Any:
    """`auto` -> cuda, else mps, else cpu; any other name is checked by torch."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserInputError(f"--device {name!r} is not a device (try auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {name}: CUDA is not available on this machine")
    return device


def load_model(name: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """The model (eval mode) and its saved image processor; a bad folder or id is a one-line user error.

    By default the model is built by this package's classes (registered with the Auto classes). With
    `trust_remote_code` the modelling code saved beside the weights (`auto_map`) is used instead: the way to run
    a folder written by another version of sspa-hf.
    """
    from ..hub import check_model_reference

    check_model_reference(name, "model")  # a local folder first; a Hub id only when the Hub can be reached
    check_finished_run(name)
    # After the checks: the Auto classes import transformers' model and image-processing stacks, seconds that a
    # one-line refusal need not wait for (sspa_hf registered its classes with them).
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        model_class = _remote_model_class(name) if trust_remote_code else None
        if model_class is not None:
            model = model_class.from_pretrained(name)
        else:
            model = AutoModelForImageClassification.from_pretrained(name, trust_remote_code=trust_remote_code)
        processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"cannot load model {name}: {first_line(exc)}") from None
    return model.eval(), processor


def _remote_model_class(name: str) -> Any:
    """The image-classification class named by the folder's `auto_map`, imported from the folder (None if none).

    Needed because transformers prefers a locally registered class over remote code even when it is trusted.
    """
    from transformers import PretrainedConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config_dict, _ = PretrainedConfig.get_config_dict(name)
    reference = (config_dict.get("auto_map") or {}).get("AutoModelForImageClassification")
    return get_class_from_dynamic_module(reference, name) if reference else None


def check_finished_run(name: str) -> None:
    """A run folder without a saved model (killed before the end) is a one-line error naming its last checkpoint."""
    folder = Path(name).expanduser()
    if not folder.is_dir() or (folder / "config.json").is_file():
        return
    checkpoints = checkpoints_newest_first(folder)
    if checkpoints:
        last = checkpoints[0]
        raise UserInputError(
            f"{name} holds no saved model: the run did not finish; its last checkpoint {last} can be given as the model"
        )
