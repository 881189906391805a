"""Talk to the fault proxy's control API (chaos.proxy.control_api) from the runner and CLI."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity

from chaos.errors import EnvironmentProblem, UsageError, quoted
from chaos.faults.faultset import DuplicateFault, UnknownFault
from chaos.proxy.tap import Page


def control_base_url(text: str) -> str:
    """The control API's base URL from "http://HOST:PORT" or plain "HOST:PORT";
    UsageError for anything else (a path, another scheme, no port)."""
    text = text.strip().rstrip("/")
    url = text if "://" in text else f"http://{text}"
    if "@" in url.split("://", 1)[1].split("/", 1)[0]:
        # Not echoed: whatever precedes the @ is a credential.
        raise UsageError("control API address: no user or password in it (user:password@...); the API takes a token")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or port is None
        or parts.path
        or parts.query
        or parts.username
    ):
        raise UsageError(f"control API address {quoted(text)}: expected HOST:PORT or http://HOST:PORT")
    return url


class ControlClient:
    def __init__(self, base_url: str, timeout: float = 5.0, token: str | None = None):
        """base_url: "http://HOST:PORT" or "HOST:PORT" (UsageError otherwise).
        token: the bearer token of a control API started with hub_control_token_file."""
        self.base_url = control_base_url(base_url)
        self.timeout = timeout
        self._session = requests.Session()
        # The lab exports HTTPS_PROXY for the mirror; the control API must never go through it.
        self._session.trust_env = False
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def list(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Activate a fault; returns it as stored (with expires_at). DuplicateFault if the name exists."""
        return self._call("POST", "/faults", spec)

    def update(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Replace an active fault; UnknownFault if there is none by that name."""
        return self._call("PUT", f"/faults/{name}", spec)

    def remove(self, name: str) -> None:
        self._call("DELETE", f"/faults/{name}")

    def reset(self) -> int:
        """Remove every fault; returns how many there were."""
        return self._call("DELETE", "/faults")["removed"]

    def events(self, after: int = 0, limit: int = 1000) -> Page:
        body = self._call("GET", f"/events?after={int(after)}&limit={int(limit)}")
        return Page(body["events"], body["next"], body["dropped"])

    def in_flight_requests(self) -> list[dict[str, Any]]:
        """The requests seen and not yet in the tap, oldest first (GET /inflight)."""
        return self._call("GET", "/inflight")["requests"]

    def metrics(self) -> str:
        """The Prometheus text exposition of GET /metrics."""
        url = self.base_url + "/metrics"
        try:
            response = self._session.get(url, timeout=self.timeout)
        except requests.RequestException as err:
            raise EnvironmentProblem(f"control API at {self.base_url} unreachable: {err}") from None
        if not response.ok:
            raise EnvironmentProblem(f"control API GET /metrics failed: HTTP {response.status_code}")
        return response.text

    def wait_ready(self, deadline_s: float) -> dict[str, Any]:
        """Poll /healthz until it answers or `deadline_s` passes (EnvironmentProblem)."""
        try:
            for attempt in tenacity.Retrying(
                stop=tenacity.stop_after_delay(deadline_s),
                wait=tenacity.wait_fixed(0.1),
                retry=tenacity.retry_if_exception_type(EnvironmentProblem),
                reraise=True,
            ):
                with attempt:
                    return self.health()
        except EnvironmentProblem as err:
            raise EnvironmentProblem(
                f"control API at {self.base_url} not ready after {deadline_s:g} s: {err}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise EnvironmentProblem(f"control API at {self.base_url} unreachable: {err}") from None
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.ok and payload is not None:
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        message = message or f"HTTP {response.status_code} {response.text[:200]!r}"
        if response.status_code == 409:
            raise DuplicateFault(message)
        if response.status_code == 404:
            raise UnknownFault(message)
        if response.status_code == 401:
            raise UsageError(f"control API at {self.base_url}: {message}")
        if 400 <= response.status_code < 500:
            raise UsageError(message)
        raise EnvironmentProblem(f"control API {method} {path} failed: {message}")
