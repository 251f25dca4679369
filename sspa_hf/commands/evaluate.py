"""sspa-eval: evaluate a saved model on one split of a dataset with the paper's metrics.

sspa-eval runs/rafdb rafdb:/data/RAF-DB/basic
sspa-eval someone/sspa-rafdb prepared/caer_s --split test --output_dir results/caer_s
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
from ..evaluation.metrics import format_summary
from ..run.folder import CONFUSION_MATRIX, EVAL_METRICS, EVAL_PREDICTIONS, write_evaluation_report, write_predictions
from . import CommandParser, run_command, snake_case_flags
from .model_io import add_model_options, load_model, resolve_device
from .output_paths import check_output_folder

PROG = "sspa-eval"

DESCRIPTION = """\
Evaluate a trained model on one split of a dataset: batched inference with the model's own saved image
processor (the same preprocessing as pipeline()), then accuracy, macro precision, mean-class accuracy (macro
recall), macro F1 (mean of per-class F1, Eq. 12 of the paper), per-class scores and the confusion matrix.

MODEL is a model folder (written by sspa-train or save_pretrained) or a Hub id. DATASET-SPEC is
FORMAT:PATH[?key=value&...] (e.g. rafdb:/data/RAF-DB/basic, imagefolder:/data/faces) or a folder written
by sspa-prepare. Writes eval_metrics.json, confusion_matrix.png and eval_predictions.parquet (per face:
label, prediction, probabilities) into the output folder: by default MODEL/eval-DATASET-SPLIT for a model
folder, ./eval-NAME-DATASET-SPLIT in the current directory for a Hub id (DATASET: the spec's format and last
path part, e.g. rafdb-basic)."""

EPILOG = f"""\
examples:
  {PROG} runs/rafdb rafdb:/data/RAF-DB/basic
  {PROG} runs/rafdb imagefolder:/data/my_faces --split train --batch_size 128 --device cuda"""


def build_parser() -> CommandParser:
    """The argument parser (also renders --help)."""
    parser = CommandParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL", help="model folder or Hub id")
    parser.add_argument("dataset", metavar="DATASET-SPEC", help="FORMAT:PATH[?key=value&...] or a prepared folder")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--batch_size", type=int, default=64, metavar="N", help="images per batch (default: 64)")
    parser.add_argument(
        "--output_dir",
        default=None,
        metavar="DIR",
        help="where to write the metrics, the confusion matrix and the per-face predictions (default: "
        "MODEL/eval-DATASET-SPLIT for a folder, ./eval-NAME-DATASET-SPLIT for a Hub id)",
    )
    parser.add_argument(
        "--num_workers", type=int, default=0, metavar="N", help="DataLoader worker processes (default: 0)"
    )
    add_model_options(parser)
    return parser


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
    """(true labels (N,), the model's logits (N, C)) over a split, in row order."""
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
                pred.append(logits.float().cpu().numpy())
                true.append(batch["labels"].numpy())
    except UserInputError as exc:  # from a worker process the message carries a traceback: keep its last line
        last = str(exc).strip().splitlines()[-1]
        raise UserInputError(re.sub(r"^[\w.]*UserInputError: ", "", last)) from None
    return np.concatenate(true), np.concatenate(pred)


def dataset_slug(spec: str) -> str:
    """A short folder-safe name for a dataset spec: FORMAT-LASTPART (rafdb:/data/RAF-DB/basic -> rafdb-basic)."""
    spec = spec.split("?", 1)[0].rstrip("/")
    fmt, _, path = spec.partition(":") if re.match(r"^\w+:", spec) else ("", "", spec)
    parts = [part for part in (fmt, Path(path).name) if part]
    return re.sub(r"[^\w.-]+", "_", "-".join(parts)) or "dataset"


def default_output_dir(model: str, dataset: str, split: str) -> Path:
    """MODEL/eval-DATASET-SPLIT for a local folder, ./eval-NAME-DATASET-SPLIT (NAME = last part of the id) for a
    Hub id: evaluating a second dataset on the same split never overwrites the first."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder / f"eval-{dataset_slug(dataset)}-{split}"
    name = re.sub(r"[^\w.-]+", "_", model.rstrip("/").split("/")[-1])
    return Path.cwd() / f"eval-{name}-{dataset_slug(dataset)}-{split}"


def check_not_another_dataset(output_dir: Path, dataset: str, split: str) -> None:
    """Refuse to overwrite a default folder that holds another dataset's evaluation (two specs, one slug)."""
    existing = output_dir / EVAL_METRICS
    if not existing.is_file():
        return
    try:
        record = json.loads(existing.read_text())
    except (OSError, ValueError):
        return
    if (record.get("dataset"), record.get("split")) != (dataset, split):
        raise UserInputError(
            f"{output_dir} already holds the evaluation of {record.get('dataset')} [{record.get('split')}]; "
            "choose another folder with --output_dir"
        )


def evaluate_model(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation the arguments describe; write the metrics JSON and the confusion matrix; return them."""
    if args.batch_size < 1:
        raise UserInputError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise UserInputError(f"--num_workers must be >= 0, got {args.num_workers}")
    if args.output_dir:
        output_dir = Path(args.output_dir).expanduser()
        check_output_folder(output_dir, "--output_dir")
    else:
        output_dir = default_output_dir(args.model, args.dataset, args.split)
        check_not_another_dataset(output_dir, args.dataset, args.split)
        check_output_folder(output_dir, "the output folder", "choose one with --output_dir")
    device = resolve_device(args.device)
    model, processor = load_model(args.model, args.trust_remote_code, PROG)
    data = load_split(args.dataset, args.split)
    class_names = list(data.features["label"].names)
    mapping = label_mapping(dict(model.config.id2label), class_names)
    y_true, logits = predict_split(model, processor, data, args.batch_size, args.num_workers, device)
    in_dataset_order = np.empty_like(logits)
    in_dataset_order[:, mapping] = logits
    title = f"{args.model} on {args.dataset} [{args.split}]"
    record = write_evaluation_report(
        output_dir,
        y_true,
        in_dataset_order.argmax(axis=1),
        class_names,
        title,
        model=args.model,
        dataset=args.dataset,
        split=args.split,
        n=len(y_true),
    )
    print(f"{title}, {len(y_true)} images")
    print(format_summary(record, class_names))
    write_predictions(output_dir, y_true, in_dataset_order, class_names)  # per face: paired intervals between runs
    print(f"wrote {output_dir / EVAL_METRICS}, {output_dir / CONFUSION_MATRIX} and {output_dir / EVAL_PREDICTIONS}")
    return record


def main(argv: list[str] | None = None) -> int:
    """Run sspa-eval; returns the exit status (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(snake_case_flags(argv))
    return run_command(PROG, lambda: (evaluate_model(args), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
