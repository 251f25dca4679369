"""Build the model, its image processor and the datasets from parsed arguments (shared by commands and benchmarks)."""

from __future__ import annotations

import logging

from datasets import Dataset
from transformers import AutoImageProcessor, AutoModelForImageClassification, ResNetConfig

from .arguments import DataArguments, ModelArguments
from .configuration_sspa import SSPAConfig
from .data import build_joint, load_source
from .errors import UserInputError
from .modeling_sspa import SSPAForImageClassification
from .processing import make_image_processor
from .weights import load_backbone_weights, load_hub_backbone

logger = logging.getLogger(__name__)


def build_model(args: ModelArguments):
    """A fresh SSPA model (optionally with pretrained backbone weights) or a saved one, and its image processor."""
    if args.model_name_or_path:
        model = AutoModelForImageClassification.from_pretrained(args.model_name_or_path)
        if not isinstance(model.config, SSPAConfig):
            raise UserInputError(f"{args.model_name_or_path} is a {model.config.model_type!r} model, not an SSPA one")
        return model, AutoImageProcessor.from_pretrained(args.model_name_or_path)
    if args.backbone_checkpoint:
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
        )
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc
    model = SSPAForImageClassification(config)
    if args.backbone_checkpoint:
        load_hub_backbone(model, args.backbone_checkpoint)
    if args.backbone_weights:
        load_backbone_weights(model, args.backbone_weights)
    return model, make_image_processor(args.image_size, args.image_mean, args.image_std)


def build_datasets(args: DataArguments, seed: int) -> tuple[Dataset, Dataset]:
    """The joint training set (target train + a seeded fraction of auxiliary train) and the evaluation split."""
    target = load_source(args.target_dataset)
    if "train" not in target:
        raise UserInputError(f"target data set {args.target_dataset!r} has no train split (it has {list(target)})")
    auxiliary = None
    if args.auxiliary_dataset:
        aux_source = load_source(args.auxiliary_dataset)
        if "train" not in aux_source:
            raise UserInputError(
                f"auxiliary data set {args.auxiliary_dataset!r} has no train split ({list(aux_source)})"
            )
        auxiliary = aux_source["train"]
    train = build_joint(
        target["train"], auxiliary, fraction=args.auxiliary_fraction, seed=seed, stratified=args.auxiliary_stratified
    )
    evaluation = load_source(args.eval_dataset) if args.eval_dataset else target
    if args.eval_split not in evaluation:
        raise UserInputError(
            f"evaluation data set {args.eval_dataset or args.target_dataset!r} has no split {args.eval_split!r} "
            f"(it has {list(evaluation)})"
        )
    logger.info(
        "Training on %d samples (%d target, %d auxiliary); evaluating on %d.",
        len(train),
        sum(train["is_target"]),
        len(train) - sum(train["is_target"]),
        len(evaluation[args.eval_split]),
    )
    return train, evaluation[args.eval_split]
