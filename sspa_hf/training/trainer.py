"""SSPATrainer: the two-stage SSPA-JT training loop (paper Algorithm 3) as a `transformers.Trainer`.

Sample-selection (SS) stage: forward every sample, update its thresholds (Algorithm 1), take the loss over the
clean set of the previous epoch. Paired-augmentation (PA) stage: freeze the partition and replace each batch's
noisy samples by Mixup with clean partners (Algorithm 2), loss over the whole new batch.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.image_processing_utils import BaseImageProcessor
from transformers.trainer_utils import EvalPrediction, rotate_checkpoints

from ..data.augment import TRAIN_VIEW, VIEWS, BatchAugment
from ..data.columns import read_column
from ..data.transforms import EvalTransform, FERTorchDataset, collate_fer
from ..errors import UserInputError
from ..model.modeling_sspa import expert_cross_entropy
from ..modes import SelectionMode, get_mode
from ..run.checkpoints import (
    disk_full,
    latest_complete_checkpoint,
    publish,
    resolve_resume,
    signals_deferred,
)
from ..run.folder import MODEL_CARD, STAGING, TRAINER_STATE, write_selection
from ..run.modelcard import model_card
from .arguments import SSPATrainingArguments
from .callbacks import QUIET, EpochCallback
from .global_batches import GlobalBatchShares
from .selection import SampleSelector
from .sync_batchnorm import synchronise_batchnorm

REQUIRED_COLUMNS = ("image", "label", "is_target", "sample_index", "source")

# The private `Trainer` hooks overridden or called here are listed beside the transformers<6 pin (pyproject.toml).


class SSPATrainer(Trainer):
    """A `Trainer` whose loss is SSPA-JT's (or another selection mode's, `args.selection_mode`).

    The mode (`sspa_hf.modes`) owns the selection state (`self.mode`, its `SampleSelector` as `self.selector`):
    it gives each batch's per-sample loss and loss weight; this class turns them into the step's loss, feeds
    augmented batches, writes complete checkpoints and `selection.parquet`.

    Args:
        model: An `SSPAForImageClassification` (`build_model`); the transition mode needs `standard_transition`.
        args: `SSPATrainingArguments`; `selection_mode` picks the mode.
        train_dataset: A joint `datasets.Dataset` from `build_joint` (columns image, label, is_target,
            sample_index 0..N-1, source), after the mode's `before_training` (cleanlab adds its verdict there).
        processing_class: The model's image processor: the augmentation's size and normalisation, and the
            evaluation transform itself (the numbers `pipeline` produces).
        eval_dataset, compute_metrics, callbacks, optimizers, **kwargs: as for `Trainer`.

    Example:
        >>> model, processor = build_model(model_args, **get_mode(args.selection_mode).model_options)
        >>> mode = get_mode(args.selection_mode)
        >>> train_set = mode.before_training(joint, args=args, plain_trainers=plain_trainers(model_args, args))
        >>> trainer = SSPATrainer(model=model, args=args, train_dataset=train_set, processing_class=processor)
        >>> trainer.train()
    """

    args: SSPATrainingArguments
    # compute_loss divides by the whole step's loss weight (num_items_in_batch): the Trainer must not divide again.
    loss_is_scaled_for_ga = True
    _staging: Path | None = None  # while a checkpoint is written: where the Trainer writes it (_save_checkpoint)

    def __init__(
        self,
        model: PreTrainedModel,
        args: SSPATrainingArguments,
        train_dataset: Dataset,
        processing_class: BaseImageProcessor,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, Any] = (None, None),
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, SSPATrainingArguments):
            raise TypeError("SSPATrainer needs SSPATrainingArguments (it carries the SSPA hyperparameters)")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                "SSPATrainer: compute_loss_func is not supported; the loss is the selection mode's (sspa_hf.modes)"
            )
        if processing_class is None:
            raise ValueError("SSPATrainer needs processing_class=<the model's image processor>")
        missing = [c for c in REQUIRED_COLUMNS if train_dataset is None or c not in train_dataset.column_names]
        if missing:
            raise ValueError(f"SSPATrainer: the training set lacks the columns {missing}; build it with build_joint")
        if not np.array_equal(np.asarray(read_column(train_dataset, "sample_index")), np.arange(len(train_dataset))):
            raise ValueError("SSPATrainer: sample_index must be 0..N-1 in row order (build_joint writes it so)")
        kwargs.setdefault("data_collator", collate_fer)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            **kwargs,
        )
        self.mode: SelectionMode = get_mode(self.args.selection_mode)(self)
        self.train_augment = BatchAugment(
            image_size=processing_class.size["height"],
            image_mean=processing_class.image_mean,
            image_std=processing_class.image_std,
            padding=self.args.crop_padding,
            seed=self.args.seed,
            views={TRAIN_VIEW: VIEWS[self.args.train_augmentation], **self.mode.views},
        )
        self._sync_batch_statistics()
        self.add_callback(EpochCallback(self))
        for plain, quiet in QUIET:
            if self.pop_callback(plain) is not None:
                self.add_callback(quiet)

    @property
    def selector(self) -> SampleSelector:
        """The selection state of the mode: partition, thresholds, statistics."""
        return self.mode.selector

    # ----- data -----
    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """Batches carry uint8 faces with their random parameters (augmented on the device in `compute_loss`),
        labels, sample_index and is_target; with N processes each step is the one-process global batch, shared out
        (`GlobalBatchShares`)."""
        processes = self.accelerator.num_processes
        return self._get_dataloader(
            dataset=FERTorchDataset(self.train_dataset, self.train_augment),
            description="Training",
            batch_size=self._train_batch_size,
            sampler_fn=self._get_train_sampler if processes == 1 else self._global_batch_shares,
            is_training=True,
        )

    def _global_batch_shares(self, dataset: FERTorchDataset) -> GlobalBatchShares:
        """This process's share of each one-process global batch (the last one too, nothing padded)."""
        return GlobalBatchShares(
            self._get_train_sampler(dataset),
            global_batch_size=self._train_batch_size * self.accelerator.num_processes,
            num_processes=self.accelerator.num_processes,
            process_index=self.accelerator.process_index,
            drop_last=self.args.dataloader_drop_last,
        )

    def get_eval_dataloader(self, eval_dataset=None) -> torch.utils.data.DataLoader:
        """Evaluation images go through the image processor itself: the same numbers `pipeline` produces. Every
        face is evaluated, whatever `dataloader_drop_last` (which the Trainer would apply here too) says."""
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("SSPATrainer: evaluation requires an eval_dataset")
        drop_last, self.args.dataloader_drop_last = self.args.dataloader_drop_last, False  # every face is judged
        try:
            return self._get_dataloader(
                dataset=FERTorchDataset(dataset, EvalTransform(self.processing_class)),
                description="Evaluation",
                batch_size=self.args.eval_batch_size,
                sampler_fn=self._get_eval_sampler,
            )
        finally:
            self.args.dataloader_drop_last = drop_last  # it is meant for the training batches only

    def get_test_dataloader(self, test_dataset) -> torch.utils.data.DataLoader:
        return self.get_eval_dataloader(test_dataset)

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """The Trainer's list, less the parameters the mode keeps out of weight decay (`no_decay`)."""
        kept_out = self.mode.no_decay
        return [name for name in super().get_decay_parameter_names(model) if not any(p in name for p in kept_out)]

    # ----- loss -----
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The mode's per-sample loss on the augmented batch, weighted by its loss weight, over the optimizer step's
        loss weight.

        `num_items_in_batch` (from `get_batch_samples`) is the step's loss weight summed over its micro-batches
        and processes: the micro-batches' losses add up (`loss_is_scaled_for_ga`) and the factor N undoes DDP's
        average over processes, so the gradient is that of the mean over the weighted samples of the global batch.
        """
        if not model.training:
            outputs = model(pixel_values=inputs["pixel_values"])
            smoothing = self.args.label_smoothing_factor
            outputs.loss = expert_cross_entropy(outputs.expert_logits, inputs["labels"], smoothing).mean()
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        batch = self.train_augment.apply(inputs)  # the views the mode trains on, batched on the device
        weight = self.mode.loss_weight(batch["sample_index"]).to(batch["pixel_values"].device)
        per_sample, outputs = self.mode.loss(model, batch, weight)
        if num_items_in_batch is None:  # a batch from outside the training loop: the mean over its own weight
            num_items_in_batch = weight.sum().clamp(min=1.0)
        loss = (per_sample * weight).sum() / num_items_in_batch * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device) -> tuple[list, torch.Tensor]:
        """One optimizer step's micro-batches and their loss weight summed over all processes (at least 1)."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        weight = sum(float(self.mode.loss_weight(batch["sample_index"]).sum()) for batch in batches)
        total = torch.tensor(float(weight), device=device)
        if self.accelerator.num_processes > 1:
            total = self.accelerator.reduce(total, reduction="sum")
        return batches, total.clamp(min=1.0)

    def _sync_batch_statistics(self) -> None:
        """sync_batch_stats: BatchNorm and ARM's batch mean over all processes, as on one device (any backend)."""
        if not self.args.sync_batch_stats or self.accelerator.num_processes == 1:
            return
        self.model = synchronise_batchnorm(self.model, self.args.device)
        if getattr(self.model, "arm", None) is not None:
            self.model.arm.sync_across_processes = True

    # ----- epochs, checkpoints, reports -----
    def _advance(self, epoch: int) -> None:
        """Close the epochs before `epoch`: log their statistics (back-ends); the mode prints its lines."""
        for stats in self.selector.advance_to(epoch):
            self.log(dict(stats))  # a copy: `Trainer.log` writes its own "epoch" into the dict it is given
            self.mode.epoch_closed(stats)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, from the newest complete checkpoint (`True`), restoring its selection state."""
        resume_from_checkpoint = resolve_resume(
            resume_from_checkpoint, self.args.output_dir, need_optimizer=not self.args.save_only_model
        )
        if resume_from_checkpoint:
            self.mode.load(resume_from_checkpoint)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        self.mode.finish()
        self._check_ranks_agree()
        if self.args.should_save:
            write_selection(self.args.output_dir, self.selector, self.train_dataset, self.mode.verdict_columns())
        return output

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """An intermediate push (`hub_strategy` every_save...) uploads output_dir after the Trainer copies config
        and weights there; add the modelling code (`auto_map`), so that every pushed revision loads with
        `trust_remote_code=True`."""
        if self.is_world_process_zero() and self.args.hub_strategy != "end":
            from transformers.dynamic_module_utils import custom_object_save

            custom_object_save(self.model, self.args.output_dir, config=self.model.config)
        super()._push_from_checkpoint(checkpoint_folder)

    def _get_output_dir(self, trial) -> str:
        """During a checkpoint save, the staging folder: the Trainer writes `checkpoint-N` there."""
        return str(self._staging) if self._staging else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` into `.saving/`, then fsync and rename into place, then rotate: a
        `checkpoint-N` folder is complete or absent. A SIGTERM meanwhile waits; a full disk is one line."""
        run_dir = Path(super()._get_output_dir(trial))
        final = run_dir / f"checkpoint-{self.state.global_step}"
        staged = run_dir / STAGING / final.name
        with signals_deferred():
            if self.args.should_save:
                shutil.rmtree(staged.parent, ignore_errors=True)  # what a killed save left
            self.accelerator.wait_for_everyone()
            self._staging = staged.parent  # the Trainer's own rotation then sees this checkpoint only: a no-op
            try:
                super()._save_checkpoint(model, trial)
            except Exception as exc:
                shutil.rmtree(staged.parent, ignore_errors=True)
                if full := disk_full(exc, run_dir):
                    raise UserInputError(
                        f"saving {final} failed: {full}; the last complete checkpoint is "
                        f"{latest_complete_checkpoint(run_dir)[0] or 'none'}: free some space and resume with "
                        "--resume_from_checkpoint true"
                    ) from exc
                raise
            finally:
                self._staging = None
            self.accelerator.wait_for_everyone()  # every rank's rng_state is written
            if self.args.should_save:
                if self.state.best_model_checkpoint == str(staged):  # this step is the best: name its final place
                    self.state.best_model_checkpoint = str(final)
                    self.state.save_to_json(str(staged / TRAINER_STATE))
                publish(staged, final)
                staged.parent.rmdir()
                rotate_checkpoints(
                    output_dir=str(run_dir),
                    save_total_limit=self.args.save_total_limit,
                    best_model_checkpoint=self.state.best_model_checkpoint,
                    use_mtime=True,
                )
            self.accelerator.wait_for_everyone()

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model`; a checkpoint also gets the selection state (before any push or rotation)."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if _internal_call and output_dir is not None and self.args.should_save:
            self.mode.save(output_dir)

    def _check_ranks_agree(self) -> None:
        """Every process must hold the same thresholds and partition; fail loudly if not."""
        if self.accelerator.num_processes == 1:
            return
        digest = torch.tensor(
            [float(self.selector.tau.double().sum()), float(self.selector.clean.sum()), float(self.selector.epoch)],
            dtype=torch.float64,
            device=self.args.device,
        )
        gathered = self.accelerator.gather(digest.view(1, -1))
        if not torch.all(gathered == gathered[0]):
            raise RuntimeError(f"selection state differs across processes: {gathered.tolist()}")

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | None = None,
        dataset_args: str | None = None,
        license: str | None = None,
        **kwargs,
    ) -> None:
        """Write the SSPA-JT model card (README.md) of output_dir from the arguments, config and run folder.

        As in `Trainer.create_model_card` (and forwarded by `push_to_hub(**kwargs)`): `dataset_tags` names the
        training data sets (target, then auxiliary), `dataset` the evaluation set and `dataset_args` its split.
        """
        if not self.is_world_process_zero():
            return
        card = model_card(
            self.args.output_dir,
            self.model.config,
            self.args,
            model_name=model_name,
            train_datasets=[dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags or ()),
            eval_dataset=dataset,
            eval_split=dataset_args or "test",
            license=license or "apache-2.0",
        )
        card.save(Path(self.args.output_dir) / MODEL_CARD)
