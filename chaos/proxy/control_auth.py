"""The control API's bearer token: read from a file, compared in constant time.

The API changes what the proxy does to every client's traffic, so beyond
loopback it must not answer strangers. The token comes from a file
(`hub_control_token_file`), never from the command line, where `ps` and
mitmweb's options page would show it; it is never logged or echoed.
"""

from __future__ import annotations

import hmac
from pathlib import Path

MIN_TOKEN_CHARS = 16
SCHEME = "bearer"


def read_token(path: str) -> bytes:
    """The token in the file at `path`, stripped; ValueError saying why it is unusable
    (the message never contains the file's content)."""
    try:
        token = Path(path).expanduser().read_bytes().strip()
    except OSError as err:
        raise ValueError(f"cannot read it: {err.strerror}") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"it holds {len(token)} characters; a token needs at least {MIN_TOKEN_CHARS}")
    if any(byte < 0x21 or byte > 0x7E for byte in token):
        raise ValueError("the token must be printable ASCII without spaces (it travels in an HTTP header)")
    return token


def authorized(header: str | None, token: bytes) -> bool:
    """Whether an Authorization header value carries `token` ("Bearer <token>")."""
    if not header:
        return False
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != SCHEME:
        return False
    # compare_digest: how long the comparison takes says nothing about the token.
    return hmac.compare_digest(presented.strip().encode("latin-1", "replace"), token)
