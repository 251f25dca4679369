"""recipe.yaml: the resolved arguments of a run, written by sspa-train, parse back to the same arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import TINY_FLAGS

from sspa_hf.commands.train import main
from sspa_hf.commands.train_parser import parse_arguments, resolved_recipe, write_recipe
from sspa_hf.run.folder import RECIPE

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
QUICKSTART = RECIPES / "quickstart.yaml"


def _round_trip(argv: list[str], path: Path) -> tuple[tuple, tuple, str]:
    parsed = parse_arguments(argv)
    write_recipe(path, *parsed)
    return parsed, parse_arguments([str(path)]), path.read_text()


def test_recipe_with_extends_and_flags_parses_back_to_the_same_arguments(tmp_path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {QUICKSTART}\nnum_experts: 2\nlearning_rate: 0.02\n")
    flags = ["--num_train_epochs", "14", "--report_to", "tensorboard", "--lr_scheduler_kwargs", '{"num_cycles": 2}']
    parsed, again, text = _round_trip([str(child), *flags, "--output_dir", str(tmp_path / "run")], tmp_path / RECIPE)
    assert again == parsed  # ModelArguments, DataArguments, SSPATrainingArguments each equal
    recipe = yaml.safe_load(text)
    assert "extends" not in recipe and recipe["num_experts"] == 2 and recipe["num_train_epochs"] == 14
    assert recipe["learning_rate"] == 0.02 and recipe["backbone_depths"] == [1, 1, 1, 1]  # from the extended one
    # enums and lists as the user writes them
    assert recipe["lr_scheduler_type"] == "cosine" and recipe["optim"] == "sgd" and recipe["report_to"] == "tensorboard"


def test_only_what_differs_and_no_derived_value_is_written(tmp_path) -> None:
    """use_cpu true makes __post_init__ turn dataloader_pin_memory off: written, it would stick when a flag
    turns use_cpu off again."""
    parsed, _, text = _round_trip([str(QUICKSTART)], tmp_path / RECIPE)
    recipe = yaml.safe_load(text)
    assert parsed[2].dataloader_pin_memory is False and "dataloader_pin_memory" not in recipe
    assert recipe["crop_padding"] == 0.0 and "ema_momentum" not in recipe  # 0.95 is the default
    overridden = parse_arguments([str(tmp_path / RECIPE), "--use_cpu", "false"])[2]
    assert overridden.dataloader_pin_memory is True


def test_the_hub_token_is_never_written(tmp_path) -> None:
    flags = [str(QUICKSTART), "--push_to_hub", "true", "--hub_model_id", "me/x", "--hub_token", "hf_not_a_secret"]
    _, again, text = _round_trip(flags, tmp_path / RECIPE)
    assert "hf_not_a_secret" not in text and "hub_token" not in text
    assert again[2].hub_model_id == "me/x" and again[2].push_to_hub is True


def test_sections_hold_their_own_dataclass_fields() -> None:
    model, data, training = resolved_recipe(*parse_arguments([str(QUICKSTART)]))
    assert "backbone_depths" in model and "target_dataset" in data and "learning_rate" in training
    assert not (set(model) & set(data)) and not (set(data) & set(training))


# Every sixth shipped recipe (the paper ones, ablations, baselines, beyond): all of them take half a minute.
SAMPLED = sorted(p for p in RECIPES.rglob("*.yaml") if "accelerate_configs" not in p.parts)[::6]


@pytest.mark.parametrize("recipe", SAMPLED, ids=lambda p: p.stem)
def test_shipped_recipes_round_trip(recipe: Path, tmp_path) -> None:
    parsed, again, _ = _round_trip([str(recipe)], tmp_path / RECIPE)
    assert again == parsed


def test_sspa_train_writes_recipe_yaml_that_reruns_the_same_arguments(tmp_path) -> None:
    out = tmp_path / "run"
    flags = [str(QUICKSTART), *TINY_FLAGS, "--output_dir", str(out)]
    assert main(flags) == 0
    assert (out / RECIPE).is_file()
    assert parse_arguments([str(out / RECIPE)]) == parse_arguments(flags)
