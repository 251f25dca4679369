"""sspa-eval: evaluate a saved model on one split of a dataset with the paper's metrics.

sspa-eval runs/rafdb rafdb:/data/RAF-DB/basic
sspa-eval someone/sspa-rafdb prepared/caer_s --split test --output-dir results/caer_s
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from . import run_command

PROG = "sspa-eval"
METRICS_FILE = "eval_metrics.json"
CONFUSION_FILE = "confusion_matrix.png"

DESCRIPTION = """\
Evaluate a trained model on one split of a dataset: batched inference with the model's own saved image
processor (the same preprocessing as pipeline()), then accuracy, macro precision, macro recall, macro F1
(mean of per-class F1, Eq. 12 of the paper), per-class scores and the confusion matrix.

MODEL is a model folder (written by sspa-train or save_pretrained) or a Hub id. DATASET-SPEC is
FORMAT:PATH[?key=value&...] (e.g. rafdb:/data/RAF-DB/basic, imagefolder:/data/faces) or a folder written
by sspa-prepare. Writes eval_metrics.json and confusion_matrix.png into the output folder: by default
MODEL/eval-SPLIT for a model folder, ./eval-NAME-SPLIT in the current directory for a Hub id."""

EPILOG = f"""\
examples:
  {PROG} runs/rafdb rafdb:/data/RAF-DB/basic
  {PROG} runs/rafdb imagefolder:/data/my_faces --split train --batch-size 128 --device cuda"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also renders --help)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL", help="model folder or Hub id")
    parser.add_argument("dataset", metavar="DATASET-SPEC", help="FORMAT:PATH[?key=value&...] or a prepared folder")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default: 64)")
    parser.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="where to write eval_metrics.json and confusion_matrix.png (default: MODEL/eval-SPLIT for a folder, "
        "./eval-NAME-SPLIT for a Hub id)",
    )
    parser.add_argument(
        "--num-workers", type=int, default=0, metavar="N", help="DataLoader worker processes (default: 0)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps (default: auto)"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="load the modelling code saved in the model folder instead of this package's (for models saved by "
        "other versions)",
    )
    return parser


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


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_model(name: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """The model (eval mode) and its saved image processor; a bad folder or id is a one-line user error.

    By default the model is built by this package's classes (registered with the Auto classes). With
    `trust_remote_code` the modelling code saved beside the weights (`auto_map`) is used instead: the way to run
    a folder written by another version of sspa-hf.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import sspa_hf  # noqa: F401  (registers SSPAConfig / SSPAForImageClassification with the Auto classes)

    looks_local = Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not Path(name).expanduser().is_dir():
        raise UserInputError(f"model folder {name} not found")
    try:
        model_class = _remote_model_class(name) if trust_remote_code else None
        if model_class is not None:
            model = model_class.from_pretrained(name)
        else:
            model = AutoModelForImageClassification.from_pretrained(name, trust_remote_code=trust_remote_code)
        processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"cannot load model {name}: {_first_line(exc)}") from None
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


def load_split(spec: str, split: str) -> Any:
    """One split of a dataset spec (a `datasets.Dataset` with the shared columns)."""
    from ..data import load_source

    splits = load_source(spec)
    if split not in splits:
        raise UserInputError(f"dataset {spec} has no split {split!r} (splits: {', '.join(splits) or 'none'})")
    data = splits[split]
    if len(data) == 0:
        raise UserInputError(f"split {split!r} of dataset {spec} is empty")
    return data


def label_mapping(model_labels: dict[int, str], dataset_names: list[str]) -> np.ndarray:
    """For each model output index, the dataset's class id of the same name (the model's order may differ)."""
    position = {name.lower(): i for i, name in enumerate(dataset_names)}
    missing = [name for name in model_labels.values() if name.lower() not in position]
    if missing or len(model_labels) != len(dataset_names):
        raise UserInputError(
            f"the model's classes ({', '.join(model_labels.values())}) do not match the dataset's "
            f"({', '.join(dataset_names)})"
        )
    return np.array([position[model_labels[i].lower()] for i in range(len(model_labels))])


def predict_split(
    model: Any, processor: Any, data: Any, batch_size: int, num_workers: int, device: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, argmax of the model's logits) over a split, in row order."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from ..data import EvalTransform, FERTorchDataset, collate_fer

    loader = DataLoader(
        FERTorchDataset(data, EvalTransform(processor)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fer,
    )
    model.to(device)
    true, pred = [], []
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="evaluating", unit="batch", disable=None, leave=False):
                logits = model(pixel_values=batch["pixel_values"].to(device)).logits
                pred.append(logits.argmax(dim=-1).cpu().numpy())
                true.append(batch["labels"].numpy())
    except UserInputError as exc:  # from a worker process the message carries a traceback: keep its last line
        last = str(exc).strip().splitlines()[-1]
        raise UserInputError(re.sub(r"^[\w.]*UserInputError: ", "", last)) from None
    return np.concatenate(true), np.concatenate(pred)


def default_output_dir(model: str, split: str) -> Path:
    """MODEL/eval-SPLIT for a local folder, ./eval-NAME-SPLIT (NAME = last part of the id) for a Hub id."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder / f"eval-{split}"
    name = re.sub(r"[^\w.-]+", "_", model.rstrip("/").split("/")[-1])
    return Path.cwd() / f"eval-{name}-{split}"


def format_summary(metrics: dict[str, Any], class_names: list[str]) -> str:
    """A short text table: the four summary scores, then precision/recall/F1/support per class."""
    lines = [
        f"accuracy         {100 * metrics['accuracy']:6.2f} %",
        f"macro precision  {100 * metrics['macro_precision']:6.2f} %",
        f"macro recall     {100 * metrics['macro_recall']:6.2f} %",
        f"macro F1         {100 * metrics['macro_f1']:6.2f} %",
        "",
        f"{'class':<12} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}",
    ]
    for name in class_names:
        lines.append(
            f"{name:<12} {100 * metrics[f'precision/{name}']:8.2f}% {100 * metrics[f'recall/{name}']:6.2f}% "
            f"{100 * metrics[f'f1/{name}']:6.2f}% {metrics[f'support/{name}']:8d}"
        )
    return "\n".join(lines)


def evaluate_model(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation the arguments describe; write the metrics JSON and the confusion matrix; return them."""
    from ..metrics import classification_metrics
    from ..plots import plot_confusion_matrix

    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise UserInputError(f"--num-workers must be >= 0, got {args.num_workers}")
    device = resolve_device(args.device)
    model, processor = load_model(args.model, args.trust_remote_code)
    data = load_split(args.dataset, args.split)
    class_names = list(data.features["label"].names)
    mapping = label_mapping(dict(model.config.id2label), class_names)
    y_true, y_model = predict_split(model, processor, data, args.batch_size, args.num_workers, device)
    metrics = classification_metrics(y_true, mapping[y_model], num_classes=len(class_names), class_names=class_names)
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.model, args.split)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {**metrics, "model": args.model, "dataset": args.dataset, "split": args.split, "n": len(y_true)}
    (output_dir / METRICS_FILE).write_text(json.dumps(record, indent=2))
    plot_confusion_matrix(
        metrics["confusion_matrix"],
        class_names,
        output_dir / CONFUSION_FILE,
        title=f"{args.model} on {args.dataset} [{args.split}]",
    )
    print(f"{args.model} on {args.dataset} [{args.split}], {len(y_true)} images")
    print(format_summary(metrics, class_names))
    print(f"wrote {output_dir / METRICS_FILE} and {output_dir / CONFUSION_FILE}")
    return record


def main(argv: list[str] | None = None) -> int:
    """Run sspa-eval; returns the exit status (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(PROG, lambda: (evaluate_model(args), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
