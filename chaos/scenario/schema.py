"""The JSON Schema of scenario files, for editors (VS Code's YAML extension
completes and checks files that point at schemas/scenario.schema.json).

The loader stays the authority (it also checks cross-references and gives
file:line errors); the schema is built from the same constants, and the fault
section from the registered fault kinds' parameter dataclasses, so the two
cannot drift apart silently: tests compare this with the committed file and
validate every shipped scenario against it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from chaos.scenario.expect import ENDPOINT_KINDS
from chaos.clients.engines import ENGINES
from chaos.scenario.steps import CHECK_KEYS, COMPONENTS

SCHEMA_ID = "https://hub-chaos.invalid/schemas/scenario.schema.json"
# `${NAME}` stands for a value of any type until the loader substitutes it.
_VARIABLE = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"}


def _or_variable(schema: dict) -> dict:
    if schema.get("type") == "string" or not schema:
        return schema
    return {"anyOf": [schema, _VARIABLE]}

_DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"}, _VARIABLE],
             "description": "seconds, or a text like 30s, 500ms, 2m"}
_SIZE = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}], "description": "bytes, or a text like 5MB, 512KiB"}
_COMPARISON = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\s*(==|>=|<=|!=|>|<)?\s*\d+(\.\d+)?\s*$"}, _VARIABLE],
               "description": "an exact count, or a comparison like '>= 3'"}
_IMAGE = {"type": "string", "description": "a Docker Hub image reference, e.g. alpine:3.19 or acme/app:1"}
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}


def _obj(properties: dict, required: tuple[str, ...] = (), description: str = "") -> dict:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def _seed_image(ref_key: str) -> dict:
    return _obj({
        ref_key: _IMAGE,
        "size": _SIZE,
        "private": {"type": "boolean"},
        "readers": {"type": "array", "items": {"type": "string"}},
        "layers": {"type": "integer", "minimum": 1, "maximum": 16},
        "platforms": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        **({"seed": {"type": "string", "description": "new content for the tag"}} if ref_key == "image" else {}),
    }, (ref_key,))


def _users() -> dict:
    return {"type": "array", "items": _obj({"name": {"type": "string"}, "password": {"type": "string"}}, ("name", "password"))}


def _counts() -> dict:
    return {"type": "object", "additionalProperties": False, "properties": {k: _COMPARISON for k in ENDPOINT_KINDS}}


def _check() -> dict:
    repos = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    props = {
        "cached": repos, "not_cached": repos,
        "storage_unchanged_since": _NAME, "catalog_unchanged_since": _NAME, "storage_grew_since": _NAME,
        "tap": _obj({"since": {"type": "string"}, "counts": _counts()}, ("counts",)),
    }
    assert set(props) == set(CHECK_KEYS)
    return _obj(props)


def _param_schema(hint: Any) -> dict:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_param_schema(h) for h in typing.get_args(hint) if h is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}}.get(hint, {})


def _fault() -> dict:
    from chaos.faults.registry import kinds

    # Only the shipped kinds: a kind registered at run time (a plugin, a test)
    # must not change the committed schema.
    shipped = {name: kind for name, kind in kinds().items() if kind.__module__.startswith("chaos.faults.")}
    variants = []
    for name, kind in sorted(shipped.items()):
        hints = typing.get_type_hints(kind.Params)
        params = {f.name: _or_variable(_param_schema(hints[f.name])) for f in dataclasses.fields(kind.Params)}
        required = [f.name for f in dataclasses.fields(kind.Params)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        variants.append({
            "if": {"properties": {"kind": {"const": name}}},
            "then": {"properties": {"params": {**_obj(params), **({"required": required} if required else {})}}},
        })
    return {
        "type": "object",
        "required": ["name", "kind"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"},
            "kind": {"enum": sorted(shipped)},
            "params": {"type": "object"},
            "match": {"type": "object"},
            "trigger": {"type": "object"},
            "ttl_s": {"type": "number", "exclusiveMinimum": 0},
            "expires_at": {"type": "number"},
        },
        "allOf": variants,
    }


def _step() -> dict:
    expect = _obj({
        "ok": {"type": "boolean"},
        "error": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "message": {"type": "string", "description": "a regular expression searched in the error message"},
        "served_by": {"enum": ["mirror", "hub"]},
        "from_cache": {"type": "boolean"},
        "same_digest_as": _NAME,
        "upstream": _counts(),
        "within": _DURATION,
        "success_rate": _COMPARISON,
    })
    kinds = {
        "pull": {"anyOf": [_IMAGE, {"type": "array", "items": _IMAGE, "minItems": 1}]},
        "push": _obj({"image": _IMAGE, "to": {"enum": ["mirror", "hub", "push-registry"]}, "size": _SIZE, "login": {"type": "string"}}, ("image",)),
        "check": _check(),
        "fault": _fault(),
        "clear": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "wait": {"anyOf": [_DURATION, _obj({"until": _check(), "interval": _DURATION}, ("until",))]},
        "restart": {"enum": list(COMPONENTS)},
        "publish": _seed_image("image"),
    }
    common = {
        "name": _NAME,
        "description": {"type": "string"},
        "expect": expect,
        "timeout": _DURATION,
        "repeat": {"anyOf": [{"type": "integer", "minimum": 1}, _obj({"times": {"type": "integer", "minimum": 1}, "duration": _DURATION, "interval": _DURATION})]},
        "login": {"type": "string"},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
        "engine": {"enum": list(ENGINES)},
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {**common, **kinds},
        "oneOf": [{"required": [kind]} for kind in kinds],
    }


def scenario_schema() -> dict:
    steps = {"type": "array", "items": {"$ref": "#/$defs/step"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hub-chaos scenario",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "steps"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$"}},
            "variables": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
            "defaults": _obj({"timeout": _DURATION}),
            "lab": _obj({
                "users": _users(),
                "images": {"type": "array", "items": {"anyOf": [_IMAGE, _seed_image("ref")]}},
                "push_registry": {"type": "boolean"},
                "seed": {"type": "string"},
            }),
            "target": _obj({
                "mirror": {"type": "string"}, "control": {"type": "string"}, "proxy": {"type": "string"},
                "ca": {"type": "string"}, "storage": {"type": "string"}, "users": _users(),
            }, ("mirror", "control")),
            "steady_state": steps,
            "steps": {**steps, "minItems": 1},
            "rollback": steps,
        },
        "$defs": {"step": _step()},
    }


def schema_json() -> str:
    return json.dumps(scenario_schema(), indent=2, sort_keys=True) + "\n"
