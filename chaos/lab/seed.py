"""Put synthetic images into the lab hub, as their publisher would.

The seeder talks to the hub registry directly on loopback (not through the
fault proxy, so seeding never shows up in the tap) with a token it signs
itself: the publisher's push rights, not any lab user's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import requests

from chaos.images.push import push_image
from chaos.images.synth import build_image, build_index
from chaos.lab.tokens import TokenSigner
from chaos.scenario.model import SeedImage

PUBLISHER = "hub-chaos-publisher"


def _human(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


class Seeder:
    def __init__(self, hub_url: str, signer: TokenSigner, *, seed: str, progress: Callable[[str], None]):
        self.hub_url = hub_url
        self.signer = signer
        self.seed = seed
        self.progress = progress
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
        self.progress(f"seeding hub with {ref.familiar} ({_human(image.size_bytes)}, {', '.join(image.platforms)})")
        if len(image.platforms) > 1:
            content = build_index(ref.repository, ref.tag, image.size_bytes, seed=self.seed, layers=image.layers, platforms=image.platforms)
        else:
            content = build_image(ref.repository, ref.tag, image.size_bytes, seed=self.seed, layers=image.layers, platform=image.platforms[0])
        token = self.signer.sign(PUBLISHER, [{"type": "repository", "name": ref.repository, "actions": ["pull", "push"]}])
        return push_image(
            self.hub_url, ref.repository, ref.tag, content,
            session=self.session, headers={"Authorization": f"Bearer {token}"}, timeout=60.0,
        )
