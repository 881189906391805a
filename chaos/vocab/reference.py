"""Image references, normalised the way the Docker CLI does.

`alpine` -> docker.io/library/alpine:latest; `acme/app@sha256:...` keeps its
digest. Only Docker Hub references are in scope: the tool simulates Hub, so a
reference naming another registry is rejected with a clear message rather than
silently pulled from Hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chaos.errors import BadReference, quoted
from chaos.vocab.hub import DOCKER_IO as HUB_DOMAIN
from chaos.vocab.hub import REFERENCE_ALIASES as _HUB_ALIASES

# Grammar from distribution/reference (reference.go), restricted to what Hub accepts.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class ImageReference:
    repository: str  # "library/alpine"
    tag: str | None  # "3.19"; None when pinned by digest only
    digest: str | None  # "sha256:..."

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def familiar(self) -> str:
        """The short form a user types and Docker prints: alpine:3.19, acme/app:1."""
        name = self.repository.removeprefix("library/")
        if self.digest:
            return f"{name}@{self.digest}"
        return f"{name}:{self.tag}"

    def __str__(self) -> str:
        return f"{HUB_DOMAIN}/{self.repository}" + (
            f"@{self.digest}" if self.digest else f":{self.tag}"
        )


def parse_reference(text: str) -> ImageReference:
    """Parse a Docker Hub image reference; raise BadReference naming the problem."""
    original = text
    if not isinstance(text, str) or not text.strip():
        raise BadReference(f"invalid image reference {quoted(original)}: empty")
    text = text.strip()
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise BadReference(
                f"invalid image reference {quoted(original)}: digest must be sha256:<64 hex digits>"
            )
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise BadReference(f"invalid image reference {quoted(original)}: bad tag {quoted(tag)}")
    parts = text.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if parts[0] not in _HUB_ALIASES:
            raise BadReference(
                f"invalid image reference {quoted(original)}: registry {quoted(parts[0])} is not Docker Hub"
            )
        parts = parts[1:]
    path = "/".join(parts)
    if not _PATH.match(path):
        raise BadReference(
            f"invalid image reference {quoted(original)}: repository name must be lowercase "
            "letters, digits and separators (., _, __, -) in /-separated parts"
        )
    if len(parts) == 1:
        path = f"library/{path}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(repository=path, tag=tag, digest=digest)
