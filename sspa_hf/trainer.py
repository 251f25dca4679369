"""SSPATrainer: the two-stage SSPA-JT training loop (paper Algorithm 3) as a `transformers.Trainer`.

Sample-selection (SS) stage: forward every sample, update its thresholds (Algorithm 1), take the loss over the
clean set of the previous epoch. Paired-augmentation (PA) stage: freeze the partition and replace each batch's
noisy samples by Mixup with clean partners (Algorithm 2), loss over the whole new batch.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from .arguments import SSPATrainingArguments
from .data.transforms import EvalTransform, FERTorchDataset, TrainAugment, collate_fer
from .errors import UserInputError
from .modelcard import model_card
from .modeling_sspa import expert_cross_entropy
from .pairing import pair_and_mix
from .run_folder import MODEL_CARD, write_selection
from .selection import SampleSelector

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "label", "is_target", "sample_index", "source")


class SSPATrainer(Trainer):
    """A `Trainer` whose loss is SSPA-JT's; the selection state lives in `self.selector`.

    `train_dataset` is a joint `datasets.Dataset` (see `sspa_hf.data.build_joint`) with the columns image,
    label, is_target, sample_index (0..N-1), source; `processing_class` is the model's image processor, which
    gives the training augmentation its size and normalisation and is the evaluation transform itself.
    """

    args: SSPATrainingArguments

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("data_collator", collate_fer)
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, SSPATrainingArguments):
            raise TypeError("SSPATrainer needs SSPATrainingArguments (it carries the SSPA hyperparameters)")
        if self.processing_class is None:
            raise ValueError("SSPATrainer needs processing_class=<the model's image processor>")
        data = self.train_dataset
        missing = [c for c in REQUIRED_COLUMNS if data is None or c not in data.column_names]
        if missing:
            raise ValueError(f"SSPATrainer: the training set lacks the columns {missing}; build it with build_joint")
        if not np.array_equal(np.asarray(data["sample_index"]), np.arange(len(data))):
            raise ValueError("SSPATrainer: sample_index must be 0..N-1 in row order (build_joint writes it so)")
        config = self.model.config
        self.selector = SampleSelector(
            labels=np.asarray(data["label"]),
            is_target=np.asarray(data["is_target"]),
            sources=list(data["source"]),
            num_experts=config.num_experts,
            num_classes=config.num_labels,
            selection_epochs=self.args.selection_epochs,
            momentum=self.args.ema_momentum,
            fix_target=self.args.fix_target,
            enabled=self.args.use_selection,
            reference_labels=np.asarray(data["reference_label"]) if "reference_label" in data.column_names else None,
        )
        processor = self.processing_class
        self.train_augment = TrainAugment(
            image_size=processor.size["height"],
            image_mean=processor.image_mean,
            image_std=processor.image_std,
            padding=self.args.crop_padding,
            seed=self.args.seed,
        )
        self._pairing_calls = (-1, 0)  # (global step, calls at that step): seeds PAM's random draws
        self.add_callback(_SSPACallback(self))

    # ----- data -----
    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """Batches carry pixel_values, labels, sample_index and is_target (augmented per sample and epoch)."""
        dataset = FERTorchDataset(self.train_dataset, self.train_augment)
        return self._get_dataloader(
            dataset=dataset,
            description="Training",
            batch_size=self._train_batch_size,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def get_eval_dataloader(self, eval_dataset=None) -> torch.utils.data.DataLoader:
        """Evaluation images go through the image processor itself: the same numbers `pipeline` produces."""
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("SSPATrainer: evaluation requires an eval_dataset")
        return self._get_dataloader(
            dataset=FERTorchDataset(dataset, EvalTransform(self.processing_class)),
            description="Evaluation",
            batch_size=self.args.eval_batch_size,
            sampler_fn=self._get_eval_sampler,
        )

    def get_test_dataloader(self, test_dataset) -> torch.utils.data.DataLoader:
        return self.get_eval_dataloader(test_dataset)

    # ----- loss -----
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # the Trainer reads the batch again after the step
        sample_index = inputs.pop("sample_index")
        inputs.pop("is_target", None)
        labels, pixels = inputs.pop("labels"), inputs.pop("pixel_values")
        if not model.training:
            outputs = model(pixel_values=pixels, labels=labels)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        clean = self.selector.loss_mask(sample_index).to(pixels.device)
        if self.selector.selecting:
            # Algorithm 3 lines 9-14: one forward pass over the whole batch; the loss keeps the clean samples of
            # the previous epoch's partition, and every sample's thresholds move (Algorithm 1).
            outputs = model(pixel_values=pixels)
            self._update_selection(sample_index, outputs.expert_probs, labels)
            weight = clean.to(outputs.expert_logits.dtype)
        elif self.args.use_pairing:
            paired = pair_and_mix(
                pixels,
                labels,
                clean,
                rng=self._pairing_rng(),
                alpha=self.args.mixup_alpha,
                beta=self.args.mixup_beta,
                num_classes=self.model.config.num_labels,
                method=self.args.allocation,
            )
            self._record_pairs(paired.created, pixels.device)
            pixels, labels, weight = paired.pixel_values, paired.labels, paired.loss_weight
            outputs = model(pixel_values=pixels)
        else:  # frozen partition without PAM: the noisy samples are left out
            outputs = model(pixel_values=pixels)
            weight = clean.to(outputs.expert_logits.dtype)

        per_sample = expert_cross_entropy(outputs.expert_logits, labels)
        loss = (per_sample * weight).sum() / weight.sum().clamp(min=1.0)
        return (loss, outputs) if return_outputs else loss

    def _update_selection(self, sample_index: torch.Tensor, expert_probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Apply Algorithm 1 for the samples of this step on every process, in rank order."""
        with torch.no_grad():
            rows = (sample_index.long(), expert_probs.detach().float(), labels.long())
            if self.accelerator.num_processes > 1:
                rows = tuple(
                    self.accelerator.gather(self.accelerator.pad_across_processes(t, dim=0, pad_index=-1)) for t in rows
                )
                keep = rows[0] >= 0
                rows = tuple(t[keep] for t in rows)
            self.selector.update(*rows)

    def _record_pairs(self, created: np.ndarray, device: torch.device) -> None:
        counts = torch.as_tensor(created, device=device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self.selector.created += counts.cpu()

    def _pairing_rng(self) -> np.random.Generator:
        """PAM's random draws as a function of (seed, step, micro-batch, rank): resumable and reproducible."""
        step, calls = self._pairing_calls
        calls = calls + 1 if step == self.state.global_step else 0
        self._pairing_calls = (self.state.global_step, calls)
        return np.random.default_rng([self.args.seed, self.state.global_step, calls, self.args.process_index])

    # ----- epochs, checkpoints, reports -----
    def _advance(self, epoch: int) -> None:
        for stats in self.selector.advance_to(epoch):
            self.log(dict(stats))  # a copy: `Trainer.log` writes its own "epoch" into the dict it is given

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, restoring the selection state from the checkpoint it resumes from."""
        if resume_from_checkpoint is True or (
            isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() == "true"
        ):
            output_dir = self.args.output_dir
            resume_from_checkpoint = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
            if resume_from_checkpoint is None:
                raise UserInputError(f"No checkpoint to resume from in output_dir {self.args.output_dir}")
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint:
            self.selector.load(resume_from_checkpoint)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint or None, **kwargs)
        self._check_ranks_agree()
        if self.args.should_save:
            write_selection(self.args.output_dir, self.selector, self.train_dataset)
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model`; a checkpoint also gets the selection state (before any push or rotation)."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if _internal_call and output_dir is not None and self.args.should_save:
            self.selector.save(output_dir)

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


class _SSPACallback(TrainerCallback):
    """Epoch boundaries: partition commits and the augmentation's epoch."""

    def __init__(self, trainer: SSPATrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor(state.epoch + 1e-9)
        self.trainer._advance(epoch)
        self.trainer.train_augment.set_epoch(epoch)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer._advance(self.trainer.selector.epoch + 1)
