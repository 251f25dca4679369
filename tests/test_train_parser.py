"""sspa-train's arguments (sspa_hf/commands/train_parser.py): every recipe through the real parser, `extends`,
flags over the recipe, one-line recipe and flag mistakes that blame the file, key or flag, and the grouped --help."""

from __future__ import annotations

import pytest
from helpers import QUICKSTART, RECIPES, one_line_error

from sspa_hf.commands.train import main
from sspa_hf.commands.train_parser import parse_arguments

PAPER = sorted(p for p in (RECIPES / "paper").rglob("*.yaml") if p.name != "base.yaml")


def test_paper_recipes_cover_every_table():
    names = {p.relative_to(RECIPES / "paper").as_posix() for p in PAPER}
    assert len([n for n in names if n.startswith("ablations/")]) == 16  # Table 5: 8 module sets x 2 backbones
    assert len([n for n in names if n.startswith("experts/")]) == 4  # Table 6 (k = 3 is the main ARM recipe)
    assert len([n for n in names if n.startswith("mixup/")]) == 15  # Table 7 (alpha 5, beta 1 is the main one)
    assert len([n for n in names if n.startswith("fractions/")]) == 12  # Table 8 (10 % is the main one)
    assert len([n for n in names if n.startswith("baselines/")]) == 8  # Tables 3-4: target only, straight
    for main_recipe in ("rafdb_affectnet10_resnet18", "rafdb_affectnet10_arm", "caers_affectnet20_resnet18"):
        assert f"{main_recipe}.yaml" in names


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
def test_every_paper_recipe_parses_with_section_4_1_3_settings(recipe):
    model, data, train = parse_arguments([str(recipe)])
    name = recipe.stem
    assert train.per_device_train_batch_size == 128
    assert (train.optim.value, train.optim_args) == ("sgd", "momentum=0.9")
    assert (train.learning_rate, train.weight_decay, train.num_train_epochs) == (0.01, 0.005, 80)
    assert train.lr_scheduler_type.value == "cosine" and train.warmup_steps == 0
    assert (train.selection_epochs, train.ema_momentum) == (40, 0.95)
    assert train.sync_batch_stats  # with N processes, the batch statistics of the paper's one batch of 128
    assert model.image_size == 224 and train.crop_padding > 0
    assert model.backbone == (
        "arm" if "arm" in name or name.startswith("table6") or name.startswith("table7") else "resnet"
    )
    expected_k, alpha, beta = 3, 5.0, 1.0
    if name.startswith("table6_k"):
        expected_k = int(name.removeprefix("table6_k"))
    if name.startswith("table7_"):
        alpha, beta = (float(part.removeprefix("alpha").removeprefix("beta")) for part in name.split("_")[1:])
    if name.startswith("table5_"):
        modules = set(name.split("_")[2:])
        expected_k = 3 if "moe" in modules else 1
        assert train.use_selection == ("ssm" in modules)
        assert train.fix_target == ("dt" in modules)
        assert train.use_pairing == ("pam" in modules)
        assert data.auxiliary_fraction == pytest.approx(0.10)
    if "_only_" in name or "_straight_" in name:
        expected_k = 1
        assert train.selection_mode == "straight"
        assert (data.auxiliary_dataset is None) == ("_only_" in name)
    if name.startswith("table8_"):
        percent = int(name.rsplit("_p", 1)[1])
        if percent == 0:
            assert data.auxiliary_dataset is None
        else:
            assert data.auxiliary_fraction == pytest.approx(percent / 100)
    assert model.num_experts == expected_k
    assert (train.mixup_alpha, train.mixup_beta) == (alpha, beta)
    assert train.output_dir.startswith("runs/")


def test_quickstart_and_flags_override_the_recipe():
    flags = ["--num_train_epochs", "12", "--seed", "9"]
    model, data, train = parse_arguments([str(RECIPES / "quickstart.yaml"), *flags])
    assert (train.num_train_epochs, train.seed, model.image_size) == (12, 9, 48)
    assert data.auxiliary_dataset.startswith("synthetic:")


@pytest.mark.parametrize(
    "content,needle",
    [
        ("num_train_epochs: 2\nnot_an_argument: 1\n", "not_an_argument"),
        ("extends: missing.yaml\n", "missing.yaml not found"),
        ("num_train_epochs: [1, 2\n", "not valid YAML"),
        ("allocation: simplex\n", "simplex"),
    ],
)
def test_recipe_mistakes_are_one_line_errors(tmp_path, capsys, content, needle):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(content)
    assert main([str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sspa-train: error:") and needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("recipe", sorted((RECIPES / "beyond").rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_beyond_recipe_is_the_paper_recipe_it_extends_in_a_mode_of_ours(recipe):
    """beyond/X.yaml is paper/X.yaml in transition, beyond/X_MODE.yaml paper/X.yaml in MODE (transition_pam,
    consistency)."""
    model, data, train = parse_arguments([str(recipe)])
    mode = next((m for m in ("transition_pam", "consistency") if recipe.stem.endswith(f"_{m}")), "transition")
    name = recipe.relative_to(RECIPES / "beyond").with_name(recipe.name.replace(f"_{mode}", ""))
    paper_model, paper_data, paper_train = parse_arguments([str(RECIPES / "paper" / name)])
    assert (train.selection_mode, model.num_experts, paper_train.selection_mode) == (mode, 1, "paper")
    assert data == paper_data and model.backbone == paper_model.backbone
    assert (train.num_train_epochs, train.learning_rate, train.seed) == (80, 0.01, paper_train.seed)
    assert train.selection_epochs == paper_train.selection_epochs == 40  # transition_pam's T_S: the paper's
    assert train.output_dir == f"runs/beyond_{recipe.stem}"


@pytest.mark.parametrize(
    "line,needles",
    [
        ("num_experts: three", ["num_experts", "'three'", "an integer"]),
        ("use_pairing: flase", ["use_pairing", "'flase'", "true or false"]),
        ("optim: sgdd", ["optim", "'sgdd'", "one of", "sgd"]),
        ("num_train_epoch: 3", ["unknown key 'num_train_epoch'", "num_train_epochs?"]),  # an abbreviation
        ("num_expert: 3", ["unknown key 'num_expert'"]),
    ],
)
def test_recipe_mistakes_name_the_file_the_key_and_the_accepted_values(tmp_path, capsys, line, needles):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"extends: {QUICKSTART}\n{line}\n")
    assert main([str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    message = one_line_error(capsys)
    assert f"recipe {recipe}" in message
    for needle in needles:
        assert needle in message
    assert not (tmp_path / "out").exists()


def test_abbreviated_and_unknown_flags_are_refused_and_blamed_on_the_flag(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main([QUICKSTART, "--num_expert", "3", "--output_dir", out]) == 2
    message = one_line_error(capsys)
    assert "unknown flag --num_expert" in message and "--num_experts" in message and "recipe" not in message
    assert main([QUICKSTART, "--no_such_flag", "1", "--output_dir", out]) == 2
    message = one_line_error(capsys)
    assert "unknown flag --no_such_flag" in message and "recipe" not in message
    assert main([QUICKSTART, "--num_experts", "three", "--output_dir", out]) == 2
    assert "--num_experts" in one_line_error(capsys)


def test_recipe_values_become_defaults_that_flags_override(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"extends: {QUICKSTART}\nuse_pairing: false\nbackbone_depths: [2, 1, 1, 1]\nreport_to: none\n")
    model, _, train = parse_arguments([str(recipe), "--use_pairing", "true", "--seed", "3"])
    assert train.use_pairing is True and train.seed == 3 and model.backbone_depths == [2, 1, 1, 1]
    _, _, train = parse_arguments([str(recipe)])
    assert train.use_pairing is False


def test_short_help_lists_sspa_options_first_and_help_all_everything(capsys):
    assert main(["--help"]) == 0
    short = capsys.readouterr().out
    assert len(short.splitlines()) < 250
    assert short.index("SSPA-JT:") < short.index("model:") < short.index("common Trainer options")
    assert "--selection_epochs" in short and "--gradient_accumulation_steps" not in short
    assert main(["--help-all"]) == 0
    full = capsys.readouterr().out
    assert "--gradient_accumulation_steps" in full and full.index("SSPA-JT:") < full.index("Trainer (")


def test_a_value_refused_after_parsing_is_blamed_on_where_it_came_from(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"extends: {QUICKSTART}\nallocation: simplex\n")
    assert main([str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    assert f"recipe {recipe}, key allocation:" in one_line_error(capsys)
    assert main([QUICKSTART, "--allocation", "simplex", "--output_dir", str(tmp_path / "out")]) == 2
    message = one_line_error(capsys)
    assert "flag --allocation:" in message and "recipe" not in message.split(":")[1]
