"""One flag style: every command takes --snake_case (as sspa-train's HfArgumentParser does), and keeps accepting
the --kebab-case spellings of the earlier releases."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sspa_hf.commands import evaluate, export_onnx, export_selection, predict, prepare, snake_case_flags
from sspa_hf.commands.train_parser import TrainArgumentParser

ROOT = Path(__file__).resolve().parent.parent
# command module, the function its main() hands the parsed arguments to, kebab-case command line
COMMANDS = {
    "sspa-eval": (
        evaluate,
        "evaluate_model",
        ["M", "spec", "--batch-size", "8", "--num-workers=0", "--output-dir", "o"],
    ),
    "sspa-predict": (
        predict,
        "run",
        ["M", "a.png", "b.png", "--top-k", "3", "--batch-size", "4", "--detect-faces", "--trust-remote-code"],
    ),
    "sspa-prepare": (
        prepare,
        "_run",
        ["spec", "out", "--image-size", "48", "--num-proc", "2", "--skip-bad-images", "--jpeg-quality", "90"],
    ),
    "sspa-export-selection": (export_selection, "export", ["run", "out", "--kept-only", "--push-to-hub", "me/x"]),
    "sspa-export-onnx": (export_onnx, "run", ["model", "out.onnx", "--trust-remote-code", "--check"]),
}


def test_snake_case_flags() -> None:
    argv = ["--top-k", "3", "--batch_size=4", "-q", "a-b.png", "--num-proc=2", "--", "--not-an-option"]
    assert snake_case_flags(argv) == [
        "--top_k",
        "3",
        "--batch_size=4",
        "-q",
        "a-b.png",
        "--num_proc=2",
        "--",
        "--not-an-option",
    ]
    assert snake_case_flags(["--output", "--x-y"]) == ["--output", "--x_y"]  # (an option's value is never --x-y)


def _parsed_by_main(monkeypatch, command: str, argv: list[str]) -> argparse.Namespace:
    module, body, _ = COMMANDS[command]
    seen = []
    monkeypatch.setattr(module, body, lambda args: seen.append(args) or 0)
    assert module.main(argv) == 0
    return seen[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_kebab_and_snake_spellings_parse_the_same(monkeypatch, command: str) -> None:
    kebab = COMMANDS[command][2]
    snake = [re.sub(r"^--([a-z-]+)", lambda m: "--" + m.group(1).replace("-", "_"), arg) for arg in kebab]
    assert snake != kebab
    old, new = _parsed_by_main(monkeypatch, command, kebab), _parsed_by_main(monkeypatch, command, snake)
    assert vars(old) == vars(new)
    defaults = COMMANDS[command][0].build_parser().parse_args(kebab[:2])
    assert vars(new) != vars(defaults)  # the flags were taken, not ignored


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_snake_case_only(command: str) -> None:
    parser = COMMANDS[command][0].build_parser()
    options = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    assert options and all("-" not in option[2:] for option in options), options
    assert not re.search(r"--[a-z]+-[a-z]", parser.format_help())


def test_sspa_train_help_is_snake_case_too() -> None:
    assert not re.search(
        r"--[a-z]+-[a-z]", TrainArgumentParser().format_grouped_help(full=True).replace("--help-all", "")
    )


def test_docs_and_tests_call_the_commands_with_snake_case_flags() -> None:
    """The kebab spellings of the five commands' options appear in no README, doc, recipe or test."""
    kebab = {
        option.replace("_", "-")
        for module, _, _ in COMMANDS.values()
        for action in module.build_parser()._actions
        for option in action.option_strings
        if "_" in option
    }
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "recipes").rglob("*.md")]
    files += [path for path in (ROOT / "tests").glob("*.py") if path.name != Path(__file__).name]
    found = [
        f"{path.relative_to(ROOT)}: {flag}"
        for path in files
        for flag in kebab
        if re.search(re.escape(flag) + r"\b", path.read_text())
    ]
    assert not found, found


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["--no_such_flag", "--batch", "--kept", "--top", "--trust"])
def test_an_unknown_or_abbreviated_flag_is_one_line_without_the_usage_block(monkeypatch, capsys, command, flag):
    """argparse would take `--batch` for `--batch_size` (and print its usage block before an error): both commands'
    mistakes are one `PROG: error:` line, exit 2, before the command body runs."""
    module, body, kebab = COMMANDS[command]
    monkeypatch.setattr(module, body, lambda args: pytest.fail("the body ran"))
    try:
        code = module.main([*kebab[:2], flag, "1"])
    except SystemExit as stop:  # argparse's exit, which sspa-prepare turns into its return value
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{module.PROG}: error: ") and "usage:" not in err, err


def test_prepare_refuses_an_output_folder_that_is_a_file_before_any_work(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    monkeypatch.setattr(prepare, "prepare_source", lambda *a, **k: pytest.fail("the data were prepared"))
    for out in (a_file, a_file / "prepared"):
        assert prepare.main(["synthetic:?role=target&n=20", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"OUTPUT_DIR {out}" in err and "is a file" in err, err


def test_export_selection_refuses_an_out_inside_a_file_before_any_work(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    monkeypatch.setattr(export_selection, "auxiliary_with_selection", lambda *a: pytest.fail("the run was read"))
    assert export_selection.main([str(tmp_path), str(a_file / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"OUT {a_file / 'out'} cannot be made: {a_file} is a file" in err, err
