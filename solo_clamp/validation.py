"""Checking user data against a typed schema (pydantic), with one sentence per error.

A schema is a pydantic dataclass with ``config=CLOSED`` (unknown fields refused) whose fields
use strict types (:data:`Count`, :data:`Index`, :data:`Number`, ``StrictBool``, ``StrictStr``),
so that ``'yes'`` is not read as true nor ``2.5`` as 2; ``Field(gt=..., le=...)`` gives a
range, and ``__post_init__`` (or an ``AfterValidator``) raises ``ValueError("must be ..., got
...")`` for a rule a type cannot say. :func:`validated` returns the typed value or raises the
project's error whose message names the field by its dotted path, e.g.
``method_kwargs.rs must be > 0, got 0.``, ``epochs must be a positive integer, got 2.5.`` or
``epoch is not a field; fields: [...]``. A union member's tag written in angle brackets
(``Tag("<url>")``) is left out of the path.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Annotated, Any, Optional, Union

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError

from solo_clamp.errors import ConfigError, SoloClampError

CLOSED = ConfigDict(extra="forbid")
Number = Annotated[float, Strict()]
"""A float field that takes an integer but neither a bool nor a string."""
Count = Annotated[int, Strict(), Field(ge=1)]
"""A positive integer (a size, a number of epochs or of draws)."""
Index = Annotated[int, Strict(), Field(ge=0)]
"""An integer >= 0 (a seed, a step)."""

_RULES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list",
    "finite_number": "a finite number",
    "greater_than": "> {gt}",
    "greater_than_equal": ">= {ge}",
    "less_than": "< {lt}",
    "less_than_equal": "<= {le}",
    "literal_error": "{expected}",
    "string_pattern_mismatch": "a string matching {pattern}",
}
"""What a field must be, by pydantic's error type (the words of the project's messages)."""
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


@cache
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def field_path(loc: tuple[Union[str, int], ...], where: str = "") -> str:
    """``("sources", 0, "<hub>", "hf_repo")`` as ``where.sources[0].hf_repo`` (after a
    ``where`` ending in a colon: ``where: sources[0].hf_repo``)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (part.startswith("<") and part.endswith(">")):
            path += f".{part}" if path else part
    if where.endswith(":"):
        return f"{where} {path}" if path else where[:-1]
    return f"{where}.{path}" if where and path and not path.startswith("[") else where + path


def _hint_at(schema: Any, loc: tuple[Union[str, int], ...]) -> Any:
    """The annotation that ``schema`` (a dataclass or TypedDict) gives the field at ``loc``,
    None where the path leaves dataclasses."""
    for part in loc:
        schema = _required(schema)
        if not (dataclasses.is_dataclass(schema) or typing.is_typeddict(schema)):
            return None
        schema = typing.get_type_hints(schema, include_extras=True).get(part)
    return schema


def _lowest_integer(hint: Any) -> Optional[int]:
    """The smallest value an integer field's ``ge`` / ``gt`` constraint allows, if any."""
    while _optional(hint) or typing.get_origin(hint) is Annotated:
        if _optional(hint):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
            continue
        for item in typing.get_args(hint)[1:]:
            for bound in (item, *getattr(item, "metadata", ())):
                if getattr(bound, "ge", None) is not None:
                    return bound.ge
                if getattr(bound, "gt", None) is not None:
                    return bound.gt + 1
        hint = typing.get_args(hint)[0]
    return None


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)


def _required(hint: Any) -> Any:
    """``X`` of ``Optional[X]`` or ``Annotated[X, ...]``; any other hint as it is."""
    if _optional(hint):
        return _required(next(a for a in typing.get_args(hint) if a is not type(None)))
    return _required(typing.get_args(hint)[0]) if typing.get_origin(hint) is Annotated else hint


def _fields_at(schema: Any, loc: tuple[Union[str, int], ...]) -> Optional[list[str]]:
    """The field names of the dataclass (or TypedDict) that ``schema`` holds at ``loc``."""
    hint = _required(_hint_at(schema, loc))
    if dataclasses.is_dataclass(hint):
        return [f.name for f in dataclasses.fields(hint)]
    return list(typing.get_type_hints(hint)) if typing.is_typeddict(hint) else None


def describe(error: dict[str, Any], where: str = "", schema: Any = None) -> str:
    """One sentence for one of pydantic's errors (an item of ``ValidationError.errors()``);
    ``schema``: the validated one, whose fields an unknown field's message lists."""
    kind, value, loc = error["type"], error.get("input"), tuple(error["loc"])
    ctx = error.get("ctx") or {}
    bounds = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
    rule = _RULES.get(kind, "").format(**bounds)
    hint = _hint_at(schema, loc)
    low = _lowest_integer(hint) if _required(hint) is int else None
    if low is not None and kind.startswith(("int_", "greater_than")):
        rule = "a positive integer" if low == 1 else f"an integer >= {low}"
    key = bool(loc) and loc[-1] == "[key]"  # a mapping's key: (..., key, "[key]")
    if key:
        loc = loc[:-2]
    path = field_path(loc, where)
    if key:
        text = f"{path} key {value!r} must be {rule or error['msg']}"
    elif kind == "missing":
        text = f"{path} is required"
    elif kind in _UNKNOWN:
        known = _fields_at(schema, loc[:-1])
        text = f"{path} is not a field" + (f"; fields: {known}" if known is not None else "")
    elif kind in ("value_error", "assertion_error"):  # a rule a type cannot say
        message = str(error["ctx"]["error"])
        text = f"{path} {message}" if message.startswith("must ") else f"{path}: {message}"
    elif rule:
        null = " or null" if _optional(hint) else ""
        text = f"{path} must be {rule}{null}, got {value!r}"
    else:
        text = f"{path}: {error['msg'][0].lower()}{error['msg'][1:]}, got {value!r}"
    text = text.strip().lstrip(": ").rstrip(".")
    return f"{text[0].upper()}{text[1:]}." if not path else f"{text}."


def validated(
    schema: Any, data: Any, where: str = "", error: type[SoloClampError] = ConfigError
) -> Any:
    """``data`` validated as ``schema`` (a pydantic dataclass, or any type pydantic
    validates); its first error raises ``error`` with :func:`describe`'s sentence."""
    try:
        return _adapter(schema).validate_python(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)  # a misspelt field first, before its "required"
        first = next((e for e in errors if e["type"] in _UNKNOWN), errors[0])
        raise error(describe(first, where, schema)) from None
