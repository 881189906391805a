"""http: Hub answers with an error status and a registry error body.

The request never goes upstream. Code, message and detail default to what
distribution (and so Hub) sends for the status and the endpoint: 404 is
MANIFEST_UNKNOWN for a manifest, BLOB_UNKNOWN for a blob, NAME_UNKNOWN
otherwise; 401 carries Hub's bearer challenge for the repository. A code or
message given in the params replaces the default; a code of its own also
empties `detail`, which described the default error.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http

from chaos.errors import quoted
from chaos.faults.hub_errors import default_error, endpoint_of, registry_error
from chaos.faults.kind import FaultKind, free_text
from chaos.faults.registry import register
from chaos.faults.spec import FaultSpecError
from chaos.vocab.codes import ERROR_CODE


@register
class HttpError(FaultKind):
    name = "http"

    @dataclass(frozen=True)
    class Params:
        status: int
        code: str | None = None  # UPPER_SNAKE registry error code
        message: str | None = free_text()
        retry_after_s: int | None = None  # adds Retry-After (whole seconds)

        def __post_init__(self) -> None:
            if not 400 <= self.status <= 599:
                raise FaultSpecError("params.status", f"must be an error status 400..599, got {self.status}")
            if self.code is not None and not ERROR_CODE.match(self.code):
                raise FaultSpecError(
                    "params.code", f"must be an UPPER_SNAKE error code such as UNAVAILABLE, got {quoted(self.code)}"
                )
            if self.message is not None and not self.message.strip():
                raise FaultSpecError("params.message", "must not be empty")

    def on_request(self, flow: http.HTTPFlow) -> bool:
        params = self.params
        code, message, detail = default_error(params.status, endpoint_of(flow))
        if params.code is not None and params.code != code:
            code, detail = params.code, None
        message = params.message or message
        headers = {}
        if params.retry_after_s is not None:
            headers["Retry-After"] = str(params.retry_after_s)
        flow.response = registry_error(flow, params.status, code, message, detail, headers)
        return True
