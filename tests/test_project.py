"""Project contracts: CI runs exactly the README's test command; every console script resolves to a main()."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "pytest" in ci_command and "pip install -q torch==2.13.0" in ci_command
    readme_blocks = (ROOT / "README.md").read_text().split("```bash\n")[1:]
    assert any(block.split("```")[0].strip() == ci_command for block in readme_blocks)


def test_console_scripts_resolve_and_answer_help(capsys):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {
        "sspa-train",
        "sspa-eval",
        "sspa-predict",
        "sspa-prepare",
        "sspa-export-selection",
        "sspa-export-onnx",
    }
    for name, target in scripts.items():
        module, function = target.split(":")
        main = getattr(importlib.import_module(module), function)
        try:
            main(["--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, name
        out = capsys.readouterr().out
        assert f"usage: {name}" in out, name
