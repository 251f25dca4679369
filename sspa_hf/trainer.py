"""SSPATrainer: the two-stage SSPA-JT training loop (paper Algorithm 3) as a `transformers.Trainer`.

Sample-selection (SS) stage: forward every sample, update its thresholds (Algorithm 1), take the loss over the
clean set of the previous epoch. Paired-augmentation (PA) stage: freeze the partition and replace each batch's
noisy samples by Mixup with clean partners (Algorithm 2), loss over the whole new batch.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import rotate_checkpoints

from .arguments import SSPATrainingArguments
from .checkpoints import (
    STAGING,
    disk_full,
    latest_complete_checkpoint,
    publish,
    resolve_resume,
    signals_deferred,
)
from .data.columns import read_column
from .data.transforms import EvalTransform, FERTorchDataset, TrainAugment, collate_fer
from .errors import UserInputError
from .modelcard import model_card
from .modeling_sspa import expert_cross_entropy, transition_nll
from .pairing import allocate_across, pair_and_mix
from .run_folder import MODEL_CARD, write_selection
from .selection import SampleSelector
from .sync_batchnorm import synchronise_batchnorm

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "label", "is_target", "sample_index", "source")


class SSPATrainer(Trainer):
    """A `Trainer` whose loss is SSPA-JT's; the selection state lives in `self.selector`.

    `train_dataset` is a joint `datasets.Dataset` (see `sspa_hf.data.build_joint`) with the columns image,
    label, is_target, sample_index (0..N-1), source; `processing_class` is the model's image processor, which
    gives the training augmentation its size and normalisation and is the evaluation transform itself.
    """

    args: SSPATrainingArguments
    # compute_loss returns a per-micro-batch mean: the Trainer must always divide it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("data_collator", collate_fer)
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, SSPATrainingArguments):
            raise TypeError("SSPATrainer needs SSPATrainingArguments (it carries the SSPA hyperparameters)")
        if self.compute_loss_func is not None:
            raise ValueError(
                "SSPATrainer: compute_loss_func is not supported; the loss is SSPA-JT's (SSPATrainer.compute_loss)"
            )
        if self.processing_class is None:
            raise ValueError("SSPATrainer needs processing_class=<the model's image processor>")
        data = self.train_dataset
        missing = [c for c in REQUIRED_COLUMNS if data is None or c not in data.column_names]
        if missing:
            raise ValueError(f"SSPATrainer: the training set lacks the columns {missing}; build it with build_joint")
        if not np.array_equal(np.asarray(read_column(data, "sample_index")), np.arange(len(data))):
            raise ValueError("SSPATrainer: sample_index must be 0..N-1 in row order (build_joint writes it so)")
        config = self.model.config
        self.selector = SampleSelector(
            labels=np.asarray(read_column(data, "label")),
            is_target=np.asarray(read_column(data, "is_target")),
            sources=read_column(data, "source"),
            num_experts=config.num_experts,
            num_classes=config.num_labels,
            selection_epochs=self.args.selection_epochs,
            momentum=self.args.ema_momentum,
            fix_target=self.args.fix_target,
            enabled=self.args.use_selection,
            reference_labels=(
                np.asarray(read_column(data, "reference_label")) if "reference_label" in data.column_names else None
            ),
        )
        if self.args.selection_mode == "cleanlab":
            if "clean" not in data.column_names:
                raise ValueError("selection_mode 'cleanlab' needs the clean column (crossfit.clean_with_cleanlab)")
            self.selector.freeze(np.asarray(read_column(data, "clean")))
        elif self.args.selection_mode == "transition":
            if not getattr(self.model.config, "standard_transition", False):
                raise ValueError("selection_mode 'transition' needs a model built with standard_transition=True")
            self.selector.freeze(np.ones(len(data), dtype=bool))  # nothing is dropped
        self.standard_judgement: dict[str, np.ndarray] = {}  # transition mode: per-sample verdict after training
        processor = self.processing_class
        self.train_augment = TrainAugment(
            image_size=processor.size["height"],
            image_mean=processor.image_mean,
            image_std=processor.image_std,
            padding=self.args.crop_padding,
            seed=self.args.seed,
        )
        self._staging: str | None = None  # set while a checkpoint is being written (see _save_checkpoint)
        self._pairing_calls = (-1, 0)  # (global step, calls at that step): seeds PAM's random draws
        self._sync_batch_statistics()
        self.add_callback(_SSPACallback(self))
        for plain, quiet in ((ProgressCallback, _QuietProgressCallback), (PrinterCallback, _QuietPrinterCallback)):
            if self.pop_callback(plain) is not None:
                self.add_callback(quiet)

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

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """The Trainer's list, less the standard transition: decay would pull M towards uniform, not towards 0."""
        return [name for name in super().get_decay_parameter_names(model) if "standard_transition" not in name]

    # ----- loss -----
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # the Trainer reads the batch again after the step
        sample_index = inputs.pop("sample_index")
        is_target = inputs.pop("is_target")
        labels, pixels = inputs.pop("labels"), inputs.pop("pixel_values")
        denominator = inputs.pop("loss_denominator", None)
        smoothing = self.args.label_smoothing_factor
        if not model.training:
            outputs = model(pixel_values=pixels)
            outputs.loss = expert_cross_entropy(outputs.expert_logits, labels, smoothing).mean()
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        clean = self.selector.loss_mask(sample_index).to(pixels.device)
        if self.args.selection_mode == "transition":
            # Beyond the paper: every sample enters the loss; a target label directly, an auxiliary label through
            # the learnt standard transition (transition_nll).
            outputs = model(pixel_values=pixels)
            per_sample = torch.where(
                is_target.to(pixels.device),
                expert_cross_entropy(outputs.expert_logits, labels, smoothing),
                transition_nll(outputs.auxiliary_log_probs, labels),
            )
            return self._weighted_loss(per_sample, torch.ones_like(per_sample), denominator, outputs, return_outputs)
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
                allocation=self._global_allocation(labels, clean),
            )
            self._record_pairs(paired.created, pixels.device)
            pixels, labels, weight = paired.pixel_values, paired.labels, paired.loss_weight
            outputs = model(pixel_values=pixels)
        else:  # frozen partition without PAM: the noisy samples are left out
            outputs = model(pixel_values=pixels)
            weight = clean.to(outputs.expert_logits.dtype)

        per_sample = expert_cross_entropy(outputs.expert_logits, labels, smoothing)
        return self._weighted_loss(per_sample, weight, denominator, outputs, return_outputs)

    @staticmethod
    def _weighted_loss(per_sample, weight, denominator, outputs, return_outputs: bool):
        """Sum of the weighted per-sample losses over the optimizer step's loss weight (see get_batch_samples)."""
        if denominator is None:  # a batch from outside the training loop: the mean over its own loss weight
            denominator = weight.sum().clamp(min=1.0)
        loss = (per_sample * weight).sum() / denominator
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device) -> tuple[list, None]:
        """One optimizer step's micro-batches, each told the loss weight of the whole step (all processes).

        The loss is the mean over the clean samples of the optimizer step's global batch, however it is split:
        each micro-batch's summed loss is divided by (step weight) / (processes x micro-batches), which undoes
        the Trainer's division by the accumulation steps and DDP's average over processes. One process without
        accumulation gets exactly the mean over its batch's clean samples.
        """
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        total = torch.tensor([float(sum(self._loss_weight_count(b) for b in batches))], device=self.args.device)
        if self.accelerator.num_processes > 1:
            total = self.accelerator.reduce(total, reduction="sum")
        denominator = max(float(total), 1.0) / (self.accelerator.num_processes * max(len(batches), 1))
        for batch in batches:
            batch["loss_denominator"] = denominator
        return batches, num_items

    def _loss_weight_count(self, batch: dict[str, torch.Tensor]) -> int:
        """How many samples of a micro-batch enter compute_loss's weighted sum (see its three branches)."""
        clean = self.selector.loss_mask(batch["sample_index"])
        if not self.selector.selecting and self.args.use_pairing:  # PAM: every sample, unless none is clean
            return len(clean) if bool(clean.any()) else 0
        return int(clean.sum())

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

    def _global_allocation(self, labels: torch.Tensor, clean: torch.Tensor) -> np.ndarray | None:
        """This process's share of Eq. 8 solved on the global batch (sync_batch_stats); None: solve it locally."""
        if not self.args.sync_batch_stats or self.accelerator.num_processes == 1:
            return None
        classes = self.model.config.num_labels
        counts = torch.zeros(1, classes + 1, dtype=torch.long, device=labels.device)
        counts[0, :classes] = torch.bincount(labels[clean], minlength=classes)
        counts[0, classes] = int((~clean).sum())
        counts = self.accelerator.gather(counts).cpu().numpy()  # (processes, C + 1), in rank order
        return allocate_across(counts[:, :classes], counts[:, classes])[self.args.process_index]

    def _sync_batch_statistics(self) -> None:
        """sync_batch_stats: BatchNorm and ARM's batch mean over all processes, as on one device (any backend)."""
        if not self.args.sync_batch_stats or self.accelerator.num_processes == 1:
            return
        self.model = synchronise_batchnorm(self.model, self.args.device)
        if getattr(self.model, "arm", None) is not None:
            self.model.arm.sync_across_processes = True

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
        """Close the epochs before `epoch`: log their statistics (back-ends) and print one line each."""
        for stats in self.selector.advance_to(epoch):
            self.log(dict(stats))  # a copy: `Trainer.log` writes its own "epoch" into the dict it is given
            if not self.is_world_process_zero() or not self.selector.enabled:
                continue
            closed = int(stats["epoch"])
            if closed < self.selector.selection_epochs:
                _say(epoch_line(closed, stats, self.selector.num_experts))
            if closed == self.selector.selection_epochs - 1:
                _say(stage_switch_line(self.selector, self.model.config.id2label, self.args.use_pairing))

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, from the newest complete checkpoint (`True`), restoring its selection state."""
        resume_from_checkpoint = resolve_resume(
            resume_from_checkpoint, self.args.output_dir, need_optimizer=not self.args.save_only_model
        )
        if resume_from_checkpoint:
            self.selector.load(resume_from_checkpoint)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if self.args.selection_mode == "transition":
            self._judge_with_transition()
        self._check_ranks_agree()
        if self.args.should_save:
            write_selection(self.args.output_dir, self.selector, self.train_dataset, self._verdict_columns())
        return output

    def _judge_with_transition(self) -> None:
        """The trained model's verdict on every auxiliary label: posterior q(j) ~ M[y, j] p(j | x) (eval mode).

        The label is consistent iff it is the most probable target class under q; otherwise q's argmax is its
        target-standard label. `selector.clean` becomes that verdict, so the selection statistics report it.
        """
        data = self.train_dataset
        aux = np.flatnonzero(~np.asarray(read_column(data, "is_target"), dtype=bool))
        labels = np.asarray(read_column(data, "label"))
        target_label, score = labels.copy(), np.zeros(len(labels), dtype=np.float32)
        if len(aux):
            logits = np.asarray(self.predict(data.select(aux)).predictions, dtype=np.float64)
            log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            log_m = torch.log_softmax(
                self.accelerator.unwrap_model(self.model).standard_transition.detach().double().cpu(), dim=0
            ).numpy()
            log_q = log_p + log_m[labels[aux]]  # log M[y, j] + log p(j | x), up to a constant per row
            target_label[aux] = log_q.argmax(axis=1)
            given = log_q[np.arange(len(aux)), labels[aux]]
            others = np.where(np.eye(log_q.shape[1], dtype=bool)[labels[aux]], -np.inf, log_q)
            score[aux] = given - others.max(axis=1)  # > 0 iff the given label wins
        self.selector.clean = torch.as_tensor(target_label == labels)
        self.standard_judgement = {"target_standard_label": target_label, "score": score}

    def _verdict_columns(self) -> dict[str, np.ndarray]:
        """What a selection mode beyond the paper adds to selection.parquet: its margin, and its relabels."""
        columns = dict(self.standard_judgement)  # transition: target_standard_label and score
        if "score" in self.train_dataset.column_names:  # cleanlab: the margin of the given label
            columns["score"] = np.asarray(read_column(self.train_dataset, "score"))
        return columns

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
        return getattr(self, "_staging", None) or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` into `.saving/`, then fsync and rename into place, then rotate: a
        `checkpoint-N` folder is complete or absent. A SIGTERM meanwhile waits; a full disk is one line."""
        run_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging = run_dir / STAGING
        with signals_deferred():
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            self.accelerator.wait_for_everyone()
            self._staging = str(staging)  # the Trainer's own rotation then sees this checkpoint only: a no-op
            try:
                super()._save_checkpoint(model, trial)
            except Exception as exc:
                shutil.rmtree(staging, ignore_errors=True)
                full = disk_full(exc, run_dir)
                if full:
                    last = latest_complete_checkpoint(run_dir)[0]
                    raise UserInputError(
                        f"saving {run_dir / name} failed: {full}; the last complete checkpoint is "
                        f"{last or 'none'}: free some space and resume with --resume_from_checkpoint true"
                    ) from exc
                raise
            finally:
                self._staging = None
            self.accelerator.wait_for_everyone()  # every rank's rng_state is written
            if self.args.should_save:
                best = self.state.best_model_checkpoint
                if best and Path(best).parent == staging:
                    self.state.best_model_checkpoint = str(run_dir / Path(best).name)
                    self.state.save_to_json(str(staging / name / "trainer_state.json"))
                publish(staging / name, run_dir / name)
                shutil.rmtree(staging, ignore_errors=True)
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


def _say(line: str) -> None:
    """Print a line above the progress bar (not inside it)."""
    from tqdm.auto import tqdm

    tqdm.write(line)


def epoch_line(epoch: int, stats: dict[str, float], num_experts: int) -> str:
    """One readable line per selection epoch: clean ratio, selection precision/recall when known, mean tau."""
    parts = []
    if "selection/aux_clean_ratio" in stats:
        parts.append(f"auxiliary clean {100 * stats['selection/aux_clean_ratio']:.1f} %")
    for name in ("precision", "recall"):
        if f"selection/{name}" in stats:
            parts.append(f"{name} {100 * stats[f'selection/{name}']:.1f} %")
    taus = [stats[f"selection/mean_tau/expert_{i}"] for i in range(num_experts)]
    parts.append(f"mean tau {sum(taus) / len(taus):.3f}")
    return f"[selection] epoch {epoch + 1}: " + ", ".join(parts)


def stage_switch_line(selector: SampleSelector, id2label: dict[int, str], use_pairing: bool) -> str:
    """The end of the selection stage: what is frozen, kept / flagged auxiliary samples per class."""
    aux = ~selector.is_target
    counts = []
    for c in range(selector.num_classes):
        members = aux & (selector.labels == c)
        if members.any():
            kept = int(selector.clean[members].sum())
            counts.append(f"{id2label.get(c, c)} {kept}/{int(members.sum()) - kept}")
    then = "paired augmentation (PAM) mixes the flagged ones" if use_pairing else "the flagged ones leave the loss"
    return (
        f"[selection] partition frozen after {selector.selection_epochs} epochs; {then}. Auxiliary kept/flagged per "
        f"class: {', '.join(counts) or 'no auxiliary samples'}"
    )


class _QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bar, without the per-epoch selection dict (`epoch_line` says it in one line)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if not k.startswith(("selection/", "pairing/"))}
        if set(logs) - {"epoch", "total_flos"}:
            super().on_log(args, state, control, logs=logs, **kwargs)


class _QuietPrinterCallback(PrinterCallback):
    """`disable_tqdm`'s printer, likewise."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if not k.startswith(("selection/", "pairing/"))}
        if set(logs) - {"epoch", "total_flos"}:
            super().on_log(args, state, control, logs=logs, **kwargs)


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
