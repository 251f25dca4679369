"""Build the model, its image processor and the datasets from parsed arguments (shared by commands and benchmarks)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import AutoImageProcessor, AutoModelForImageClassification, ResNetConfig

from ..data import build_joint, load_source
from ..data.image_check import without_bad_images
from ..errors import UserInputError, first_line
from ..labels import EXPRESSIONS
from ..model.configuration_sspa import SSPAConfig
from ..model.modeling_sspa import SSPAForImageClassification
from ..model.processing import make_image_processor
from ..model.weights import load_backbone_weights, load_hub_backbone
from ..modes import knob_defaults
from .arguments import DataArguments, ModelArguments, SSPATrainingArguments

logger = logging.getLogger(__name__)


@contextmanager
def _one_line(what: str, name: str) -> Iterator[None]:
    """A model that cannot be loaded (not found, not a model, no access) becomes one line naming the argument."""
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"{what}: cannot load {name}: {first_line(exc)}") from exc


def build_model(args: ModelArguments, standard_transition: bool = False):
    """A fresh SSPA model (optionally with pretrained backbone weights) or a saved one, and its image processor.

    `standard_transition` adds the learnt auxiliary-to-target label transition (selection_mode 'transition').
    """
    if args.model_name_or_path:
        with _one_line("model_name_or_path", args.model_name_or_path):
            model = AutoModelForImageClassification.from_pretrained(args.model_name_or_path)
            processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)
        if not isinstance(model.config, SSPAConfig):
            raise UserInputError(f"{args.model_name_or_path} is a {model.config.model_type!r} model, not an SSPA one")
        return model, processor
    if args.backbone_checkpoint:
        with _one_line("backbone_checkpoint", args.backbone_checkpoint):
            backbone_config = ResNetConfig.from_pretrained(args.backbone_checkpoint)
    else:
        backbone_config = ResNetConfig(
            layer_type=args.backbone_layer_type,
            depths=args.backbone_depths,
            hidden_sizes=args.backbone_hidden_sizes,
            embedding_size=args.backbone_embedding_size,
        )
    try:
        config = SSPAConfig(
            backbone=args.backbone,
            backbone_config=backbone_config,
            num_experts=args.num_experts,
            image_size=args.image_size,
            standard_transition=standard_transition,
        )
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc
    model = SSPAForImageClassification(config)
    if args.backbone_checkpoint:
        load_hub_backbone(model, args.backbone_checkpoint)
    if args.backbone_weights:
        load_backbone_weights(model, args.backbone_weights)
    return model, make_image_processor(args.image_size, args.image_mean, args.image_std)


def plain_trainers(model_args: ModelArguments, args: SSPATrainingArguments):
    """Plain trainings for a mode's work before training (cleanlab's probes): (training set, output folder) -> an
    `SSPATrainer` with a fresh model of the run's kind and the run's schedule, straight, saving nothing."""
    from .trainer import SSPATrainer

    def make(train: Dataset, output_dir: Path) -> SSPATrainer:
        model, processor = build_model(model_args)
        probe_args = replace(
            args,
            **knob_defaults(args),
            output_dir=str(output_dir),
            selection_mode="straight",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            push_to_hub=False,
            resume_from_checkpoint=None,
        )
        return SSPATrainer(model=model, args=probe_args, train_dataset=train, processing_class=processor)

    return make


def check_labels(splits: DatasetDict, flag: str, spec: str) -> None:
    """Every label must be one of the classes (a ClassLabel may hold -1 for "no label", or a value past its names):
    one line naming the flag, before training rather than an index error mid-run."""
    for name, split in splits.items():
        labels = np.asarray(split["label"])
        bad = np.flatnonzero((labels < 0) | (labels >= len(EXPRESSIONS)))
        if len(bad):
            raise UserInputError(
                f"--{flag} {spec}: split {name} row {int(bad[0])} has label {int(labels[bad[0]])} ({len(bad)} such "
                f"row(s)); labels must be 0..{len(EXPRESSIONS) - 1} ({', '.join(EXPRESSIONS)})"
            )


def build_train_set(
    args: DataArguments, seed: int, target: DatasetDict | None = None, report_dir: Path | None = None
) -> Dataset:
    """The joint training set: target train + a seeded fraction of auxiliary train, its images checked (also
    rebuilt by sspa-export-selection from a run's data_args.json). Bad images: see `without_bad_images`."""
    target = load_source(args.target_dataset) if target is None else target
    check_labels(target, "target_dataset", args.target_dataset)
    if "train" not in target:
        raise UserInputError(f"target data set {args.target_dataset!r} has no train split (it has {list(target)})")
    auxiliary = None
    if args.auxiliary_dataset:
        aux_source = load_source(args.auxiliary_dataset)
        check_labels(aux_source, "auxiliary_dataset", args.auxiliary_dataset)
        if "train" not in aux_source:
            raise UserInputError(
                f"auxiliary data set {args.auxiliary_dataset!r} has no train split ({list(aux_source)})"
            )
        auxiliary = aux_source["train"]
    joint = build_joint(
        target["train"], auxiliary, fraction=args.auxiliary_fraction, seed=seed, stratified=args.auxiliary_stratified
    )
    return without_bad_images(joint, "training", args.skip_bad_images, report_dir)


def build_datasets(args: DataArguments, seed: int, report_dir: Path | None = None) -> tuple[Dataset, Dataset]:
    """The joint training set (target train + a seeded fraction of auxiliary train) and the evaluation split."""
    target = load_source(args.target_dataset)
    train = build_train_set(args, seed, target=target, report_dir=report_dir)
    evaluation = load_source(args.eval_dataset) if args.eval_dataset else target
    if args.eval_dataset:
        check_labels(evaluation, "eval_dataset", args.eval_dataset)
    if args.eval_split not in evaluation:
        raise UserInputError(
            f"evaluation data set {args.eval_dataset or args.target_dataset!r} has no split {args.eval_split!r} "
            f"(it has {list(evaluation)})"
        )
    evaluation = without_bad_images(evaluation[args.eval_split], "evaluation", args.skip_bad_images, report_dir)
    logger.info(
        "Training on %d samples (%d target, %d auxiliary); evaluating on %d.",
        len(train),
        sum(train["is_target"]),
        len(train) - sum(train["is_target"]),
        len(evaluation),
    )
    return train, evaluation
