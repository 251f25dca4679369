"""Run by test_trainer.py under `accelerate launch` with two CPU processes: train, then dump each rank's state.

`distributed_run.py OUT [--sync | --transition | --consistency] [--selection-stage]`: with --sync, sync_batch_stats
is on and every PA-stage allocation is recorded (this process's clean histogram, noisy count and the share of Eq. 8
it used); with
--transition, the run is selection_mode transition and the learnt matrix and the verdict are dumped too; with
--consistency, selection_mode consistency, and the weights and the running mean of the targets are dumped. With
--selection-stage, 117 samples (each epoch 3 global batches of 32 and one of 21), a global batch of 32 however many
processes share it, only the selection stage (3 epochs), and the weights and every training batch's step,
sample_index and per-sample pixel sums are dumped as well: run as plain `python` (one process) it is the reference
the two processes must reproduce.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.data import build_joint, load_source
from sspa_hf.training.arguments import SSPATrainingArguments
from sspa_hf.training.trainer import SSPATrainer

TINY = {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8}


def main(
    out: Path, sync: bool = False, transition: bool = False, selection_stage: bool = False, consistency: bool = False
) -> None:
    sizes = (64, 53) if selection_stage else (51, 50)
    target = load_source(f"synthetic:?role=target&n={sizes[0]}")
    auxiliary = load_source(f"synthetic:?role=auxiliary&n={sizes[1]}")
    train_set = build_joint(target["train"], auxiliary["train"], seed=0)
    torch.manual_seed(0)
    extra = {"num_experts": 1, "standard_transition": True} if transition or consistency else {}
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48, **extra))
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    args = SSPATrainingArguments(
        output_dir=str(out / "run"),
        per_device_train_batch_size=32 // processes if selection_stage else 16,
        num_train_epochs=3 if selection_stage else 4,
        selection_epochs=3 if selection_stage else 2,
        use_pairing=not selection_stage,  # the whole run is the selection stage
        learning_rate=0.05,
        optim="sgd",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=1,
        sync_batch_stats=sync,
        selection_mode="consistency" if consistency else "transition" if transition else "paper",
    )
    trainer = SSPATrainer(
        model=model, args=args, train_dataset=train_set, processing_class=make_image_processor(48, [0.5] * 3, [0.5] * 3)
    )
    allocations: list[list[int]] = []
    if sync:
        global_allocation = trainer.mode.partition._global_allocation

        def recorded(labels: torch.Tensor, clean: torch.Tensor) -> np.ndarray | None:
            s = global_allocation(labels, clean)
            h = np.bincount(labels[clean].numpy(), minlength=7)
            allocations.append([*h.tolist(), int((~clean).sum()), *s.tolist()])
            return s

        trainer.mode.partition._global_allocation = recorded
    seen: list[torch.Tensor] = []
    if selection_stage:
        compute_loss = trainer.compute_loss

        def recording(model, inputs, *args, **kwargs):
            if model.training:
                pixels = inputs["pixel_values"].double().sum(dim=(1, 2, 3))
                step = torch.full_like(pixels, trainer.state.global_step)
                seen.append(torch.stack([step, inputs["sample_index"].double(), pixels], dim=1))
            return compute_loss(model, inputs, *args, **kwargs)

        trainer.compute_loss = recording
    trainer.train()
    state = {name: value.clone() for name, value in trainer.selector.state_dict().items()}
    state["world_size"] = torch.tensor(trainer.accelerator.num_processes)
    state["allocations"] = torch.tensor(allocations, dtype=torch.long).view(-1, 15)
    if transition:
        state["standard_transition"] = trainer.accelerator.unwrap_model(trainer.model).standard_transition.detach()
        state.update({k: torch.as_tensor(v) for k, v in trainer.mode.transition.columns.items()})
        state["labels"] = torch.as_tensor(np.asarray(train_set["label"]))
    if consistency:
        state["mean_target"] = trainer.mode.consistency.mean_target.clone()
        model = trainer.accelerator.unwrap_model(trainer.model)
        state.update({f"weights/{k}": v.detach().clone() for k, v in model.state_dict().items()})
    if selection_stage:
        state["seen"] = torch.cat(seen)  # (rows, [step, sample_index, pixel sum]), in the order trained
        model = trainer.accelerator.unwrap_model(trainer.model)
        state.update({f"weights/{k}": v.detach().clone() for k, v in model.state_dict().items()})
    torch.save(state, out / f"rank{trainer.args.process_index}.pt")
    trainer.accelerator.end_training()  # gloo threads left to interpreter exit can abort it


if __name__ == "__main__":
    flags = sys.argv[2:]
    main(
        Path(sys.argv[1]),
        "--sync" in flags,
        "--transition" in flags,
        "--selection-stage" in flags,
        consistency="--consistency" in flags,
    )
