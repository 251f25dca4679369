"""Spec strings: grammar, typed options, unknown formats/options, synthetic forwarding and bare paths."""

from __future__ import annotations

import pytest
from datasets import DatasetDict
from helpers import build_rafdb, tiny_split

import sspa_hf.data.synthetic as synthetic
from sspa_hf.data import load_source, parse_spec
from sspa_hf.data.schema import Options, parse_label_map
from sspa_hf.errors import UserInputError


def test_parse_format_path_and_options():
    spec = parse_spec("ferplus:/data/fer?label=fer2013&rule=plurality")
    assert (spec.format, spec.path, spec.options) == ("ferplus", "/data/fer", {"label": "fer2013", "rule": "plurality"})
    assert spec.canonical() == "ferplus:/data/fer?label=fer2013&rule=plurality"
    assert parse_spec("ferplus:/data/fer?rule=plurality&label=fer2013").canonical() == spec.canonical()
    assert parse_spec("synthetic:?role=auxiliary&n=800").options == {"role": "auxiliary", "n": "800"}
    assert parse_spec("imagefolder:/a%20b?label_map=x%3Ay").path == "/a b"
    bare = parse_spec("prepared/rafdb")
    assert bare.format is None and bare.path == "prepared/rafdb"
    assert parse_spec("C:/data/prepared").format is None  # a drive letter is not a format


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rafbd:/data/raf", r"unknown format 'rafbd' \(known formats: rafdb, affectnet"),
        ("rafdb:/x?aligned", r"option 'aligned' is not key=value"),
        ("rafdb:/x?aligned=1&aligned=0", r"option 'aligned' given twice"),
        ("", r"empty dataset spec"),
        ("some/folder?label=x", r"options \(\?key=value\) need a FORMAT: prefix"),
    ],
)
def test_bad_specs_are_named(text, message):
    with pytest.raises(UserInputError, match=message):
        parse_spec(text)


def test_options_are_typed_and_unknown_ones_rejected():
    options = Options(parse_spec("ferplus:/x?label=FER2013&dedup=no&n=3&extra=1"))
    assert options.choice("label", ("ferplus", "fer2013"), "ferplus") == "fer2013"
    assert options.flag("dedup", True) is False
    assert options.integer("n", None, minimum=1) == 3
    with pytest.raises(
        UserInputError, match=r"unknown option 'extra' for format ferplus \(accepted: dedup, label, n\)"
    ):
        options.done()
    with pytest.raises(UserInputError, match=r"option label='x' is invalid; expected one of ferplus, fer2013"):
        Options(parse_spec("ferplus:/x?label=x")).choice("label", ("ferplus", "fer2013"), "ferplus")
    with pytest.raises(UserInputError, match=r"option n='0' is invalid; expected an integer >= 1"):
        Options(parse_spec("ferplus:/x?n=0")).integer("n", None, minimum=1)


def test_reader_rejects_an_option_it_does_not_know(tmp_path):
    build_rafdb(tmp_path)
    with pytest.raises(UserInputError, match=r"unknown option 'label' for format rafdb \(accepted: aligned\)"):
        load_source(f"rafdb:{tmp_path}?label=ferplus")


def test_label_map_parsing():
    assert parse_label_map("Angry:anger, Contempt:drop,0:neutral", "x") == {
        "Angry": "anger",
        "Contempt": None,
        "0": "neutral",
    }
    with pytest.raises(UserInputError, match=r"'Angry' to 'angry', which is not one of anger"):
        parse_label_map("Angry:angry", "x")


def test_synthetic_options_are_forwarded(monkeypatch):
    calls = []

    def fake(role="target", n=None, image_size=48, seed=0, n_test=None):
        calls.append((role, n, image_size, seed, n_test))
        return DatasetDict({"train": tiny_split(list(range(7)), "synthetic_auxiliary")})

    monkeypatch.setattr(synthetic, "load_synthetic", fake)
    ds = load_source("synthetic:?role=auxiliary&n=800&seed=3")
    load_source("synthetic:?n=10&n_test=5&image_size=32")
    assert calls == [("auxiliary", 800, 48, 3, None), ("target", 10, 32, 0, 5)]
    assert len(ds["train"]) == 7
    with pytest.raises(UserInputError, match=r"synthetic takes no path"):
        load_source("synthetic:/somewhere")


def test_bare_path_that_is_not_prepared_suggests_the_format(tmp_path):
    build_rafdb(tmp_path / "raf")
    with pytest.raises(UserInputError, match=r"not a prepared dataset .* looks like rafdb: use rafdb:"):
        load_source(str(tmp_path / "raf"))
    with pytest.raises(UserInputError, match=r"dataset folder .*nothing not found"):
        load_source(str(tmp_path / "nothing"))


def test_bare_path_to_a_saved_dataset(tmp_path):
    DatasetDict({"train": tiny_split([0, 3, 6], "mine")}).save_to_disk(str(tmp_path / "saved"))
    ds = load_source(str(tmp_path / "saved"))
    assert ds["train"]["label"] == [0, 3, 6] and ds["train"]["source"] == ["mine"] * 3
