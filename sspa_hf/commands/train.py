"""sspa-train: train an SSPA-JT model from a YAML/JSON recipe (flags override it), evaluate it, report, push.

sspa-train recipes/quickstart.yaml
sspa-train recipes/rafdb_affectnet10_resnet18.yaml --num_train_epochs 40 --output_dir runs/short
accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml -m sspa_hf.commands.train RECIPE
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from transformers import HfArgumentParser, set_seed
from transformers.utils import logging as hf_logging

from ..arguments import DataArguments, ModelArguments, SSPATrainingArguments
from ..errors import UserInputError
from ..metrics import classification_metrics, format_summary
from . import run_command

logger = logging.getLogger("sspa_hf.train")
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


def load_recipe(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe; `extends: other.yaml` (relative to it) is read first and overridden key by key."""
    if not path.is_file():
        raise UserInputError(f"recipe {path} not found")
    if path.resolve() in _seen:
        raise UserInputError(f"recipe {path} extends itself (through {' -> '.join(map(str, _seen))})")
    try:
        recipe = yaml.safe_load(path.read_text())  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise UserInputError(f"recipe {path} is not valid YAML/JSON: {exc}".replace("\n", " ")) from exc
    if not isinstance(recipe, dict):
        raise UserInputError(f"recipe {path} must be a mapping of argument names to values")
    if "extends" in recipe:
        base = load_recipe(path.parent / str(recipe.pop("extends")), (*_seen, path.resolve()))
        recipe = {**base, **recipe}
    return recipe


def recipe_to_argv(path: Path) -> list[str]:
    """Turn a recipe file into command-line flags, so flags given after it override it (argparse: last wins)."""
    argv: list[str] = []
    for key, value in load_recipe(path).items():
        if value is None:  # `key: null` unsets what an extended recipe set
            continue
        argv.append(f"--{key}")
        if isinstance(value, bool):
            argv.append(str(value).lower())
        elif isinstance(value, list):
            argv.extend(str(v) for v in value)
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        else:
            argv.append(str(value))
    return argv


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, SSPATrainingArguments]:
    """Parse `[RECIPE] [--flag value ...]` into the three argument dataclasses."""
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, SSPATrainingArguments),
        prog="sspa-train",
        description="Train SSPA-JT: sample selection + paired augmentation joint training for facial expressions. "
        "The first argument may be a YAML/JSON recipe whose keys are the flags below; flags after it override it.",
        epilog="Example: sspa-train recipes/quickstart.yaml --num_train_epochs 4 --output_dir runs/try",
    )
    flags = argv
    if argv and argv[0].endswith(RECIPE_SUFFIXES):
        flags = recipe_to_argv(Path(argv[0])) + argv[1:]
    try:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=flags)
    except ValueError as exc:  # unknown keys, bad values from __post_init__
        source = f"recipe {argv[0]}" if flags is not argv else "arguments"
        raise UserInputError(f"{source}: {exc}") from exc
    return model_args, data_args, training_args


def train(model_args: ModelArguments, data_args: DataArguments, args: SSPATrainingArguments) -> dict[str, Any]:
    """Build, train, evaluate on the target test split, write reports and the model card; return eval metrics."""
    from ..build import build_datasets, build_model
    from ..metrics import compute_metrics
    from ..run_folder import write_evaluation_report, write_training_report
    from ..trainer import SSPATrainer

    set_seed(args.seed)
    model, processor = build_model(model_args)
    train_set, eval_set = build_datasets(data_args, seed=args.seed)
    trainer = SSPATrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=processor,
        compute_metrics=compute_metrics,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    prediction = trainer.predict(eval_set, metric_key_prefix="eval")
    output_dir = Path(args.output_dir)
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    eval_spec = data_args.eval_dataset or data_args.target_dataset
    y_true, y_pred = prediction.label_ids, np.argmax(prediction.predictions, axis=-1)
    if args.should_save:
        title = f"{eval_spec} [{data_args.eval_split}]"
        full = write_evaluation_report(output_dir, y_true, y_pred, class_names, title)
        write_training_report(output_dir, train_set)
    else:
        full = classification_metrics(y_true, y_pred, len(class_names), class_names)
    scalars = {f"eval_{k}": v for k, v in full.items() if isinstance(v, (int, float))}
    trainer.save_metrics("eval", scalars)  # printed below by print_summary, with the selection quality
    card = {
        "dataset_tags": [data_args.target_dataset, data_args.auxiliary_dataset],
        "dataset": eval_spec,
        "dataset_args": data_args.eval_split,
    }
    trainer.create_model_card(**card)
    if args.push_to_hub:
        trainer.push_to_hub(**card)
    quality = trainer.selector.quality()
    if args.should_save:
        print_summary(full, class_names, quality, output_dir)
    return {**scalars, **quality}


def print_summary(metrics: dict[str, Any], class_names: list[str], quality: dict[str, float], output_dir: Path) -> None:
    """The evaluation table sspa-eval prints, then the selection quality where it is known, then the model folder."""
    print(f"\nSSPA-JT results ({output_dir}):")
    print(format_summary(metrics, class_names))
    for name in ("precision", "recall"):
        if f"selection/{name}" in quality:
            print(f"{'selection ' + name:<20}{100 * quality[f'selection/{name}']:6.2f} %")
    print(f"{'model folder':<20}{output_dir} (pipeline('image-classification', model='{output_dir}'))")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command("sspa-train", lambda: _main(argv))


def _main(argv: list[str]) -> int:
    model_args, data_args, training_args = parse_arguments(argv)
    if training_args.should_log:
        hf_logging.set_verbosity_warning()
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    status = RunStatus(Path(training_args.output_dir), enabled=training_args.should_save)
    status.write("running")
    try:
        train(model_args, data_args, training_args)
    except BaseException as exc:
        status.write("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", f"{type(exc).__name__}: {exc}")
        raise
    status.write("complete")
    return 0


class RunStatus:
    """`run_status.json` in the output folder: running, complete, failed or interrupted, so that a partial output
    is never mistaken for a finished one (its checkpoints still resume with --resume_from_checkpoint true)."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.path, self.enabled = output_dir / "run_status.json", enabled

    def write(self, state: str, error: str | None = None) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"status": state, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}
        if error:
            record["error"] = error.strip().splitlines()[0] if error.strip() else error
        self.path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    sys.exit(main())
