"""Base class for every typed config section: frozen, keyword-only, unknown keys rejected.

Sections live next to the code that uses them (``ShardConfig`` in ``shard.py`` …); ``config.py`` composes them and
reads YAML at the job edge. Validation errors are turned into one :class:`ConfigError` whose lines name the dotted
key, what was wrong and the valid choices.
"""

from __future__ import annotations

import difflib
import re
import types
import typing

import pydantic

from pipelines.errors import ConfigError


# A name that becomes one folder under a storage path and an MLflow run name: one path part, no "..", 128 at most
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(value: str | None) -> str | None:
    """``value`` when it is a safe name (:data:`SAFE_NAME`, no ``..``); ValueError (a config error) otherwise."""
    if value is not None and (not SAFE_NAME.fullmatch(value) or ".." in value):
        raise ValueError(f"{value!r} is not a safe name: letters, digits, '_', '.', '-' (no '..', no path "
                         "separators), starting with a letter or digit, at most 128 characters")
    return value


class StrictModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _section_model(annotation: object) -> type[pydantic.BaseModel] | None:
    """The model class inside ``Model``, ``Model | None`` or ``Optional[Model]``; None for leaf types."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _section_model(arg)
            if found is not None:
                return found
    return None


def valid_keys(model: type[pydantic.BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the section at ``loc`` (a dotted path into ``model``), or None if not a section."""
    current: type[pydantic.BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return None
        current = _section_model(current.model_fields[part].annotation)
    return sorted(current.model_fields) if current is not None else None


def format_validation_error(model: type[pydantic.BaseModel], err: pydantic.ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            choices = valid_keys(model, loc[:-1]) or []
            hint = difflib.get_close_matches(str(loc[-1]), choices, n=1)
            lines.append(
                f"unknown key '{key}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; valid keys here: {', '.join(choices)}"
            )
        elif e["type"] == "value_error" and not loc:
            lines.append(str(e["msg"]).removeprefix("Value error, "))
        elif e["type"] == "missing":
            lines.append(f"missing required value '{key}'")
        else:
            lines.append(f"'{key}': {e['msg']} (got {e.get('input')!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


M = typing.TypeVar("M", bound=pydantic.BaseModel)


def validate(model: type[M], data: object) -> M:
    """``model.model_validate(data)`` with errors that name the key and the valid choices."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(model, err)) from None
