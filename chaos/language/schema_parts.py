"""JSON Schema fragments for the language's value types, shared by every
part of the scenario schema (chaos.scenario.schema and each step kind's)."""

from __future__ import annotations

from typing import Any

VARIABLE = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"}
"""`${NAME}` stands for a value of any type until the loader substitutes it."""
DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"}, VARIABLE],
            "description": "seconds, or a text like 30s, 500ms, 2m"}
SIZE = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}], "description": "bytes, or a text like 5MB, 512KiB"}
COMPARISON = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\s*(==|>=|<=|!=|>|<)?\s*\d+(\.\d+)?\s*$"}, VARIABLE],
              "description": "an exact count, or a comparison like '>= 3'"}
IMAGE = {"type": "string", "description": "a Docker Hub image reference, e.g. alpine:3.19 or acme/app:1"}
STEP_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
NAMES = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def closed_object(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "") -> dict[str, Any]:
    """An object with exactly these properties."""
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def or_variable(schema: dict[str, Any]) -> dict[str, Any]:
    """A value of `schema`, or a `${NAME}` to be substituted."""
    if schema.get("type") == "string" or not schema:
        return schema
    return {"anyOf": [schema, VARIABLE]}
