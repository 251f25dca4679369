"""Ours: `transition`'s M, plus learning from every face's image: a teacher's target, a student on a strong view.

`transition` reads each auxiliary label through the learnt M; this mode also asks the image. The teacher (the
student itself, without gradient) gives each auxiliary face a target under the target's standard from its weak
view, the posterior q(j) ~ p_teacher(j | weak) M[y, j]; distribution alignment
scales the targets towards the target faces' class prior (ReMixMatch), so head classes' confident targets do not
starve the tail; the student learns the target on a strongly augmented view of the same face, either the argmax
where the target is confident (FixMatch) or the whole distribution (soft targets, as Mean Teacher). Target faces
learn their own label on a strong view too (`consistency_on_target`; docs/method.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.augment import STRONG
from ..errors import UserInputError
from ..run.folder import CONSISTENCY_STATE
from .base import USE_SELECTION, Batch, Knob, SelectionMode, refuse_without_selection
from .transition import Transition
from .transition_pam import class_log_prior

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

TARGETS = ("hard", "soft", "labels")


class Consistency:
    """A part a mode holds: teacher targets in the target's standard and the student's loss on the strong view."""

    knobs = (
        Knob("consistency_weight", "consistency weight, targets, threshold", lambda a: _summary(a)),
        Knob("consistency_targets", None),
        Knob("consistency_threshold", None),
        Knob("distribution_alignment"),
        Knob("consistency_on_target"),
    )
    views = {"strong": STRONG}

    def __init__(self, mode: SelectionMode, transition: Transition) -> None:
        self.mode, self.trainer, self.args, self.transition = mode, mode.trainer, mode.args, transition
        selector, classes = mode.selector, mode.num_classes
        log_prior = class_log_prior(selector.labels.numpy()[selector.is_target.numpy()], classes)
        self.prior = torch.as_tensor(np.exp(log_prior), dtype=torch.float32)  # pi: the target faces' classes
        self.mean_target = torch.full((classes,), 1.0 / classes)  # running mean of the unaligned targets

    # ----- targets -----
    def teacher_targets(self, log_p: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, C) target-standard targets: auxiliary faces q ~ p(j) M[y, j], aligned; target faces one-hot."""
        labels, is_target = batch["labels"], batch["is_target"].to(log_p.device)
        log_m = torch.log_softmax(self._unwrapped().standard_transition.detach().float(), dim=0)  # columns P(y | j)
        q = torch.softmax(log_p.float() + log_m[labels], dim=1)
        if self.args.distribution_alignment:
            q = self._align(q, ~is_target)
        one_hot = torch.nn.functional.one_hot(labels, q.shape[1]).to(q.dtype)
        return torch.where(is_target[:, None], one_hot, q)

    def _align(self, q: torch.Tensor, auxiliary: torch.Tensor) -> torch.Tensor:
        """q pi / mean(q), renormalised: the targets' marginal moved towards the target prior (ReMixMatch)."""
        count = auxiliary.sum().float().view(1)
        total = torch.cat([q[auxiliary].sum(0), count])
        if self.trainer.accelerator.num_processes > 1:  # one estimate on every process
            total = self.trainer.accelerator.reduce(total, reduction="sum")
        if float(total[-1]) > 0:
            batch_mean = (total[:-1] / total[-1]).cpu()
            self.mean_target = 0.99 * self.mean_target + 0.01 * batch_mean  # about the last 100 batches
        scale = (self.prior / self.mean_target).to(q.device)
        return torch.nn.functional.normalize(q * scale, p=1, dim=1)

    # ----- loss -----
    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        """Per sample: `transition`'s loss on the weak view + weight x the consistency loss on the strong view."""
        weak, labels = batch["pixel_values"], batch["labels"]
        learns = ~batch["is_target"].to(labels.device)
        if self.args.consistency_on_target:
            learns = torch.ones_like(learns)
        rows = torch.nonzero(learns).flatten()
        strong = batch["strong_pixel_values"][rows]
        outputs = model(pixel_values=torch.cat([weak, strong]))  # one forward: BatchNorm sees both views
        size = len(weak)
        weak_out = _rows(outputs, slice(0, size))
        supervised = torch.where(
            batch["is_target"].to(labels.device),
            self.mode.cross_entropy(weak_out, labels),
            self.transition.nll(weak_out, labels),
        )
        per_face = self._strong_loss(outputs, size, rows, weak_out, batch)
        consistency = torch.zeros_like(supervised).index_add(0, rows, per_face)
        return supervised + self.args.consistency_weight * consistency, weak_out

    def _strong_loss(self, outputs: Any, size: int, rows: torch.Tensor, weak_out: Any, batch: Batch) -> torch.Tensor:
        """(R,) the loss of the strong views (rows `size`: of the forward pass) for the faces `rows` of the batch."""
        labels = batch["labels"]
        if self.args.consistency_targets == "labels":  # the ablation: the given labels on the strong view, no teacher
            strong_out, given = _rows(outputs, slice(size, None)), labels[rows]
            return torch.where(
                batch["is_target"].to(labels.device)[rows],
                self.mode.cross_entropy(strong_out, given),
                self.transition.nll(strong_out, given),
            )
        teacher = weak_out.logits.detach().float().log_softmax(dim=1)  # the student itself, without gradient
        target = self.teacher_targets(teacher, batch)[rows]
        log_p = outputs.expert_logits[size:].float().log_softmax(dim=-1)  # (R, k, C)
        if self.args.consistency_targets == "hard":
            confidence, hard = target.max(dim=1)
            mask = (confidence >= self.args.consistency_threshold).to(log_p.dtype)
            return -log_p.gather(2, hard.view(-1, 1, 1).expand(-1, log_p.shape[1], 1)).squeeze(2).mean(1) * mask
        return -(target[:, None, :] * log_p).sum(-1).mean(1)

    def _unwrapped(self) -> torch.nn.Module:
        return self.trainer.accelerator.unwrap_model(self.trainer.model)

    # ----- checkpoints -----
    def save(self, directory: str) -> None:
        from safetensors.torch import save_file

        save_file({"mean_target": self.mean_target.contiguous()}, str(Path(directory) / CONSISTENCY_STATE))

    def load(self, directory: str) -> None:
        path = Path(directory) / CONSISTENCY_STATE
        if not path.is_file():
            raise UserInputError(f"{path} not found: a {self.mode.name} checkpoint keeps its targets' running mean")
        from safetensors.torch import load_file

        self.mean_target = load_file(str(path))["mean_target"]


def _rows(outputs: Any, index: slice) -> Any:
    """The model outputs of some rows of a forward pass (its weak views, or its strong ones)."""
    fields = {k: v[index] if isinstance(v, torch.Tensor) and v.dim() > 0 else v for k, v in outputs.items()}
    return type(outputs)(**fields)


def _summary(args: TrainingArguments) -> str:
    threshold = f", {args.consistency_threshold}" if args.consistency_targets == "hard" else ""
    return f"{args.consistency_weight}, {args.consistency_targets}{threshold}"


class ConsistencyMode(SelectionMode):
    name = "consistency"
    help = (
        "Ours: transition, plus each face's image: a target-standard target (auxiliary faces: the weak view's "
        "p(j) M[y, j], aligned to the target prior; target faces: their label) learnt on a strong view."
    )
    card = (
        "**This model was trained beyond the paper, in selection mode `consistency`:** as in `transition`, the "
        "model learnt a matrix M[y, j] = P(auxiliary label y | target class j) and read every auxiliary label "
        "through it; in addition each auxiliary face was given a target under the target's standard, its "
        "teacher's posterior p(j | weak view) M[y, j] aligned to the target faces' class prior, and the model "
        "learnt it on a strongly augmented view of the face (with `consistency_on_target`, the default, each "
        'target face learnt its own label on one too). "Kept" below means that an auxiliary label is the '
        "most probable target class of its face under M[y, j] p(j | x)."
    )
    model_options = Transition.model_options
    knobs = (USE_SELECTION, *Consistency.knobs)
    verdict = Transition.verdict
    no_decay = Transition.no_decay
    views = Consistency.views

    @classmethod
    def check(cls, args: TrainingArguments) -> None:
        refuse_without_selection(cls, args)
        if args.consistency_targets not in TARGETS:
            raise ValueError(f"consistency_targets must be one of {TARGETS}, got {args.consistency_targets!r}")

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.transition = Transition(self)
        self.consistency = Consistency(self, self.transition)
        self.selector.freeze(np.ones(len(self.selector), dtype=bool))  # nothing is dropped

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.consistency.loss(model, batch)

    def finish(self) -> None:
        self.transition.adopt_verdict()

    def verdict_columns(self) -> dict[str, np.ndarray]:
        return dict(self.transition.columns)

    def save(self, directory: str) -> None:
        super().save(directory)
        self.consistency.save(directory)

    def load(self, directory: str) -> None:
        super().load(directory)
        self.consistency.load(directory)
