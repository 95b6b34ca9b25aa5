"""Checking user data against a typed schema (pydantic), with one sentence per error.

:func:`validated` returns the typed value or raises the project's error (a
:class:`~solo_clamp.errors.SoloClampError` subclass) whose message names the field by its
dotted path, says what is wrong and shows the value, e.g.
``models[0] (tiny).epochs: input should be greater than or equal to 1, got 0.``

A union member's tag written in angle brackets (``Tag("<url>")``) is left out of the path.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Union

from pydantic import TypeAdapter, ValidationError

from solo_clamp.errors import ConfigError, SoloClampError

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


def describe(error: dict[str, Any], where: str = "") -> str:
    """One sentence for one of pydantic's errors (an item of ``ValidationError.errors()``)."""
    kind, value, loc = error["type"], error.get("input"), error["loc"]
    message = f"{error['msg'][0].lower()}{error['msg'][1:]}"
    if loc and loc[-1] == "[key]":  # a mapping's key: (..., key, "[key]")
        loc, text = loc[:-2], f"key {value!r}: {message}"
    elif kind == "missing":
        text = "missing required field"
    elif kind in _UNKNOWN:
        text = "unknown field"
    elif kind in ("value_error", "assertion_error"):
        text = str(error["ctx"]["error"])
    else:
        text = f"{message}, got {value!r}"
    path, text = field_path(loc, where), text.rstrip(".")
    return f"{path}: {text}." if path else f"{text[0].upper()}{text[1:]}."


def validated(
    schema: Any, data: Any, where: str = "", error: type[SoloClampError] = ConfigError
) -> Any:
    """``data`` validated as ``schema`` (a pydantic model or dataclass, or any type pydantic
    validates); its first error raises ``error`` with :func:`describe`'s sentence."""
    try:
        return _adapter(schema).validate_python(data)
    except ValidationError as err:
        raise error(describe(err.errors(include_url=False)[0], where)) from None
