"""Put synthetic images into the lab hub, as their publisher would.

The seeder talks to the hub registry directly on loopback (not through the
fault proxy, so seeding never shows up in the tap) with a token it signs
itself: the publisher's push rights, not any lab user's. Each image it
publishes is logged at INFO on this module's logger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import requests

from chaos.images.push import push_image
from chaos.images.synth import build_image, build_index
from chaos.lab.tokens import TokenSigner
from chaos.language.model import SeedImage
from chaos.vocab.units import human_bytes

PUBLISHER = "hub-chaos-publisher"
log = logging.getLogger(__name__)


class Seeder:
    def __init__(self, hub_url: str, signer: TokenSigner, *, seed: str):
        """seed: what the synthetic content derives from (same seed, same digests)."""
        self.hub_url = hub_url
        self.signer = signer
        self.seed = seed
        self.session = requests.Session()
        self.session.trust_env = False

    def seed_all(self, images: Iterable[SeedImage]) -> dict[str, str]:
        """Build and push every image; returns reference -> manifest digest."""
        digests = {}
        for image in images:
            digests[str(image.ref)] = self.publish(image)
        return digests

    def publish(self, image: SeedImage) -> str:
        ref = image.ref
        log.info("seeding hub with %s (%s, %s)", ref.familiar, human_bytes(image.size_bytes), ", ".join(image.platforms))
        if len(image.platforms) > 1:
            content = build_index(ref.repository, ref.tag, image.size_bytes, seed=self.seed, layers=image.layers, platforms=image.platforms)
        else:
            content = build_image(ref.repository, ref.tag, image.size_bytes, seed=self.seed, layers=image.layers, platform=image.platforms[0])
        token = self.signer.sign(PUBLISHER, [{"type": "repository", "name": ref.repository, "actions": ["pull", "push"]}])
        return push_image(
            self.hub_url, ref.repository, ref.tag, content,
            session=self.session, headers={"Authorization": f"Bearer {token}"}, timeout=60.0,
        )
