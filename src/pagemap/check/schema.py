"""The JSON Schemas shipped with pagemap, and checking documents against them.

Schemas live beside this file (check/schemas/*.schema.json).  A trace is
checked before anything in it is used: a crafted or damaged trace is bad
input, reported in one line naming the field, never a traceback.  Beyond
what JSON Schema says, a trace file is at most MAX_TRACE_BYTES, nested no
deeper than JSON's parser can follow, and its numbers are integers (JSON
Schema counts 3.0 as an integer, and NaN or Infinity parse as floats).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema

# The largest trace read: the schema allows a schedule of 10 MB and a message
# of 100 kB, and nothing else in a trace is large.
MAX_TRACE_BYTES = 16 << 20


class SchemaError(ValueError):
    """A document that does not follow its schema."""


def read_json(path: str, limit: int) -> Any:
    """The JSON document in the file at `path`, of at most `limit` bytes;
    SchemaError for one that is larger, not UTF-8, not JSON or nested too
    deeply to parse (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SchemaError(f"{path} is not a trace: it is larger than {limit} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SchemaError(f"{path} is not a trace: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"{path} is not a trace: not JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    except RecursionError:
        raise SchemaError(f"{path} is not a trace: JSON nested too deeply to read") from None


def first_float(doc: Any, where: str = "") -> str | None:
    """Where the first number of `doc` that is not an int is, as a field path;
    None if every number is an int."""
    if isinstance(doc, float):
        return where or "the document"
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        found = first_float(value, f"{where}/{key}" if where else str(key))
        if found is not None:
            return found
    return None


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


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
