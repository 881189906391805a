"""The JSON Schema of scenario files, for editors (VS Code's YAML extension
completes and checks files that point at schemas/scenario.schema.json).

The loader stays the authority (it also checks cross-references and gives
file:line errors); the schema is built from the same constants and from each
step kind's own schema (chaos.steps), the fault section from the registered
fault kinds' parameter dataclasses, so the two cannot drift apart silently:
tests compare this with the committed file and validate every shipped
scenario against it.
"""

from __future__ import annotations

import json
from typing import Any

from chaos.language.expect import counts_schema, mirror_answer_schema
from chaos.language.schema_parts import (
    COMPARISON,
    DURATION,
    IMAGE,
    STEP_NAME,
    closed_object,
)
from chaos.language.seed_image import seed_image_schema
from chaos.scenario.loader import LAB_KEYS, SECTIONS, TARGET_KEYS, TOP_KEYS
from chaos.steps.parse import COMMON_KEYS
from chaos.steps.registry import kinds
from chaos.vocab.names import SERVED_BY

SCHEMA_ID = "https://hub-chaos.invalid/schemas/scenario.schema.json"


def _users() -> dict:
    return {"type": "array", "items": closed_object({"name": {"type": "string"}, "password": {"type": "string"}}, ("name", "password"))}


def _step() -> dict:
    expect = closed_object({
        "ok": {"type": "boolean"},
        "error": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "message": {"type": "string", "description": "a regular expression searched in the error message"},
        "served_by": {"enum": list(SERVED_BY)},
        "from_cache": {"type": "boolean"},
        "same_digest_as": STEP_NAME,
        "mirror": mirror_answer_schema(),
        "upstream": counts_schema(),
        "within": DURATION,
        "success_rate": COMPARISON,
    })
    common = {
        "name": STEP_NAME,
        "description": {"type": "string"},
        "expect": expect,
        "timeout": DURATION,
        "repeat": {"anyOf": [{"type": "integer", "minimum": 1},
                             closed_object({"times": {"type": "integer", "minimum": 1}, "duration": DURATION, "interval": DURATION})]},
    }
    assert set(common) == set(COMMON_KEYS)
    by_kind = {name: kind.schema() for name, kind in kinds().items()}
    extras: dict[str, Any] = {}
    for kind in kinds().values():
        extras.update(kind.extra_schema())
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {**common, **extras, **by_kind},
        "oneOf": [{"required": [name]} for name in by_kind],
    }


def scenario_schema() -> dict:
    steps = {"type": "array", "items": {"$ref": "#/$defs/step"}}
    lab = closed_object({
        "users": _users(),
        "images": {"type": "array", "items": {"anyOf": [IMAGE, seed_image_schema("ref")]}},
        "push_registry": {"type": "boolean"},
        "seed": {"type": "string"},
        "mirror": closed_object({
            "login": {"type": "string", "description": "a lab user: the mirror's own Hub credentials (proxy.username/password)"},
            "ttl": DURATION,
            "config": {"type": "string", "description": "your distribution config file, the base the lab overrides"},
        }),
    })
    target = closed_object({
        "mirror": {"type": "string"}, "control": {"type": "string"}, "proxy": {"type": "string"},
        "ca": {"type": "string"}, "storage": {"type": "string"}, "users": _users(),
        "live": {"type": "boolean", "description": "allow the real Docker Hub (no fault proxy in front of it)"},
        "private": {"type": "array", "items": {"type": "string"}},
    }, ("mirror", "control"))
    assert set(lab["properties"]) == set(LAB_KEYS) and set(target["properties"]) == set(TARGET_KEYS)
    properties = {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$"}},
        "variables": {"type": "object", "additionalProperties": {"anyOf": [
            {"type": ["string", "number", "boolean", "null"]},
            closed_object({"default": {"type": ["string", "number", "boolean", "null"]}, "secret": {"type": "boolean"}}),
        ]}},
        "defaults": closed_object({"timeout": DURATION}),
        "lab": lab,
        "target": target,
        **{section: steps for section in SECTIONS},
    }
    properties["steps"] = {**steps, "minItems": 1}
    assert set(properties) == set(TOP_KEYS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hub-chaos scenario",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "steps"],
        "properties": properties,
        "$defs": {"step": _step()},
    }


def schema_json() -> str:
    return json.dumps(scenario_schema(), indent=2, sort_keys=True) + "\n"
