"""Loading a saved SSPA model for the commands: device choice, the model and its image processor."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserInputError, first_line
from ..run.checkpoints import checkpoints_newest_first, safetensors_problem, torch_file_problem
from ..run.folder import RECIPE, RUN_STATUS

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
PROCESSOR_CONFIG = "preprocessor_config.json"
LIVE_HEARTBEAT_S = 300.0  # a "running" run_status.json whose heartbeat (every 30 s) is newer is a live run


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


def load_model(name: str, trust_remote_code: bool = False, prog: str = "sspa-hf") -> tuple[Any, Any]:
    """The model (eval mode) and its saved image processor; a bad folder or id is a one-line user error.

    By default the model is built by this package's classes (registered with the Auto classes). With
    `trust_remote_code` the modelling code saved beside the weights (`auto_map`) is used instead: the way to run
    a folder written by another version of sspa-hf.
    """
    from .hub import check_model_reference

    check_model_reference(name, "model")  # a local folder first; a Hub id only when the Hub can be reached
    check_model_folder(name, prog)
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


def check_model_folder(name: str, prog: str) -> None:
    """Refuse, in one line, a local model folder that cannot load: a missing or torn file, or an unfinished training
    run (killed before or during its final save), named as such with the way to finish it. A run whose model files
    are complete although its run_status.json does not say complete is used, with a warning line."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return
    problem = model_files_problem(folder)
    status = _run_status(folder)
    state = status.get("status") if status else None
    if problem is None:
        if state not in (None, "complete"):
            print(
                f"{prog}: warning: {name} is a training run that did not finish ({RUN_STATUS}: {state}); "
                "its saved model files are complete and are used",
                file=sys.stderr,
            )
        return
    if status is None and not checkpoints_newest_first(folder):
        raise UserInputError(
            f"model folder {name}: {problem}; copy it again, or save it again with the model's and the image "
            "processor's save_pretrained"
        )
    raise UserInputError(_unfinished_run(name, folder, state, status or {}, problem))


def _unfinished_run(name: str, folder: Path, state: str | None, status: dict[str, Any], problem: str) -> str:
    """The one line naming an unfinished training run and how to finish it (or which checkpoint to give)."""
    what = f"{name} is an unfinished training run ({RUN_STATUS}: {state or 'missing'}; {problem})"
    beat = status.get("heartbeat_unix")
    if state == "running" and isinstance(beat, (int, float)) and time.time() - beat < LIVE_HEARTBEAT_S:
        return f"{what}: its training is still going (heartbeat {time.time() - beat:.0f} s ago); wait for it to end"
    recipe = folder / RECIPE
    again = f"sspa-train {recipe}" if recipe.is_file() else f"sspa-train RECIPE --output_dir {name}"
    checkpoint = next((c for c in checkpoints_newest_first(folder) if model_files_problem(c) is None), None)
    if checkpoint is None:
        return f"{what} with no complete checkpoint: train it again with `{again} --overwrite_output_dir true`"
    return (
        f"{what}: finish it with `{again} --resume_from_checkpoint true`, or give its last checkpoint "
        f"{checkpoint} as the model"
    )


def model_files_problem(folder: Path) -> str | None:
    """What keeps `folder` from loading as a model and image processor (None if nothing): files missing or torn."""
    names = {p.name for p in folder.iterdir()}
    weights = [name for name in WEIGHTS if name in names]
    missing = [name for name in ("config.json",) if name not in names]
    missing += [] if weights else ["model.safetensors"]
    missing += [] if PROCESSOR_CONFIG in names else [PROCESSOR_CONFIG]
    if missing:
        return f"{', '.join(missing)} missing"
    for json_name in ("config.json", PROCESSOR_CONFIG, *(w for w in weights if w.endswith(".json"))):
        try:
            json.loads((folder / json_name).read_text())
        except (OSError, ValueError):
            return f"{json_name} is truncated or corrupt"
    for path in sorted(folder.glob("*.safetensors")):
        if problem := safetensors_problem(path):
            return problem
    if "pytorch_model.bin" in weights:
        return torch_file_problem(folder / "pytorch_model.bin")
    return None


def _run_status(folder: Path) -> dict[str, Any] | None:
    """The folder's run_status.json as a dict (None when absent or unreadable)."""
    try:
        record = json.loads((folder / RUN_STATUS).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
