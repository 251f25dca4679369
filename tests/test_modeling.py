"""The SSPA model: MoE head (Eq. 1-2), ARM batch independence, save/load, Auto classes, pipeline, weight loading."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import TINY_BACKBONE as TINY
from PIL import Image
from transformers import AutoConfig, AutoModelForImageClassification, ResNetConfig, ResNetModel

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.errors import UserInputError
from sspa_hf.model.weights import load_backbone_weights, load_hub_backbone

TINY_ARM = {**TINY, "hidden_sizes": [8, 16, 32, 256]}


def tiny_model(backbone: str = "resnet", k: int = 3, image_size: int = 48) -> SSPAForImageClassification:
    torch.manual_seed(0)
    config = SSPAConfig(
        backbone=backbone,
        backbone_config=TINY_ARM if backbone == "arm" else TINY,
        num_experts=k,
        image_size=image_size,
    )
    return SSPAForImageClassification(config)


def test_moe_head_follows_eq_1_and_2_and_logits_are_log_mean_of_experts():
    model = tiny_model(k=3).eval()
    x = torch.randn(5, 3, 48, 48)
    with torch.no_grad():
        out = model(x)
        f = model.extract_features(x)
        w = torch.softmax(model.moe.gate(f), dim=-1)
        weights = model.moe.experts.weight.view(3, 7, -1)
        biases = model.moe.experts.bias.view(3, 7)
        p = torch.stack([torch.softmax((f @ weights[i].T + biases[i]) * w[:, i : i + 1], -1) for i in range(3)], 1)
    torch.testing.assert_close(out.gate, w)
    torch.testing.assert_close(out.expert_probs, p)
    torch.testing.assert_close(out.logits.softmax(-1), p.mean(1))
    assert out.expert_probs.shape == (5, 3, 7) and out.gate.shape == (5, 3)


def test_loss_is_mean_over_experts_of_cross_entropy():
    model = tiny_model(k=2).eval()
    x, y = torch.randn(4, 3, 48, 48), torch.tensor([0, 3, 6, 2])
    out = model(x, labels=y)
    expected = torch.stack([torch.nn.functional.nll_loss(out.expert_probs[:, i].log(), y) for i in range(2)]).mean()
    torch.testing.assert_close(out.loss, expected)


def test_single_expert_is_a_plain_linear_classifier():
    model = tiny_model(k=1).eval()
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        out = model(x)
        f = model.extract_features(x)
        linear = model.moe.experts(f)
    assert torch.all(out.gate == 1)
    torch.testing.assert_close(out.logits.softmax(-1), linear.softmax(-1))


@pytest.mark.parametrize("image_size,side", [(224, 11), (112, 5), (48, 1)])
def test_arm_feature_size_follows_input_size(image_size, side):
    config = SSPAConfig(backbone="arm", image_size=image_size)  # ResNet-18 layout
    assert config.feature_dim == side * side
    if image_size <= 112:
        model = SSPAForImageClassification(config).eval()
        with torch.no_grad():
            assert model.extract_features(torch.randn(2, 3, image_size, image_size)).shape == (2, side * side)


def test_arm_eval_prediction_does_not_depend_on_the_batch():
    model = tiny_model("arm", image_size=64)
    model.train()
    for _ in range(3):  # fill the running batch mean
        model(torch.randn(8, 3, 64, 64))
    assert model.arm.running_batch_mean.abs().sum() > 0
    model.eval()
    face, others = torch.randn(1, 3, 64, 64), torch.randn(7, 3, 64, 64) * 3 + 1
    with torch.no_grad():
        alone = model(face).logits.softmax(-1)
        in_batch = model(torch.cat([others[:3], face, others[3:]])).logits.softmax(-1)[3:4]
    torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["resnet", "arm"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, backbone):
    model = tiny_model(backbone, image_size=64)
    model.train()
    model(torch.randn(6, 3, 64, 64))  # move BatchNorm and ARM running statistics off their initial values
    model.eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "sspa"
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_sspa.SSPAForImageClassification"
    assert config["id2label"]["0"] == "anger" and config["id2label"]["6"] == "surprise"
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SSPAForImageClassification)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SSPAConfig)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


@pytest.mark.slow
def test_folder_loads_in_a_fresh_process_through_auto_classes_and_pipeline(tmp_path):
    model = tiny_model("arm", image_size=64).eval()
    model.save_pretrained(tmp_path / "model")
    processor = make_image_processor(64)
    processor.save_pretrained(tmp_path / "model")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 60), dtype=np.uint8))  # grayscale
    image.save(tmp_path / "face.png")
    with torch.no_grad():
        pixels = processor(image, return_tensors="pt")["pixel_values"]
        expected = model(pixels).logits.softmax(-1)[0]
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import AutoModelForImageClassification, pipeline
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert "sspa_hf" not in sys.modules, "the package must not be needed"
        clf = pipeline("image-classification", model={str(tmp_path / "model")!r}, trust_remote_code=True)
        print(json.dumps(clf({str(tmp_path / "face.png")!r}, top_k=7)))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = {row["label"]: row["score"] for row in json.loads(result.stdout.strip().splitlines()[-1])}
    assert set(scores) == {"anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"}
    for index, name in model.config.id2label.items():
        assert scores[name] == pytest.approx(float(expected[index]), abs=1e-5)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"backbone": "vit"}, "'vit'"),
        ({"num_experts": 0}, "num_experts"),
        ({"backbone": "arm", "backbone_config": TINY}, "hidden_sizes[-1]=64"),
        ({"backbone": "arm", "image_size": 32}, "image_size=32"),
    ],
)
def test_bad_config_fails_with_a_message_naming_it(kwargs, needle):
    with pytest.raises(ValueError, match=r".*") as info:
        SSPAConfig(**kwargs)
    assert needle in str(info.value)


def _torchvision_resnet18_state_dict(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's resnet18 key names and shapes (random values)."""

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    def bn(prefix, channels):
        return {
            f"{prefix}.weight": rand(channels),
            f"{prefix}.bias": rand(channels),
            f"{prefix}.running_mean": rand(channels),
            f"{prefix}.running_var": rand(channels).abs() + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(7),
        }

    state = {"conv1.weight": rand(64, 3, 7, 7), **bn("bn1", 64)}
    widths = [64, 64, 128, 256, 512]
    for stage in range(1, 5):
        for block in range(2):
            cin = widths[stage - 1] if block == 0 else widths[stage]
            cout = widths[stage]
            prefix = f"layer{stage}.{block}"
            state[f"{prefix}.conv1.weight"] = rand(cout, cin, 3, 3)
            state.update(bn(f"{prefix}.bn1", cout))
            state[f"{prefix}.conv2.weight"] = rand(cout, cout, 3, 3)
            state.update(bn(f"{prefix}.bn2", cout))
            if block == 0 and stage > 1:
                state[f"{prefix}.downsample.0.weight"] = rand(cout, cin, 1, 1)
                state.update(bn(f"{prefix}.downsample.1", cout))
    state["fc.weight"], state["fc.bias"] = rand(1000, 512), rand(1000)
    return state


@pytest.mark.parametrize("shape", ["state_dict", "module_prefix", "bare"])
def test_torchvision_weights_load_in_all_three_shapes(tmp_path, shape):
    state = _torchvision_resnet18_state_dict(torch.Generator().manual_seed(1))
    if shape == "state_dict":
        saved = {"state_dict": state, "epoch": 40}
    elif shape == "module_prefix":
        saved = {f"module.{key}": value for key, value in state.items()}
    else:
        saved = state
    torch.save(saved, tmp_path / "msceleb.pth")
    model = SSPAForImageClassification(SSPAConfig(backbone="resnet", image_size=48))
    report = load_backbone_weights(model, tmp_path / "msceleb.pth")
    assert sorted(report.dropped_head) == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == len(model.resnet.state_dict())
    stages = model.resnet.encoder.stages
    torch.testing.assert_close(model.resnet.embedder.embedder.convolution.weight, state["conv1.weight"])
    torch.testing.assert_close(model.resnet.embedder.embedder.normalization.running_var, state["bn1.running_var"])
    torch.testing.assert_close(stages[0].layers[1].layer[1].convolution.weight, state["layer1.1.conv2.weight"])
    torch.testing.assert_close(stages[2].layers[0].layer[0].normalization.bias, state["layer3.0.bn1.bias"])
    torch.testing.assert_close(stages[3].layers[0].shortcut.convolution.weight, state["layer4.0.downsample.0.weight"])
    torch.testing.assert_close(
        stages[1].layers[0].shortcut.normalization.running_mean, state["layer2.0.downsample.1.running_mean"]
    )


def test_converter_rejects_a_state_dict_of_another_layout(tmp_path):
    state = _torchvision_resnet18_state_dict(torch.Generator().manual_seed(2))
    state["layer2.0.conv1.weight"] = torch.randn(128, 64, 5, 5)  # wrong kernel
    state["layer5.0.conv1.weight"] = torch.randn(8, 8, 3, 3)  # no such stage
    del state["layer4.1.bn2.weight"]
    torch.save(state, tmp_path / "bad.pth")
    model = SSPAForImageClassification(SSPAConfig(image_size=48))
    before = model.resnet.encoder.stages[1].layers[0].layer[0].convolution.weight.clone()
    with pytest.raises(UserInputError) as info:
        load_backbone_weights(model, tmp_path / "bad.pth")
    message = str(info.value)
    assert "bad.pth" in message
    assert "layer5.0.conv1.weight" in message  # unexpected
    assert "encoder.stages.3.layers.1.layer.1.normalization.weight" in message  # missing
    assert "layer2.0.conv1.weight (128, 64, 5, 5)" in message  # shape mismatch
    torch.testing.assert_close(model.resnet.encoder.stages[1].layers[0].layer[0].convolution.weight, before)


class _NotWeights:
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weight_file_that_is_not_a_state_dict_fails_naming_it(tmp_path):
    with open(tmp_path / "object.pth", "wb") as handle:
        pickle.dump(_NotWeights(), handle)
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    (tmp_path / "text.safetensors").write_text("hello")
    model = tiny_model()
    for name in ["object.pth", "list.pth", "text.safetensors", "missing.pth"]:
        with pytest.raises(UserInputError, match=name.replace(".", r"\.")):
            load_backbone_weights(model, tmp_path / name)


def test_hub_backbone_loads_through_from_pretrained_offline(tmp_path):
    backbone_config = ResNetConfig(**TINY)
    torch.manual_seed(3)
    ResNetModel(backbone_config).save_pretrained(tmp_path / "resnet")
    model = SSPAForImageClassification(SSPAConfig(backbone_config=backbone_config.to_dict(), image_size=48))
    load_hub_backbone(model, str(tmp_path / "resnet"))
    source = ResNetModel.from_pretrained(tmp_path / "resnet")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.resnet.state_dict()[key], value)


class _SameFace(torch.utils.data.Dataset):
    """Eight copies of one face: every micro-batch has the same BatchNorm statistics and the same mean loss."""

    def __init__(self) -> None:
        self.pixels = torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(4))

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixels, "labels": 5}


class _KwargsForward(SSPAForImageClassification):
    """What a `forward(**kwargs)` model looks like to the Trainer when `accepts_loss_kwargs` is not set to False."""

    accepts_loss_kwargs = True

    def forward(self, pixel_values, labels=None, **kwargs):
        return super().forward(pixel_values, labels=labels)


def _weights_after_one_step(tmp_path, batch_size: int, accumulation: int, accepts_loss_kwargs: bool) -> torch.Tensor:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model_class = _KwargsForward if accepts_loss_kwargs else SSPAForImageClassification
    model = model_class(tiny_model(k=3).config)
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run{batch_size}{accumulation}{accepts_loss_kwargs}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=_SameFace()).train()
    return model.moe.experts.weight.detach().clone()


def test_gradient_accumulation_scales_the_loss_like_one_big_batch(tmp_path):
    one = _weights_after_one_step(tmp_path, 8, 1, accepts_loss_kwargs=False)
    two = _weights_after_one_step(tmp_path, 4, 2, accepts_loss_kwargs=False)
    torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-6)
    # Control: declaring loss kwargs (as a **kwargs forward would) leaves the loss unscaled, a doubled step.
    wrong = _weights_after_one_step(tmp_path, 4, 2, accepts_loss_kwargs=True)
    assert not torch.allclose(wrong, one, rtol=1e-5, atol=1e-6)


ARM_SYNC_SCRIPT = """
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sspa_hf.model.modeling_sspa import ARMFeature


def make_arm():
    torch.manual_seed(0)
    arm = ARMFeature(512, side=3, momentum=0.1).train()
    arm.norm.eval()  # BatchNorm on running statistics: only ARM's batch mean couples the samples
    return arm


def rank_run(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    x = torch.randn(6, 512, 3, 3, generator=torch.Generator().manual_seed(1))
    arm = make_arm()
    arm.sync_across_processes = True
    y = arm(x[:2] if rank == 0 else x[2:])  # uneven shares: 2 and 4 faces
    (y**2).sum().backward()
    grads = {name: p.grad for name, p in arm.named_parameters()}
    torch.save({"y": y.detach(), "grads": grads, "running": arm.running_batch_mean}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_run, args=(int(sys.argv[2]), sys.argv[1]), nprocs=2)
    x = torch.randn(6, 512, 3, 3, generator=torch.Generator().manual_seed(1))
    arm = make_arm()
    y = arm(x)
    (y**2).sum().backward()
    grads = {name: p.grad for name, p in arm.named_parameters()}
    torch.save({"y": y.detach(), "grads": grads, "running": arm.running_batch_mean}, f"{sys.argv[1]}/single.pt")
"""


@pytest.mark.slow
def test_arm_batch_mean_across_two_processes_equals_the_single_process_batch(tmp_path):
    script = tmp_path / "arm_sync.py"
    script.write_text(ARM_SYNC_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    port = str(29000 + os.getpid() % 500)
    result = subprocess.run([sys.executable, str(script), str(tmp_path), port], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), single["y"])
    for rank in ranks:
        torch.testing.assert_close(rank["running"], single["running"])
    for name, grad in single["grads"].items():  # DDP sums (then averages) the per-process gradients
        torch.testing.assert_close(ranks[0]["grads"][name] + ranks[1]["grads"][name], grad, rtol=1e-4, atol=1e-5)
