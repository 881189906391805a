"""An image the lab hub holds: under `lab.images` (seeded before the run) and
in a `publish` step (pushed during it)."""

from __future__ import annotations

import re
from typing import Any

from chaos.errors import quoted
from chaos.language.fields import (
    Ctx,
    a_list,
    known_keys,
    optional_bool,
    plain,
    reference,
    size,
    whole_number,
)
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import SeedImage
from chaos.language.schema_parts import IMAGE, SIZE, closed_object

SEED_IMAGE_KEYS = ("ref", "size", "private", "readers", "layers", "platforms")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/v[0-9]+)?$")


def parse_seed_image(ctx: Ctx, node: Any, line: int) -> SeedImage:
    if isinstance(node, str):
        node_dict = MarkedDict(ref=node)
        node_dict.line, node_dict.key_lines = line, {}
        node = node_dict
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "images: each image is a reference or a mapping with ref and size")
    known_keys(ctx, node, SEED_IMAGE_KEYS, "image")
    ref = reference(ctx, node, "ref")
    if ref.digest:
        raise ctx.fail(node.line_of("ref"), "images are named by tag, not digest")
    layers = whole_number(ctx, node.get("layers", 2), node.line_of("layers"), "layers", 1, 16)
    platforms = node.get("platforms", ["linux/amd64"])
    if isinstance(platforms, str):
        platforms = [platforms]
    if not isinstance(platforms, list) or not platforms or not all(isinstance(p, str) and _PLATFORM.match(p) for p in platforms):
        raise ctx.fail(node.line_of("platforms"), f"platforms: expected os/arch names like linux/amd64, got {quoted(plain(platforms))}")
    readers = a_list(ctx, node, "readers")
    if not all(isinstance(r, str) for r in readers):
        raise ctx.fail(node.line_of("readers"), "readers: expected a list of user names")
    return SeedImage(
        ref=ref,
        size_bytes=size(ctx, node, "size", default=2_000_000),
        private=optional_bool(ctx, node, "private") or False,
        readers=tuple(str(r) for r in readers),
        layers=layers,
        platforms=tuple(str(p) for p in platforms),
        loc=ctx.loc(line),
    )


def seed_image_schema(ref_key: str) -> dict[str, Any]:
    """JSON Schema of a seeded image; `publish` names its reference `image`, lab.images `ref`."""
    properties = {
        ref_key: IMAGE,
        "size": SIZE,
        "private": {"type": "boolean"},
        "readers": {"type": "array", "items": {"type": "string"}},
        "layers": {"type": "integer", "minimum": 1, "maximum": 16},
        "platforms": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    }
    if ref_key == "image":
        properties["seed"] = {"type": "string", "description": "new content for the tag"}
    return closed_object(properties, (ref_key,))
