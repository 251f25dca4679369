"""Command-line / recipe arguments: model, data, and SSPA-JT training (a `TrainingArguments` subclass)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..data.augment import VIEWS
from ..model.configuration_sspa import RESNET18
from ..model.processing import IMAGENET_MEAN, IMAGENET_STD
from ..modes import MODES
from ..modes import check as check_mode
from .pairing import ALLOCATIONS

BACKBONES = ("resnet", "arm")
MIN_IMAGE_SIZE = 32


@dataclass
class ModelArguments:
    """Which network to build (or load) and which pretrained weights go into its backbone."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Start from a saved SSPA model (local folder or Hub id) instead of building one."},
    )
    backbone: str = field(default="resnet", metadata={"help": "Feature extractor: 'resnet' or 'arm'."})
    num_experts: int = field(default=3, metadata={"help": "k, experts of the MoE head (1 = plain linear classifier)."})
    image_size: int = field(default=224, metadata={"help": "Square input side in pixels."})
    backbone_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A transformers ResNet (Hub id such as microsoft/resnet-18, or folder) for config+weights."},
    )
    backbone_weights: str | None = field(
        default=None,
        metadata={
            "help": "A torchvision-style ResNet state dict (.pth/.pt/.safetensors; bare, {'state_dict': ...} or "
            "'module.'-prefixed), e.g. ResNet-18 pretrained on MS-Celeb-1M. Loaded strictly."
        },
    )
    backbone_layer_type: str = field(
        default=RESNET18["layer_type"],
        metadata={"help": "ResNet block type: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50+)."},
    )
    backbone_depths: list[int] = field(
        default_factory=lambda: list(RESNET18["depths"]),
        metadata={"help": "ResNet blocks per stage (ResNet-18: 2 2 2 2)."},
    )
    backbone_hidden_sizes: list[int] = field(
        default_factory=lambda: list(RESNET18["hidden_sizes"]), metadata={"help": "ResNet channels per stage."}
    )
    backbone_embedding_size: int = field(default=RESNET18["embedding_size"], metadata={"help": "ResNet stem channels."})
    image_mean: list[float] = field(
        default_factory=lambda: list(IMAGENET_MEAN), metadata={"help": "Normalisation mean (RGB)."}
    )
    image_std: list[float] = field(
        default_factory=lambda: list(IMAGENET_STD), metadata={"help": "Normalisation std (RGB)."}
    )

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1 (1 = a plain linear classifier), got {self.num_experts}")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be >= {MIN_IMAGE_SIZE} (the ResNet halves the side 5 times), got {self.image_size}"
            )
        for name in ("image_mean", "image_std"):
            values = getattr(self, name)
            if len(values) != 3:
                raise ValueError(f"{name} needs 3 values (red, green, blue), got {len(values)}: {values}")
        if min(self.image_std) <= 0:
            raise ValueError(f"image_std values must be > 0 (pixels are divided by them), got {self.image_std}")


@dataclass
class DataArguments:
    """Target and auxiliary data sets, as `FORMAT:PATH[?options]` specs or `sspa-prepare` folders."""

    target_dataset: str = field(
        default="synthetic:?role=target",
        metadata={"help": "Target data set spec, e.g. rafdb:/data/RAF-DB or a folder written by sspa-prepare."},
    )
    auxiliary_dataset: str | None = field(
        default=None, metadata={"help": "Auxiliary data set spec (its train split is used), e.g. affectnet:/data/AN."}
    )
    auxiliary_fraction: float = field(
        default=1.0, metadata={"help": "Fraction p of the auxiliary train split to use (seeded by --seed)."}
    )
    auxiliary_stratified: bool = field(
        default=False, metadata={"help": "Draw the auxiliary fraction per class instead of uniformly."}
    )
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Evaluation data set spec; default: the target spec."}
    )
    eval_split: str = field(default="test", metadata={"help": "Split of the evaluation data set to evaluate on."})
    skip_bad_images: bool = field(
        default=False,
        metadata={
            "help": "Every image is checked before training; leave the ones that do not decode out (listed in "
            "bad_images.tsv) instead of stopping."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.auxiliary_fraction <= 1.0:
            raise ValueError(f"auxiliary_fraction must be in (0, 1], got {self.auxiliary_fraction}")


@dataclass
class SSPATrainingArguments(TrainingArguments):
    r"""`TrainingArguments` plus SSPA-JT's hyperparameters, the Table 5 ablation switches and the selection mode.

    Only the parameters specific to SSPA-JT are listed here; every other one is `TrainingArguments`' own. Some
    defaults differ from `TrainingArguments` (listed at the end).

    Parameters:
        > How the auxiliary labels are treated

        selection_mode (`str`, defaults to `"paper"`):
            One of `sspa_hf.modes.MODES`, best first: `consistency`, `transition` and `transition_pam` (ours),
            `paper`, `cleanlab`, `straight` (the naive merge). A mode warns once about the settings below that it does
            not read.
        crossfit_folds (`int`, defaults to `2`):
            K of the cleanlab mode's cross-validation.
        prior_weight (`float`, defaults to `0`):
            w of the transition_pam mode: from epoch T_S the model predicts with logits + w log pi, pi the target
            faces' class prior (logit adjustment), trading back the tail recall PAM's flat batches bought for
            accuracy (measured frontier: docs/RESULTS.md, "`transition_pam`'s prior weight").

        > Consistency (selection_mode `consistency`, ours; docs/method.md)

        consistency_weight (`float`, defaults to `1.0`):
            Weight of the strong view's loss beside the weak view's supervised one.
        consistency_targets (`str`, defaults to `"hard"`):
            `hard`: the target's argmax where its probability reaches `consistency_threshold` (FixMatch); `soft`:
            the whole target distribution (Mean Teacher); `labels`: no teacher, the strong view learns the given
            label as the weak one does (the ablation that tells the teacher's part from the strong view's).
        consistency_threshold (`float`, defaults to `0.95`):
            The confidence a hard target needs.
        distribution_alignment (`bool`, defaults to `True`):
            Scale the targets towards the target faces' class prior (ReMixMatch).
        consistency_on_target (`bool`, defaults to `True`):
            Target faces learn their label on a strong view too (off: only the auxiliary faces' strong views, 0.85x
            the cost, about 1 point less accuracy and macro F1 on FERPlus: docs/RESULTS.md).

        > Sample selection (paper Section 3.2, Eq. 3-4)

        selection_epochs (`int`, defaults to `40`):
            T_S, epochs of the sample-selection stage; the partition is frozen after it.
        ema_momentum (`float`, defaults to `0.95`):
            eta of the threshold EMA (Eq. 3).
        use_selection, fix_target (`bool`, default to `True`):
            Table 5's SSM and "D_T fixed" switches.

        > Paired augmentation (paper Section 3.3, Eq. 5-8)

        use_pairing (`bool`, defaults to `True`):
            Table 5's PAM switch: mix the flagged samples into clean partners after the selection stage.
        mixup_alpha, mixup_beta (`float`, default to `5.0` and `1.0`):
            lambda ~ Beta(alpha, beta) (Eq. 5).
        allocation (`str`, defaults to `"exact"`):
            The Eq. 8 solver, `exact` (integer water-filling) or `slsqp` (the paper's).

        > Several processes, augmentation

        sync_batch_stats (`bool`, defaults to `False`):
            Batch statistics over all processes, as on one device (BatchNorm, Eq. 8, ARM's batch mean).
        crop_padding (`float`, defaults to `0.125`):
            Random-crop padding as a fraction of the image size.
        train_augmentation (`str`, defaults to `"weak"`):
            The training view: `weak` (random crop and flip, the paper's) or `strong` (also colour, rotation and
            erasing: `sspa_hf.data.augment.STRONG`).
        overwrite_output_dir (`bool`, defaults to `False`):
            Replace a complete or unfinished run in `output_dir` (refused otherwise).

    Defaults that differ from `TrainingArguments`: `num_train_epochs` 80 (3.0; the paper's schedule, T_S = 40),
    `max_grad_norm` 0.0, no clipping (1.0; the paper's plain SGD), `remove_unused_columns` False (True; SSPA needs
    `sample_index` and `is_target`), `ddp_find_unused_parameters` False (None; every parameter takes part in every
    forward pass).
    """

    selection_mode: str = field(
        default="paper",
        metadata={
            "help": "How the auxiliary labels are treated. "
            + " ".join(f"'{name}': {mode.help}" for name, mode in MODES.items())
        },
    )
    crossfit_folds: int = field(default=2, metadata={"help": "K, cross-validation folds of selection_mode 'cleanlab'."})
    prior_weight: float = field(
        default=0.0,
        metadata={
            "help": "w of selection_mode 'transition_pam': from epoch T_S predictions use logits + w log pi (pi: the "
            "target faces' class prior), trading tail recall back for accuracy (0: none; docs/RESULTS.md)."
        },
    )
    consistency_weight: float = field(
        default=1.0, metadata={"help": "selection_mode 'consistency': weight of the strong view's loss."}
    )
    consistency_targets: str = field(
        default="hard",
        metadata={"help": "selection_mode 'consistency': hard (FixMatch), soft or labels (docs/method.md)."},
    )
    consistency_threshold: float = field(
        default=0.95, metadata={"help": "selection_mode 'consistency': the confidence a hard target needs."}
    )
    distribution_alignment: bool = field(
        default=True,
        metadata={"help": "selection_mode 'consistency': targets scaled towards the target prior."},
    )
    consistency_on_target: bool = field(
        default=True,
        metadata={"help": "selection_mode 'consistency': target faces on a strong view too."},
    )
    selection_epochs: int = field(
        default=40, metadata={"help": "T_S: epochs of the sample-selection stage; the partition is frozen after."}
    )
    ema_momentum: float = field(default=0.95, metadata={"help": "eta of the threshold EMA (Eq. 3)."})
    use_selection: bool = field(default=True, metadata={"help": "SSM: select clean auxiliary samples."})
    fix_target: bool = field(default=True, metadata={"help": "D_T fixed: target samples are always clean."})
    use_pairing: bool = field(
        default=True, metadata={"help": "PAM: mix noisy samples into clean partners after the SS stage."}
    )
    mixup_alpha: float = field(default=5.0, metadata={"help": "alpha of lambda ~ Beta(alpha, beta) (Eq. 5)."})
    mixup_beta: float = field(default=1.0, metadata={"help": "beta of lambda ~ Beta(alpha, beta) (Eq. 5)."})
    allocation: str = field(
        default="exact", metadata={"help": f"Eq. 8 solver: one of {ALLOCATIONS} ('slsqp' is the paper's)."}
    )
    sync_batch_stats: bool = field(
        default=False,
        metadata={
            "help": "With several processes, make the batch statistics global, as on one device: Eq. 8 on the global "
            "batch, BatchNorm statistics (SyncBatchNorm on GPUs, an all-reduce elsewhere) and ARM's batch mean over all"
            " processes. No effect on one process."
        },
    )
    crop_padding: float = field(
        default=0.125, metadata={"help": "Random-crop padding as a fraction of the image size (training only)."}
    )
    train_augmentation: str = field(
        default="weak",
        metadata={"help": "The training view: weak (crop, flip; the paper's) or strong (docs/datasets.md)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an output_dir that holds a complete or unfinished run anyway, replacing it (its "
            "checkpoints are deleted). Without it such a folder is refused and left as it is."
        },
    )

    # Defaults changed from TrainingArguments (the docstring's last paragraph says why).
    num_train_epochs: float = field(
        default=80.0, metadata={"help": "Total training epochs (the paper's 80; transformers' default is 3)."}
    )
    max_grad_norm: float = field(
        default=0.0,
        metadata={
            "help": "Gradient clipping norm; 0 = no clipping, the paper's plain SGD (transformers' default is 1.0)."
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: SSPA needs the image, sample_index and is_target columns."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Kept False: every parameter of an SSPA model takes part in every forward pass."},
    )

    def __post_init__(self) -> None:
        if not self.learning_rate >= 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_augmentation not in VIEWS:
            raise ValueError(f"train_augmentation must be one of {tuple(VIEWS)}, got {self.train_augmentation!r}")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        if self.mixup_alpha <= 0 or self.mixup_beta <= 0:
            raise ValueError(f"mixup_alpha and mixup_beta must be > 0, got {self.mixup_alpha}, {self.mixup_beta}")
        if self.selection_epochs < 0:
            raise ValueError(f"selection_epochs must be >= 0, got {self.selection_epochs}")
        if self.crossfit_folds < 2:
            raise ValueError(f"crossfit_folds must be >= 2, got {self.crossfit_folds}")
        if self.sync_batch_stats and self.allocation != "exact":
            raise ValueError(
                "sync_batch_stats solves Eq. 8 across processes with the exact solver; "
                f"got allocation={self.allocation!r}"
            )
        if self.train_sampling_strategy not in ("random", "sequential"):
            raise ValueError(
                f"train_sampling_strategy={self.train_sampling_strategy!r} groups text by length; SSPA trains on "
                "images: use 'random' or 'sequential'"
            )
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must stay False: SSPA needs sample_index and is_target")
        # Transformers' own checks after SSPA's: they import its model stack (report_to), seconds a refusal of
        # SSPA's own values need not wait for.
        super().__post_init__()
        check_mode(self)  # last: a mode's checks may read any of the above
