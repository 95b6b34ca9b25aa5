"""solo_clamp.validation: pydantic's errors as one sentence naming the field (torch only)."""

from __future__ import annotations

from dataclasses import field
from typing import Literal, Optional

import pytest
from pydantic import Field, StrictBool, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from solo_clamp.errors import ConfigError, ManifestError
from solo_clamp.validation import CLOSED, Count, Index, Number, field_path, validated


@dataclass(config=CLOSED)
class Inner:
    size: Count = 4
    scale: Number = Field(1.0, gt=0, le=10)
    seed: Optional[Index] = None


@dataclass(config=CLOSED)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    kinds: dict[Literal["knn", "linear"], Count] = field(default_factory=dict)
    flags: list[StrictBool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.name == "both":
            raise ValueError("name and inner cannot agree")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "a", "inner": {"size": 0}}, "cfg.inner.size must be a positive integer, got 0."),
        (
            {"name": "a", "inner": {"size": 2.5}},
            "cfg.inner.size must be a positive integer, got 2.5.",
        ),
        (
            {"name": "a", "inner": {"size": True}},
            "cfg.inner.size must be a positive integer, got True.",
        ),
        ({"name": "a", "inner": {"scale": 0}}, "cfg.inner.scale must be > 0, got 0."),
        ({"name": "a", "inner": {"scale": 11.5}}, "cfg.inner.scale must be <= 10, got 11.5."),
        ({"name": "a", "inner": {"scale": "x"}}, "cfg.inner.scale must be a number, got 'x'."),
        (
            {"name": "a", "inner": {"seed": -1}},
            "cfg.inner.seed must be an integer >= 0 or null, got -1.",
        ),
        (
            {"name": "a", "inner": {"sise": 3}},
            "cfg.inner.sise is not a field; fields: ['size', 'scale', 'seed'].",
        ),
        ({"name": "a", "inner": 5}, "cfg.inner must be a mapping, got 5."),
        ({"name": "a", "kinds": {"svm": 1}}, "cfg.kinds key 'svm' must be 'knn' or 'linear'."),
        ({"name": "a", "flags": [True, "no"]}, "cfg.flags[1] must be true or false, got 'no'."),
        ({"inner": {}}, "cfg.name is required."),
        ({"nam": "a"}, "cfg.nam is not a field; fields: ['name', 'inner', 'kinds', 'flags']."),
        ({"name": "both"}, "cfg: name and inner cannot agree."),
    ],
)
def test_each_error_is_one_sentence_naming_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        validated(Outer, data, "cfg")
    assert str(err.value) == message
    with pytest.raises(ValidationError):  # pydantic's own verdict agrees: the data is invalid
        TypeAdapter(Outer).validate_python(data)


def test_valid_data_comes_back_typed_with_defaults():
    typed = validated(Outer, {"name": "a", "inner": {"scale": 2}})
    assert typed == Outer(name="a", inner=Inner(size=4, scale=2.0, seed=None))
    assert isinstance(typed.inner.scale, float)


def test_the_error_type_and_a_bare_value():
    with pytest.raises(ManifestError, match=r"^--epochs must be a positive integer, got 0\.$"):
        validated(Count, 0, "--epochs", ManifestError)
    with pytest.raises(ConfigError, match=r"^Must be a positive integer, got 'x'\.$"):
        validated(Count, "x")
    with pytest.raises(ConfigError, match=r"^Must be an integer, got 'x'\.$"):
        validated(int, "x")


def test_field_paths():
    assert field_path(("sources", 0, "<hub>", "hf_repo"), "entry") == "entry.sources[0].hf_repo"
    assert field_path(("models",), "index.yaml:") == "index.yaml: models"
    assert field_path((), "index.yaml:") == "index.yaml"
    assert field_path((0, "x")) == "[0].x"
