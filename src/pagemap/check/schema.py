"""The JSON Schemas shipped with pagemap, and checking documents against them.

Schemas live beside this file (check/schemas/*.schema.json).  A trace is
checked before anything in it is used: a crafted or damaged trace is bad
input, reported in one line naming the field, never a traceback.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema


class SchemaError(ValueError):
    """A document that does not follow its schema."""


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema called `name` ("trace", "run", "check", "replay")."""
    text = resources.files("pagemap.check.schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(doc: Any, name: str, where: str) -> None:
    """SchemaError naming the first field of `doc` that breaks schema `name`."""
    validator = jsonschema.Draft202012Validator(load_schema(name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is None:
        return
    field = "/".join(str(p) for p in error.absolute_path) or "the document"
    raise SchemaError(f"{where}: {field}: {_short(error.message)}")


def check_trace(raw: Any, where: str) -> None:
    from pagemap.check.trace import TRACE_SCHEMA, TraceError

    if not isinstance(raw, dict):
        raise TraceError(f"{where} is not a trace: expected a JSON object")
    version = raw.get("schema", raw.get("version"))
    if version != TRACE_SCHEMA:
        raise TraceError(
            f"{where}: trace schema {version!r} is not the one this pagemap reads "
            f"({TRACE_SCHEMA}); re-run the exploration that found it"
        )
    try:
        validate(raw, "trace", where)
    except SchemaError as exc:
        raise TraceError(str(exc)) from None


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
