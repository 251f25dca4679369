"""Issue 19 diagnostic: does 16 + 16 on two processes (sync_batch_stats) train step by step like 32 on one?

`diag_transition_ddp.py OUT [--transition] [--experts K] [--steps N] [--jitter EPS]` trains tests/distributed_run.py's
--selection-stage set-up (128 samples, global batch 32, seed 1, sgd lr 0.05) for N optimizer steps and saves, per
rank and per step, the loss of each micro-batch, every gradient the optimiser is about to apply (after DDP's
all-reduce), and the parameters and buffers after the step, to OUT/rank{r}.pt. Run it once with `python` and once
under `accelerate launch --config_file recipes/accelerate_configs/cpu_2proc.yaml`, then `--compare OUT1 OUT2`
prints per step the largest difference of the loss, the gradients, the parameters and the buffers (a second run
on one process, e.g. with --jitter, compares too). `--flips OUT1 OUT2 S [--transition]` forwards step S's batch
(OUT1's) through both runs' weights after step S-1 on one process and counts each ReLU's pre-activation sign flips.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.data import build_joint, load_source
from sspa_hf.model.modeling_sspa import expert_cross_entropy, transition_nll
from sspa_hf.training.arguments import SSPATrainingArguments
from sspa_hf.training.trainer import SSPATrainer

TINY = {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8}


def _strip(name: str) -> str:
    return name.removeprefix("module.")


class _Recorder(TrainerCallback):
    """Each step: the gradients about to be applied, then the parameters and buffers after the update."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append(
            {f"grad/{_strip(n)}": p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps[-1].update({f"state/{_strip(n)}": v.detach().clone() for n, v in model.state_dict().items()})


def run(out: Path, transition: bool, experts: int | None, steps: int, jitter: float = 0.0) -> None:
    target = load_source("synthetic:?role=target&n=64")
    auxiliary = load_source("synthetic:?role=auxiliary&n=64")
    train_set = build_joint(target["train"], auxiliary["train"], seed=0)
    torch.manual_seed(0)
    extra = {"num_experts": 1, "standard_transition": True} if transition else {}
    if experts is not None:
        extra["num_experts"] = experts
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48, **extra))
    if jitter:  # a control: the same run from weights moved by a float-rounding-sized relative amount
        noise = torch.Generator().manual_seed(int(jitter * 1e12) % 2**31)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + jitter * torch.randn(p.shape, generator=noise))
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    args = SSPATrainingArguments(
        output_dir=str(out / "run"),
        per_device_train_batch_size=32 // processes,
        num_train_epochs=3,
        max_steps=steps,
        selection_epochs=3,
        learning_rate=0.05,
        optim="sgd",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=1,
        sync_batch_stats=True,
        selection_mode="transition" if transition else "paper",
    )
    trainer = SSPATrainer(
        model=model, args=args, train_dataset=train_set, processing_class=make_image_processor(48, [0.5] * 3, [0.5] * 3)
    )
    recorder = _Recorder()
    trainer.add_callback(recorder)
    losses: list[float] = []
    pixels: list[dict[str, torch.Tensor]] = []  # each micro-batch's inputs
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *a, **kw):
        loss = compute_loss(model, inputs, *a, **kw)
        if model.training:
            losses.append(float((loss[0] if isinstance(loss, tuple) else loss).detach()))
            pixels.append({k: inputs[k].clone() for k in ("pixel_values", "labels", "is_target")})
        return loss

    trainer.compute_loss = recording
    trainer.train()
    result = {"world_size": processes, "losses": losses, "steps": recorder.steps, "pixels": pixels}
    result["decay"] = sorted(_strip(n) for n in trainer.get_decay_parameter_names(trainer.model))
    result["groups"] = [
        {"weight_decay": g["weight_decay"], "lr": g["lr"], "size": len(g["params"])}
        for g in trainer.optimizer.param_groups
    ]
    torch.save(result, out / f"rank{trainer.args.process_index}.pt")
    trainer.accelerator.end_training()  # gloo threads left to interpreter exit can abort it


def compare(one_dir: Path, two_dir: Path) -> None:
    one = torch.load(one_dir / "rank0.pt", weights_only=False)
    two = [torch.load(path, weights_only=False) for path in sorted(two_dir.glob("rank*.pt"))]  # 1 or 2 ranks
    print("decay names equal:", one["decay"] == two[0]["decay"], "groups", one["groups"], two[0]["groups"])
    print("step  loss(1)-mean(loss(2))  max|grad|  worst grad  max|param|  worst param  max|buffer|  worst buffer")
    for step, (a, b) in enumerate(zip(one["steps"], two[0]["steps"], strict=True)):
        loss_gap = one["losses"][step] - sum(t["losses"][step] for t in two) / len(two)
        row = [f"{step + 1:>4}", f"{loss_gap:+.2e}"]
        for kind in ("grad", "param", "buffer"):
            gaps = {}
            for name, value in a.items():
                if not name.startswith("grad/" if kind == "grad" else "state/"):
                    continue
                is_param = "running" not in name and "num_batches" not in name
                if kind != "grad" and is_param != (kind == "param"):
                    continue
                gaps[name] = float((value.double() - b[name].double()).abs().max())
            worst = max(gaps, key=gaps.get)
            row += [f"{gaps[worst]:.2e}", worst.split("/", 1)[1]]
        print("  ".join(row))


def flips(one_dir: Path, two_dir: Path, step: int, transition: bool) -> None:
    """Which ReLU inputs change sign between the two states, and the gradient gap one process then computes."""
    one = torch.load(one_dir / "rank0.pt", weights_only=False)
    two = torch.load(two_dir / "rank0.pt", weights_only=False)
    batch = one["pixels"][step - 1]
    extra = {"num_experts": 1, "standard_transition": True} if transition else {}

    def forward(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48, **extra))
        model.load_state_dict({k.removeprefix("state/"): v for k, v in state.items() if k.startswith("state/")})
        model.train()
        seen: dict[str, torch.Tensor] = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.ReLU):
                module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, i[0].detach()))
        out = model(pixel_values=batch["pixel_values"])
        per_sample = expert_cross_entropy(out.expert_logits, batch["labels"])
        if transition:
            per_sample = torch.where(
                batch["is_target"], per_sample, transition_nll(out.auxiliary_log_probs, batch["labels"])
            )
        per_sample.mean().backward()
        return seen, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    a, grad_a = forward(one["steps"][step - 2])
    b, grad_b = forward(two["steps"][step - 2])
    for name, x in a.items():
        flipped = (x > 0) != (b[name] > 0)
        near = float(x[flipped].abs().max()) if flipped.any() else 0.0
        gap = float((x - b[name]).abs().max())
        print(f"{name:52s} gap {gap:.1e}  flips {int(flipped.sum())}/{x.numel()}  |x| {near:.1e}")
    worst = max(grad_a, key=lambda n: float((grad_a[n] - grad_b[n]).abs().max()))
    print(f"largest gradient gap on one process: {worst} {float((grad_a[worst] - grad_b[worst]).abs().max()):.2e}")


if __name__ == "__main__":
    if sys.argv[1] == "--flips":
        flips(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), "--transition" in sys.argv)
    elif sys.argv[1] == "--compare":
        compare(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        flags = sys.argv[2:]
        experts = int(flags[flags.index("--experts") + 1]) if "--experts" in flags else None
        steps = int(flags[flags.index("--steps") + 1]) if "--steps" in flags else 12
        jitter = float(flags[flags.index("--jitter") + 1]) if "--jitter" in flags else 0.0
        run(Path(sys.argv[1]), "--transition" in flags, experts, steps, jitter)
