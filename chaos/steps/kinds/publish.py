"""publish: change the hub mid-run: a new image, or a tag moved to new content
(`seed`), as a vendor publishing `latest` does (the embedded lab only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaos.errors import ChaosError
from chaos.language.fields import Ctx, known_keys, optional_str
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import SeedImage, Step
from chaos.language.seed_image import (
    SEED_IMAGE_KEYS,
    parse_seed_image,
    seed_image_schema,
)
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.registry import register


@dataclass(frozen=True)
class PublishAction:
    image: SeedImage
    content_seed: str  # a new seed moves the tag to new content


@register
class Publish(StepKind):
    name = "publish"
    needs_lab = True

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> PublishAction:
        value = node["publish"]
        if not isinstance(value, MarkedDict):
            raise ctx.fail(line, "publish: expected a mapping with image (and size, private, seed)")
        known_keys(ctx, value, ("image", *(k for k in SEED_IMAGE_KEYS if k != "ref"), "seed"), "publish")
        renamed = MarkedDict((("ref" if k == "image" else k), v) for k, v in value.items() if k != "seed")
        renamed.line = value.line
        renamed.key_lines = {("ref" if k == "image" else k): v for k, v in value.key_lines.items()}
        image = parse_seed_image(ctx, renamed, line)
        seed = optional_str(ctx, value, "seed") or f"published-at-line-{line}"
        return PublishAction(image=image, content_seed=seed)

    def schema(self) -> dict[str, Any]:
        return seed_image_schema("image")

    def describe(self, action: PublishAction) -> str:
        return f"publish {action.image.ref.familiar} to hub"

    def inputs(self, action: PublishAction) -> dict[str, Any]:
        return {"image": str(action.image.ref), "size_bytes": action.image.size_bytes, "seed": action.content_seed}

    def private_repositories(self, action: PublishAction) -> tuple[str, ...]:
        return (action.image.ref.repository,) if action.image.private else ()

    def run(self, step: Step, action: PublishAction, ctx: StepContext) -> Outcome:
        if ctx.lab is None:
            raise ChaosError("publish needs the embedded lab")
        started = time.monotonic()
        digest = ctx.lab.publish(action.image, action.content_seed)
        return Outcome.of(self.name, [ActionResult(ok=True, seconds=time.monotonic() - started, digest=digest,
                                                   facts={"image": str(action.image.ref)})])
