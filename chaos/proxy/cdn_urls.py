"""The blob CDN's URL contract: what a good CDN URL is, and how it is signed.

Hub answers a blob GET with `307 Temporary Redirect` to a signed, expiring URL
on its CDN. The fault proxy's CdnRedirect addon mints such URLs for the lab
hub; the lab's CDN (chaos.lab.cdn_service) checks them. Both import this
module, so the two sides cannot disagree.

    /registry-v2/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data?verify=<expires>-<signature>

`verify` has the shape of Hub's (Cloudflare token authentication): a unix time,
a dash, and an HMAC-SHA256 of the path and that time under a shared secret.
Here the time is the expiry, so a URL can be neither forged nor used forever.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path
from urllib.parse import parse_qs

from chaos.errors import UsageError

URL_TTL_S = 20 * 60  # what the redirecting addon grants, like Hub's CDN links
MIN_SECRET_BYTES = 16
BLOB_PREFIX = "/registry-v2/docker/registry/v2/blobs/sha256/"
_DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")
_VERIFY = re.compile(r"^([0-9]{1,12})-([A-Za-z0-9_-]{43})$")  # 43 = unpadded base64 of 32 bytes


def blob_path(digest: str) -> str:
    """The CDN path of a sha256 blob; ValueError for any other digest."""
    match = _DIGEST.match(digest)
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    hex_digest = match.group(1)
    return f"{BLOB_PREFIX}{hex_digest[:2]}/{hex_digest}/data"


def sign(secret: bytes, path: str, expires: int) -> str:
    """The `verify` query value granting GET/HEAD of `path` until unix time `expires`."""
    mac = hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return f"{expires}-{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def signed_blob_url(
    host: str, digest: str, secret: bytes, *, now: float | None = None, ttl_s: int = URL_TTL_S
) -> str:
    """The https URL a blob GET is redirected to, valid for ttl_s seconds."""
    path = blob_path(digest)
    expires = int(now if now is not None else time.time()) + ttl_s
    return f"https://{host}{path}?verify={sign(secret, path, expires)}"


def check_signature(secret: bytes, path: str, query: str, now: float) -> str | None:
    """Why the URL (path and raw query) is not allowed, or None when it is."""
    values = parse_qs(query, keep_blank_values=True).get("verify", [])
    if len(values) != 1:
        return "missing verify parameter" if not values else "more than one verify parameter"
    match = _VERIFY.match(values[0])
    if match is None:
        return "malformed verify parameter"
    expires = int(match.group(1))
    if not hmac.compare_digest(values[0], sign(secret, path, expires)):
        return "bad signature"
    if expires < now:
        return f"expired {int(now - expires)}s ago"
    return None


def read_secret(path: Path) -> bytes:
    """The shared signing secret (the file's text, stripped); UsageError if unusable."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise UsageError(f"cannot read CDN secret file {str(path)!r}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(f"CDN secret file {str(path)!r} holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} needed")
    return secret
