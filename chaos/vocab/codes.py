"""Error codes: distribution's (which Hub sends) with their messages, and the
tool's own for failures below the registry protocol.

Expectations compare codes (`error: DENIED`), never engine wording, so every
engine's failure is named with one of these.
"""

from __future__ import annotations

import re

# distribution's errcode registry (registry/api/errcode, registry/api/v2).
UNAUTHORIZED = "UNAUTHORIZED"
DENIED = "DENIED"
MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
BLOB_UNKNOWN = "BLOB_UNKNOWN"
NAME_UNKNOWN = "NAME_UNKNOWN"
TOOMANYREQUESTS = "TOOMANYREQUESTS"
UNSUPPORTED = "UNSUPPORTED"
UNAVAILABLE = "UNAVAILABLE"
UNKNOWN = "UNKNOWN"

# The tool's own: what happens before or below the registry protocol.
NETWORK = "NETWORK"  # refused, reset, EOF, proxy CONNECT refused
TIMEOUT = "TIMEOUT"  # no answer before the client's (or the step's) deadline
DIGEST_MISMATCH = "DIGEST_MISMATCH"  # content does not hash to its descriptor
BAD_RESPONSE = "BAD_RESPONSE"  # an answer that is not valid registry protocol
COMPONENT_FAILED = "COMPONENT_FAILED"  # a lab component would not (re)start
STEP_ERROR = "STEP_ERROR"  # the step could not act (a control API error, ...)

MESSAGES = {
    UNAUTHORIZED: "authentication required",
    DENIED: "requested access to the resource is denied",
    MANIFEST_UNKNOWN: "manifest unknown",
    BLOB_UNKNOWN: "blob unknown to registry",
    NAME_UNKNOWN: "repository name not known to registry",
    TOOMANYREQUESTS: "too many requests",
    UNSUPPORTED: "The operation is unsupported.",
    UNAVAILABLE: "service unavailable",
    UNKNOWN: "unknown error",
}
"""distribution's default message per code, for error bodies that name none."""

HUB_RATE_LIMIT_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by "
    "authenticating and upgrading: https://www.docker.com/increase-rate-limit"
)
"""What Hub's 429 says instead of the default message."""

ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
"""UPPER_SNAKE, as every distribution and OCI error code is spelt."""


def errcode_text(code: str, message: str) -> str:
    """distribution's errcode.Error.Error(): `manifest unknown: manifest unknown`."""
    return f"{code.lower().replace('_', ' ')}: {message}"
