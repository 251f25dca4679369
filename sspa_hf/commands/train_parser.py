"""sspa-train's arguments: recipe + command line into the three argument dataclasses, and a grouped --help.

The recipe becomes the parser's defaults (`parser.set_defaults(**recipe)`, the way TRL's `TrlParser` reads its
config files), so flags on the command line override it. Each recipe value is converted and checked against its
argument first, so that a mistake names the recipe file and key; argparse's abbreviations are off, so neither a
recipe key nor a flag is ever taken for a longer name.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import enum
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from ..errors import UserInputError, first_line
from ..training.arguments import DataArguments, ModelArguments, SSPATrainingArguments

PROG = "sspa-train"
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
DESCRIPTION = (
    "Train SSPA-JT: sample selection + paired augmentation joint training for facial expressions. "
    "The first argument may be a YAML/JSON recipe whose keys are the flags below; flags after it override it. "
    "-h/--help lists SSPA's own options and the common Trainer ones; --help-all lists every option."
)
EPILOG = "Example: sspa-train recipes/quickstart.yaml --num_train_epochs 4 --output_dir runs/try"
# The Trainer options most runs touch; --help lists them after SSPA's own.
COMMON_TRAINER_OPTIONS = (
    "output_dir",
    "num_train_epochs",
    "per_device_train_batch_size",
    "learning_rate",
    "weight_decay",
    "seed",
    "save_strategy",
    "resume_from_checkpoint",
    "report_to",
    "push_to_hub",
    "hub_model_id",
    "hub_strategy",
    "use_cpu",
)
# SSPA's own training options: the fields SSPATrainingArguments adds to TrainingArguments.
_SSPA_OWN = [
    f.name
    for f in dataclasses.fields(SSPATrainingArguments)
    if f.name not in {g.name for g in dataclasses.fields(TrainingArguments)}
]


class TrainArgumentParser(HfArgumentParser):
    """`HfArgumentParser` over (ModelArguments, DataArguments, SSPATrainingArguments), without abbreviations,
    whose errors are `UserInputError`s (one line, exit 2) instead of usage dumps."""

    def __init__(self) -> None:
        super().__init__(
            (ModelArguments, DataArguments, SSPATrainingArguments),
            prog=PROG,
            description=DESCRIPTION,
            epilog=EPILOG,
            allow_abbrev=False,
            add_help=False,
        )

    def error(self, message: str):  # argparse's bad-value path: one line, naming the flag
        raise UserInputError(message)

    def actions_by_name(self) -> dict[str, argparse.Action]:
        """Each argument's main action by its name (a dataclass field), without the `--no_X` complements."""
        actions: dict[str, argparse.Action] = {}
        for action in self._actions:
            if action.option_strings and not isinstance(action, argparse._StoreFalseAction):
                actions.setdefault(action.dest, action)
        return actions

    def format_grouped_help(self, full: bool) -> str:
        """--help (full=False): SSPA's options, then the common Trainer ones; --help-all: every option."""
        actions = self.actions_by_name()
        helper = argparse.ArgumentParser(
            prog=PROG,
            description=DESCRIPTION,
            epilog=EPILOG,
            add_help=False,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        groups = {
            "SSPA-JT": _SSPA_OWN,
            "model": [f for f in ModelArguments.__dataclass_fields__],
            "data": [f for f in DataArguments.__dataclass_fields__],
        }
        trainer = [n for n in actions if n not in {x for names in groups.values() for x in names}]
        if full:
            groups["Trainer (transformers.TrainingArguments)"] = trainer
        else:
            groups["common Trainer options (--help-all for all " + str(len(trainer)) + ")"] = [
                n for n in COMMON_TRAINER_OPTIONS if n in actions
            ]
        for title, names in groups.items():
            group = helper.add_argument_group(title)
            for name in names:
                if name in actions:
                    group._add_action(_snake_case_only(actions[name]))
        return helper.format_help()


def _snake_case_only(action: argparse.Action) -> argparse.Action:
    """The action as --help shows it: its --snake_case spelling only (HfArgumentParser also adds --kebab-case
    aliases, which still parse)."""
    shown = copy.copy(action)
    shown.option_strings = [o for o in action.option_strings if "-" not in o[2:]] or action.option_strings
    return shown


class _RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen_at: dict[Any, tuple[int, int]] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # an unhashable key: PyYAML's own error names it
            here = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen_at:
                (line, column), (again, column_again) = seen_at[key], here
                where = (
                    f"lines {line} and {again}"
                    if line != again
                    else f"line {line}, columns {column} and {column_again}"
                )
                raise UserInputError(f"key {key!r} is given twice ({where})")
            seen_at[key] = here
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe; `extends: other.yaml` (relative to it) is read first and overridden key by key."""
    if not path.is_file():
        raise UserInputError(f"recipe {path} not found")
    if path.resolve() in _seen:
        raise UserInputError(f"recipe {path} extends itself (through {' -> '.join(map(str, _seen))})")
    try:
        recipe = yaml.load(path.read_text(), Loader=_RecipeLoader)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise UserInputError(f"recipe {path} is not valid YAML/JSON: {exc}".replace("\n", " ")) from exc
    except UserInputError as exc:
        raise UserInputError(f"recipe {path}: {exc}") from None
    if not isinstance(recipe, dict):
        raise UserInputError(f"recipe {path} must be a mapping of argument names to values")
    if "extends" in recipe:
        extends = str(recipe.pop("extends"))
        base_path = path.parent / extends
        if not base_path.is_file():
            raise UserInputError(f"recipe {path}: extends {extends}: {base_path} not found")
        base = load_recipe(base_path, (*_seen, path.resolve()))
        recipe = {**base, **recipe}
    return recipe


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _expected(action: argparse.Action) -> str:
    """The accepted values of an argument, in words."""
    if action.choices:
        return "one of " + ", ".join(map(str, action.choices))
    if action.type is string_to_bool:
        return "true or false"
    return {int: "an integer", float: "a number"}.get(action.type, "a string")


def convert_value(action: argparse.Action, value: Any) -> Any:
    """A recipe value as the command line would turn it into the argument's value; ValueError if it cannot."""
    many = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1)
    if isinstance(value, list) and not many:
        raise ValueError("a list")
    if isinstance(value, dict):
        value = json.dumps(value)
    items = value if isinstance(value, list) else [value]
    converted = []
    for item in items:
        text = str(item).lower() if isinstance(item, bool) else str(item)
        try:
            one = action.type(text) if action.type is not None else text
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            raise ValueError(repr(item)) from None
        if action.choices and one not in action.choices:
            raise ValueError(repr(item))
        converted.append(one)
    return converted if many else converted[0]


def recipe_defaults(parser: TrainArgumentParser, path: Path) -> dict[str, Any]:
    """The recipe's keys as parser defaults; an unknown key or a bad value names the file and the key."""
    actions = parser.actions_by_name()
    defaults = {}
    for key, value in load_recipe(path).items():
        action = actions.get(key)
        if action is None:
            raise UserInputError(f"recipe {path}: unknown key {key!r}{_did_you_mean(key, list(actions))}")
        if value is None:  # `key: null` unsets what an extended recipe set
            continue
        try:
            defaults[key] = convert_value(action, value)
        except ValueError as exc:
            raise UserInputError(f"recipe {path}: {key}: {exc} is not accepted; expected {_expected(action)}") from None
    return defaults


def _blame(message: str, parser: TrainArgumentParser, flags: list[str], recipe: Path | None) -> str:
    """Where a value refused after parsing came from: the flag if the message names one given on the command
    line, else the recipe, else the arguments as a whole."""
    named = [name for name in parser.actions_by_name() if name in message]
    given = {flag.split("=")[0].lstrip("-").replace("-", "_") for flag in flags if flag.startswith("--")}
    for name in named:
        if name in given:
            return f"flag --{name}"
    if recipe is not None:
        return f"recipe {recipe}" + (f", key {named[0]}" if named else "")
    return "arguments"


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, SSPATrainingArguments]:
    """Parse `[RECIPE] [--flag value ...]` into the three argument dataclasses."""
    parser = TrainArgumentParser()
    flags, recipe = argv, None
    if argv and argv[0].endswith(RECIPE_SUFFIXES):
        recipe, flags = Path(argv[0]), argv[1:]
        parser.set_defaults(**recipe_defaults(parser, recipe))
    # An unknown flag is refused before the dataclasses are built: building TrainingArguments imports transformers'
    # model stack (its report_to integrations), seconds that a one-line refusal need not wait for.
    _refuse_unknown(parser, parser.parse_known_args(args=flags)[1])
    try:
        *parsed, _ = parser.parse_args_into_dataclasses(
            args=flags, return_remaining_strings=True, look_for_args_file=False
        )
    except ValueError as exc:  # values refused by the dataclasses' __post_init__
        if isinstance(exc, UserInputError):
            raise
        message = first_line(exc)
        raise UserInputError(f"{_blame(message, parser, flags, recipe)}: {message}") from exc
    model_args, data_args, training_args = parsed
    return model_args, data_args, training_args


def _refuse_unknown(parser: TrainArgumentParser, remaining: list[str]) -> None:
    """One line for the first command-line string no option took: an unknown flag, or a stray argument."""
    if remaining:
        first = remaining[0]
        if first.startswith("-"):
            known = [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]
            raise UserInputError(f"unknown flag {first}{_did_you_mean(first.split('=')[0], known)}")
        raise UserInputError(f"unexpected argument {first!r} (the recipe, if any, must come first)")


# Never written to recipe.yaml: the run folder is pushed to the Hub with the model.
_SECRETS = frozenset({"hub_token", "push_to_hub_token"})
_SECTIONS = ("model (ModelArguments)", "data (DataArguments)", "training (SSPATrainingArguments)")


class _RecipeDumper(yaml.SafeDumper):
    """Block mappings, lists on one line (`backbone_depths: [2, 2, 2, 2]`), as the recipes in recipes/ are written."""


_RecipeDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)
)


def _user_value(value: Any) -> Any:
    """A parsed value as a recipe would give it: enums by their value, tuples as lists, nested configs as dicts."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(key): _user_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_user_value(item) for item in value]
    return value


def _as_flag_value(action: argparse.Action, value: Any) -> Any:
    """A list `__post_init__` made of one string flag (report_to tensorboard -> [tensorboard]) as that string.

    A longer one (report_to [tensorboard, wandb], set in Python) has no flag spelling: it is written as a list,
    refused on reading, and `write_recipe` warns that it does not round-trip.
    """
    many = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1)
    return value[0] if isinstance(value, list) and len(value) == 1 and not many else value


def _field_values(parsed: tuple[Any, ...]) -> dict[str, Any]:
    """Every argument's value (the Hub token left out), to compare parses."""
    fields = [(dc, f.name) for dc in parsed for f in dataclasses.fields(dc) if f.init and f.name not in _SECRETS]
    return {name: getattr(dc, name) for dc, name in fields}


def _drop_all(record: logging.LogRecord) -> bool:
    return False


def _parse_mapping(recipe: dict[str, Any]) -> tuple[Any, ...] | None:
    """The three dataclasses a recipe of these keys parses to (no flags); None where a value is refused."""
    parser = TrainArgumentParser()
    actions = parser.actions_by_name()
    # Silenced, not by a lower verbosity (disable_tqdm's default follows it): the run's own parse said it already.
    quiet = logging.getLogger("transformers.training_args")
    quiet.addFilter(_drop_all)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser.set_defaults(**{key: convert_value(actions[key], value) for key, value in recipe.items()})
            return tuple(parser.parse_args_into_dataclasses(args=[], look_for_args_file=False))
    except (ValueError, TypeError):
        return None
    finally:
        quiet.removeFilter(_drop_all)


def resolved_recipe(
    model_args: ModelArguments, data_args: DataArguments, args: SSPATrainingArguments
) -> list[dict[str, Any]]:
    """The arguments as the smallest recipe (one mapping per dataclass) that parses back to the same arguments.

    What differs from the defaults, as the user would write it; dropped: a value `__post_init__` derives from the
    others (e.g. dataloader_pin_memory from use_cpu), so that a flag overriding the recipe still derives it, and
    the Hub token.
    """
    parsed = (model_args, data_args, args)
    target, defaults = _field_values(parsed), _field_values(_parse_mapping({}) or ())
    actions = TrainArgumentParser().actions_by_name()
    recipe = {
        name: _as_flag_value(actions[name], _user_value(value))
        for name, value in target.items()
        if name in actions and value is not None and value != defaults.get(name)
    }
    for name in list(recipe):  # derived values: without them the arguments come out the same
        rest = {key: value for key, value in recipe.items() if key != name}
        again = _parse_mapping(rest)
        if again is not None and _field_values(again) == target:
            recipe = rest
    while recipe and _parse_mapping(recipe) is None:  # a value __post_init__ rewrote beyond any flag (fsdp ...)
        recipe = next(
            (rest for name in recipe if _parse_mapping(rest := {k: v for k, v in recipe.items() if k != name})),
            {},
        )
    names = [{f.name for f in dataclasses.fields(dc)} for dc in parsed]
    return [{key: value for key, value in recipe.items() if key in section} for section in names]


def recipe_text(model_args: ModelArguments, data_args: DataArguments, args: SSPATrainingArguments) -> str:
    """recipe.yaml's text: the resolved recipe as YAML in three commented sections."""
    lines = [
        "# The resolved arguments of this run (recipe, extends and flags): `sspa-train THIS_FILE` parses to the same",
        "# arguments; flags after it override it. Only values that differ from the defaults are listed.",
    ]
    for title, section in zip(_SECTIONS, resolved_recipe(model_args, data_args, args), strict=True):
        lines.append(f"\n# {title}")
        if section:
            lines.append(yaml.dump(section, Dumper=_RecipeDumper, sort_keys=False, width=120).rstrip())
    return "\n".join(lines) + "\n"


def write_recipe(path: Path, model_args: ModelArguments, data_args: DataArguments, args: SSPATrainingArguments) -> None:
    """Write recipe.yaml; warn about any argument it cannot give back (a value a recipe cannot express)."""
    text = recipe_text(model_args, data_args, args)
    path.write_text(text)
    again = _parse_mapping(yaml.safe_load(text) or {})
    target = _field_values((model_args, data_args, args))
    lost = [name for name, value in _field_values(again).items() if value != target[name]] if again else ["all"]
    if lost:
        logging.getLogger(__name__).warning("%s does not give back the argument(s) %s", path, ", ".join(lost))
