"""Push synthetic images to a registry with the distribution HTTP API.

Blobs go up monolithically (POST an upload, PUT its content with ?digest=),
skipping any the repository already has, then the manifest goes up by tag. For
an index every child image is pushed by digest first, because a registry
refuses an index that points at manifests it does not hold.

Connection errors, timeouts and 5xx answers are retried a bounded number of
times, on steps that are safe to repeat: HEAD, PUT of a manifest, and a whole
blob upload (a new upload session each time; the blob is content-addressed so
a repeat cannot change anything). 4xx answers are never retried: they are the
registry's verdict (UNSUPPORTED from a pull-through cache, UNAUTHORIZED, ...),
and scenarios want to see them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import requests
import tenacity

from chaos.errors import ChaosError
from chaos.images.synth import Blob, SyntheticImage, SyntheticIndex
from chaos.vocab.codes import BAD_RESPONSE, DIGEST_MISMATCH, NETWORK, TIMEOUT

_RETRY_WAIT = tenacity.wait_exponential(multiplier=0.2, max=2.0)


class PushError(ChaosError):
    """A push that did not complete; `code` is a registry error code (UNSUPPORTED,
    UNAUTHORIZED, ...) or one of chaos.vocab.codes' NETWORK, TIMEOUT,
    DIGEST_MISMATCH, BAD_RESPONSE, or None when the registry gave none."""

    def __init__(self, summary: str, *, url: str, code: str | None, message: str):
        super().__init__(summary)
        self.url = url
        self.code = code
        # The registry's (or transport's) own words; str(error) has the full context.
        self.message = message
        self.summary = summary

    def __str__(self) -> str:
        return self.summary


class RegistryHTTPError(PushError):
    """The registry answered with a status outside 2xx."""

    def __init__(self, method: str, url: str, status: int, code: str | None, message: str):
        summary = f"{method} {url} -> {status}" + (f" {code}" if code else "") + f": {message}"
        super().__init__(summary, url=url, code=code, message=message)
        self.method = method
        self.status = status


class RegistryUnreachable(PushError):
    """No HTTP answer at all (refused, reset, timed out), after the retries."""


def push_image(
    base_url: str,
    repository: str,
    tag: str,
    image: SyntheticImage | SyntheticIndex,
    *,
    session: requests.Session | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
    attempts: int = 3,
) -> str:
    """Push `image` to `base_url` (e.g. "http://127.0.0.1:5000") as
    `repository:tag` and return the digest of the manifest (or index) pushed.

    `headers` are sent on every request (e.g. an Authorization bearer token).
    Without a `session`, a private one is used that ignores HTTP(S)_PROXY from
    the environment: the lab points those at the fault proxy, and seeding or
    push traffic must go straight to the URL given. Pass a session to choose.
    `timeout` bounds each connect and each read. `attempts` bounds tries per
    retryable step; pass 1 to see the first failure unretried.
    Raises RegistryHTTPError for a non-2xx answer, RegistryUnreachable when no
    answer came, PushError(code=DIGEST_MISMATCH) when the registry names a
    different digest for a manifest than the bytes sent.
    """
    own_session = session is None
    if own_session:
        session = requests.Session()
        session.trust_env = False
    pusher = _Pusher(
        base_url=base_url.rstrip("/"),
        repository=repository,
        session=session,
        headers=dict(headers or {}),
        timeout=timeout,
        progress=progress or (lambda _message: None),
        attempts=max(1, attempts),
    )
    try:
        if isinstance(image, SyntheticIndex):
            for child in image.images:
                pusher.push_single(child, child.digest)
            return pusher.put_manifest(image.index, tag)
        return pusher.push_single(image, tag)
    finally:
        if own_session:
            session.close()


class _Pusher:
    def __init__(self, *, base_url, repository, session, headers, timeout, progress, attempts):
        self.base_url = base_url
        self.repository = repository
        self.session = session
        self.headers = headers
        self.timeout = timeout
        self.progress = progress
        self.attempts = attempts

    def push_single(self, image: SyntheticImage, reference: str) -> str:
        for blob in image.blobs:
            self.ensure_blob(blob)
        return self.put_manifest(image.manifest, reference)

    def ensure_blob(self, blob: Blob) -> None:
        if self._retrying(self._blob_exists, blob):
            self.progress(f"blob {blob.digest} already present")
            return
        self._retrying(self._upload_blob, blob)
        self.progress(f"pushed blob {blob.digest} ({blob.size} bytes)")

    def put_manifest(self, manifest: Blob, reference: str) -> str:
        url = self._url(f"manifests/{reference}")
        response = self._retrying(
            self._request,
            "PUT",
            url,
            data=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != manifest.digest:
            raise PushError(
                f"PUT {url}: registry stored digest {answered}, expected {manifest.digest}",
                url=url,
                code=DIGEST_MISMATCH,
                message=f"registry stored digest {answered}, expected {manifest.digest}",
            )
        self.progress(f"pushed manifest {self.repository}:{reference} ({manifest.digest})")
        return manifest.digest

    def _blob_exists(self, blob: Blob) -> bool:
        url = self._url(f"blobs/{blob.digest}")
        response = self._send("HEAD", url)
        # Like `docker push`: only a 2xx proves the blob is there. Anything else
        # (404, or a pull-through cache failing to ask its upstream: 500) means
        # "upload it", and the upload then meets the registry's real answer
        # (a mirror's 405 UNSUPPORTED).
        return 200 <= response.status_code < 300

    def _upload_blob(self, blob: Blob) -> None:
        start_url = self._url("blobs/uploads/")
        started = self._request("POST", start_url)
        location = started.headers.get("Location")
        if not location:
            raise RegistryHTTPError(
                "POST",
                start_url,
                started.status_code,
                BAD_RESPONSE,
                "upload started without a Location header",
            )
        self._request(
            "PUT",
            upload_url(start_url, location, blob.digest),
            data=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        response = self._send(method, url, **kwargs)
        _raise_for_status(method, url, response)
        return response

    def _send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs):
        try:
            return self.session.request(
                method,
                url,
                headers={**self.headers, **(headers or {})},
                timeout=self.timeout,
                allow_redirects=True,
                **kwargs,
            )
        except requests.Timeout as error:
            raise RegistryUnreachable(
                f"{method} {url}: no answer within {self.timeout:g} s",
                url=url,
                code=TIMEOUT,
                message=str(error),
            ) from error
        except requests.ConnectionError as error:
            raise RegistryUnreachable(
                f"{method} {url}: {error}", url=url, code=NETWORK, message=str(error)
            ) from error

    def _retrying(self, step, *args, **kwargs):
        retryer = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=_RETRY_WAIT,
            retry=tenacity.retry_if_exception(_is_transient),
            reraise=True,
        )
        return retryer(step, *args, **kwargs)

    def _url(self, suffix: str) -> str:
        return f"{self.base_url}/v2/{self.repository}/{suffix}"


def upload_url(request_url: str, location: str, digest: str) -> str:
    """Where to PUT the blob: the Location of the upload session, resolved
    against the request (registries answer relative or absolute), with
    digest=... added to whatever query the registry put there (distribution
    carries its upload state in `_state=`)."""
    resolved = urljoin(request_url, location)
    separator = "&" if urlsplit(resolved).query else "?"
    return f"{resolved}{separator}digest={digest}"


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, RegistryUnreachable):
        return True
    return isinstance(error, RegistryHTTPError) and error.status >= 500


def _raise_for_status(method: str, url: str, response: requests.Response) -> None:
    if 200 <= response.status_code < 300:
        return
    code, message = _parse_error_body(response)
    raise RegistryHTTPError(method, url, response.status_code, code, message)


def _parse_error_body(response: requests.Response) -> tuple[str | None, str]:
    """(first errors[].code, its message) from a distribution error body,
    falling back to the start of the body or the HTTP reason."""
    text = response.text if response.content else ""
    try:
        errors = json.loads(text).get("errors") or []
        first = errors[0]
        code = first.get("code")
        message = first.get("message") or code or ""
        return (str(code) if code else None), str(message)
    except (ValueError, AttributeError, IndexError, TypeError):
        snippet = text.strip()[:200]
        return None, snippet or response.reason or f"HTTP {response.status_code}"
