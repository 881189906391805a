"""Engine error text -> registry error codes, the HTTP status an answer had,
and the message a Docker user would read.

Real engines report failures as text: dockerd's API error ("pull access denied
for ..."), skopeo's last log line ("initializing source ...: (Mirrors also
failed: [...]): docker.io/...: reading manifest ...: errors: denied: ...").
Expectations compare codes (UNAUTHORIZED, DENIED, MANIFEST_UNKNOWN,
TOOMANYREQUESTS, NETWORK, TIMEOUT...), never engine wording, so every engine's
text goes through `classify`. The text itself is kept verbatim in
PullResult.raw.

Order matters: a 429 body also says "unexpected status"; a denied pull also
says "unauthorized"; a timeout through a proxy also says "proxyconnect". The
first rule that matches wins, most specific first.
"""

from __future__ import annotations

import json
import re

from chaos.vocab.codes import (
    BAD_RESPONSE,
    BLOB_UNKNOWN,
    DENIED,
    DIGEST_MISMATCH,
    MANIFEST_UNKNOWN,
    NAME_UNKNOWN,
    NETWORK,
    TIMEOUT,
    TOOMANYREQUESTS,
    UNAUTHORIZED,
    UNKNOWN,
    UNSUPPORTED,
    errcode_text,
)
from chaos.vocab.reference import ImageReference

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (code, re.compile(pattern, re.IGNORECASE))
    for code, pattern in (
        (TOOMANYREQUESTS, r"toomanyrequests|too many requests|pull rate limit"),
        # Docker's TranslatePullError wording, and the registry's own code.
        (DENIED, r"pull access denied|requested access to the resource is denied|\bdenied:"),
        (UNAUTHORIZED, r"unauthorized|authentication required|incorrect username or password"),
        # distribution answers 405 with UNSUPPORTED only; containerd quotes the status alone.
        (UNSUPPORTED, r"(^|: )unsupported($|:)|operation is unsupported|405 Method Not Allowed"),
        # containerd: "failed to resolve reference ...: docker.io/library/x:1: not found" (every host 404).
        (MANIFEST_UNKNOWN, r"manifest unknown|manifest for .* not found|no matching manifest for"
                           r"|failed to resolve reference .*: not found$"),
        (NAME_UNKNOWN, r"name unknown|repository name not known"),
        (DIGEST_MISMATCH, r"verification failed|digest mismatch|does not match (the )?digest|digest did not match"
                          r"|unexpected commit (digest|size)"),
        (TIMEOUT, r"timeout|timed out|deadline exceeded|request canceled"),
        (
            NETWORK,
            r"connection refused|connection reset|broken pipe|\bEOF\b|bad gateway|proxyconnect"
            r"|no such host|network is unreachable|x509:|tls:",
        ),
        (BAD_RESPONSE, r"unexpected http status|received unexpected|internal server error|invalid character"
                       r"|unexpected end of json|failed with status code|unexpected status code|\(\d{3} [A-Z]"
                       r"|expected HTTP 206 from byte range request"),
    )
)

# skopeo (containers/image) names every mirror's failure before the primary's:
# "(Mirrors also failed: [m1: err1 m2: err2]): docker.io/...: err". The
# primary's (Hub's) error is what decides, as in dockerd, which reports only
# the last endpoint's error.
_MIRRORS_ALSO_FAILED = re.compile(r"\(Mirrors also failed: \[.*\]\):\s*", re.DOTALL)


def unquote_log_value(text: str) -> str:
    """A quoted value of a Go (logrus) log line, `msg="..."`, as plain text."""
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


def primary_error(text: str) -> str:
    """The part of an engine's error text about the last endpoint tried."""
    parts = _MIRRORS_ALSO_FAILED.split(text, maxsplit=1)
    return parts[-1].strip()


def classify(text: str) -> str:
    """The registry error code an engine's error text stands for (UNKNOWN if none fits)."""
    relevant = primary_error(text)
    for code, pattern in _RULES:
        if pattern.search(relevant):
            return code
    return UNKNOWN


_STATUS_IN_TEXT = re.compile(
    r"(?:HTTP status:|status code[^:]*:|unexpected status code [^:]*:|unexpected status:)\s*(\d{3})\b|\b(\d{3}) \(|: (\d{3}) [A-Z][a-z]"
)
_STATUS_OF_CODE = {
    MANIFEST_UNKNOWN: 404, BLOB_UNKNOWN: 404, NAME_UNKNOWN: 404,
    UNAUTHORIZED: 401, UNSUPPORTED: 405, TOOMANYREQUESTS: 429,
}


def answer_status(code: str, text: str) -> int | None:
    """The HTTP status of the answer an engine's error text is about: the one it
    quotes ("received unexpected HTTP status: 500 ...", "500 (Internal Server
    Error)"), else the one distribution always sends with that error code
    (manifest unknown: 404, unsupported: 405...); None when neither says
    (the network, or DENIED, which comes as 401 or 403)."""
    found = _STATUS_IN_TEXT.search(text or "")
    if found:
        return int(next(group for group in found.groups() if group))
    return _STATUS_OF_CODE.get(code)


def code_for_status(status: int, kind: str = "manifest") -> str | None:
    """The error code an answer with only a status stands for (a HEAD has no
    body; containerd logs statuses, not bodies), as distribution's codes map to
    statuses; kind is "manifest" or "blob". 5xx and anything unmapped are
    BAD_RESPONSE, as every client reads no error body outside 4xx."""
    if 200 <= status < 400:
        return None
    return {
        404: BLOB_UNKNOWN if kind == "blob" else MANIFEST_UNKNOWN,
        401: UNAUTHORIZED, 403: DENIED, 405: UNSUPPORTED, 429: TOOMANYREQUESTS,
    }.get(status, BAD_RESPONSE)


def docker_message(code: str, ref: ImageReference, text: str) -> str:
    """What `docker pull` prints for this failure, whichever engine met it, so a
    scenario's `message:` pattern holds for every engine. Registry denials and
    unknown manifests get Docker's translation (distribution/errors.go
    TranslatePullError); anything else is the engine's own text about the last
    endpoint."""
    relevant = primary_error(text)
    if relevant.startswith(("pull access denied", "manifest for ")):
        return relevant  # already Docker's wording (dockerd said it)
    name = ref.repository.removeprefix("library/")
    # containerd: "pull access denied, repository does not exist or may require authorization: ...".
    registry_answer = re.search(r"errors:|denied:|unauthorized:|manifest unknown|pull access denied, repository",
                                relevant, re.IGNORECASE)
    if code in (DENIED, UNAUTHORIZED) and registry_answer and "incorrect username" not in relevant:
        return (
            f"pull access denied for {name}, repository does not exist or may require "
            f"'docker login': {errcode_text(DENIED, 'requested access to the resource is denied')}"
        )
    if code == MANIFEST_UNKNOWN and "no matching manifest" not in relevant:
        return f"manifest for {ref.familiar} not found: {errcode_text(MANIFEST_UNKNOWN, 'manifest unknown')}"
    return relevant
