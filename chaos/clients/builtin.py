"""The builtin engine: pulls an image the way a Docker 20.10 daemon configured
with `registry-mirrors` does (distribution/pull.go, pull_v2.go and
registry/service_v2.go), without needing a daemon.

Endpoints are tried in order: the mirror, then Docker Hub. For a mirror the
daemon's continueOnError is always true, so any mirror failure (refused,
timeout, 404, 500, a corrupt layer...) falls back to Hub; the error reported
when every endpoint fails is the last one's, Hub's. Layers come from the
endpoint that served the manifest, streamed and verified, then thrown away:
only bytes and digests matter here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass

import requests
import tenacity

from chaos import __version__
from chaos.clients.registry_http import (
    CHUNK_BYTES,
    EndpointClient,
    RegistryFailure,
    network_failure,
    read_bounded,
)
from chaos.vocab.codes import BAD_RESPONSE, DENIED, DIGEST_MISMATCH, MANIFEST_UNKNOWN, NAME_UNKNOWN, UNAUTHORIZED, errcode_text
from chaos.vocab.hub import REGISTRY_URL
from chaos.vocab.names import HUB, MIRROR
from chaos.vocab.results import Attempt, PullResult
from chaos.errors import UsageError
from chaos.vocab.reference import ImageReference

# Says who is pulling in registry and proxy logs.
log = logging.getLogger(__name__)
USER_AGENT = f"hub-chaos/{__version__} (builtin: docker-daemon mirror emulation)"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
ACCEPT = ", ".join(IMAGE_TYPES + INDEX_TYPES)

MAX_MANIFEST_BYTES = 4 << 20  # distribution's own limit on manifest bodies
PROGRESS_INTERVAL_S = 0.25
_DIGEST_RE = re.compile(r"^(sha256|sha384|sha512):[a-f0-9]+$")
# Docker's platform normalisation (containerd platforms.Normalize), the part that matters.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: expected os/architecture[/variant]")
        return cls(*parts).normalized()

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant
        if arch == "arm64" and variant in ("", "8"):
            variant = "v8"
        return Platform(self.os, arch, variant)

    def accepts(self, other: Platform) -> bool:
        other = other.normalized()
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not self.variant or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


@dataclass(frozen=True)
class Manifest:
    digest: str  # sha256 of the bytes as received
    is_index: bool
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    entries: tuple[tuple[Descriptor, Platform], ...] = ()


class BuiltinClient:
    """Pull with Docker-daemon mirror semantics; never raises for network or
    registry failures, they come back as PullResult(ok=False, ...).

    On success served_by and digest name the endpoint that delivered the image
    and its (platform) manifest digest; on failure both are None, error_code
    and message are the last endpoint's (Hub's), and attempts tells what each
    endpoint said."""

    def __init__(
        self,
        *,
        mirror_url: str | None,
        hub_url: str = REGISTRY_URL,
        proxy_url: str | None = None,
        ca_file: str | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 30.0,
        platform: str = "linux/amd64",
        blob_attempts: int = 3,
    ):
        """mirror_url is reached directly, as Go programs never proxy loopback;
        hub_url, its token realm and its redirects go through proxy_url (None:
        direct) and trust ca_file (None: the system's CAs). credentials are the
        user's `docker login` and only ever go to Hub and its token realm.
        timeout bounds each connect and each read. A blob download failing on
        the network or with a 5xx is tried blob_attempts times in all, as the
        daemon's download manager retries layers."""
        if timeout <= 0:
            raise UsageError(f"timeout must be positive, got {timeout!r}")
        if blob_attempts < 1:
            raise UsageError(f"blob_attempts must be at least 1, got {blob_attempts!r}")
        self.mirror_url = mirror_url.rstrip("/") if mirror_url else None
        self.hub_url = hub_url.rstrip("/")
        self.proxy_url = proxy_url
        self.ca_file = ca_file
        self.credentials = credentials
        self.timeout = timeout
        self.platform = Platform.parse(platform)
        self.blob_attempts = blob_attempts

    def pull(self, ref: ImageReference) -> PullResult:
        started = time.monotonic()
        run = _PullRun(ref)
        attempts: list[Attempt] = []
        failure: RegistryFailure | None = None
        with requests.Session() as session:
            # The caller's HTTPS_PROXY, NO_PROXY, .netrc or REQUESTS_CA_BUNDLE
            # must never decide where a chaos experiment's traffic goes.
            session.trust_env = False
            # Digests are over the bytes as stored: no transparent decompression.
            session.headers["Accept-Encoding"] = "identity"
            session.headers["User-Agent"] = USER_AGENT
            for name, endpoint in self._endpoints(session):
                try:
                    digest = self._pull_from(endpoint, run)
                except RegistryFailure as error:
                    failure = error
                    message = docker_message(error, ref)
                    attempts.append(
                        Attempt(name, endpoint.base_url, False, error.status, error.code, message)
                    )
                    run.say(f"{run.label} {name} failed: {message}")
                    continue
                attempts.append(Attempt(name, endpoint.base_url, True, 200))
                return PullResult(
                    image=str(ref),
                    ok=True,
                    served_by=name,
                    digest=digest,
                    bytes=run.bytes,
                    seconds=time.monotonic() - started,
                    attempts=tuple(attempts),
                )
        assert failure is not None  # the hub endpoint is always tried
        return PullResult(
            image=str(ref),
            ok=False,
            error_code=failure.code,
            message=attempts[-1].message,
            bytes=run.bytes,
            seconds=time.monotonic() - started,
            attempts=tuple(attempts),
            raw=failure.raw,
        )

    def _endpoints(self, session: requests.Session):
        if self.mirror_url:
            yield MIRROR, EndpointClient(
                session,
                self.mirror_url,
                proxy_url=None,
                verify=True,
                credentials=None,
                timeout=self.timeout,
            )
        yield HUB, EndpointClient(
            session,
            self.hub_url,
            proxy_url=self.proxy_url,
            verify=self.ca_file or True,
            credentials=self.credentials,
            timeout=self.timeout,
        )

    def _pull_from(self, endpoint: EndpointClient, run: _PullRun) -> str:
        """Pull everything from one endpoint; return the platform manifest digest."""
        ref = run.ref
        endpoint.ping()
        expected = Descriptor(ref.digest, -1) if ref.digest else None  # size unknown
        manifest = _fetch_manifest(endpoint, run, ref.reference, expected)
        if manifest.is_index:
            chosen = next(
                (entry for entry, platform in manifest.entries if self.platform.accepts(platform)),
                None,
            )
            if chosen is None:
                raise RegistryFailure(
                    MANIFEST_UNKNOWN,
                    f"no matching manifest for {self.platform} in the manifest list entries",
                )
            manifest = _fetch_manifest(endpoint, run, chosen.digest, chosen)
            if manifest.is_index:
                raise RegistryFailure(
                    BAD_RESPONSE, f"manifest list entry {chosen.digest} is itself a manifest list"
                )
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.blob_attempts),
            wait=tenacity.wait_exponential(multiplier=0.5, max=2.0),
            retry=tenacity.retry_if_exception(
                lambda error: isinstance(error, RegistryFailure) and error.retriable
            ),
            reraise=True,
        )
        blobs = [("config", manifest.config)] + [("layer", layer) for layer in manifest.layers]
        for kind, blob in blobs:
            for attempt in retrying:
                with attempt:
                    _fetch_blob(endpoint, run, kind, blob)
        return manifest.digest


class _PullRun:
    """What one pull accumulates across endpoints: bytes and throttled progress."""

    def __init__(self, ref: ImageReference):
        self.ref = ref
        self.label = f"{ref.repository}:{ref.tag}" if ref.tag else f"{ref.repository}@{ref.digest}"
        self.scope = f"repository:{ref.repository}:pull"
        self.bytes = 0
        # Quick pulls stay quiet; a pull still running after the interval reports.
        self._last_report = time.monotonic()

    def say(self, line: str) -> None:
        log.info(line)

    def blob_progress(self, kind: str, digest: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_INTERVAL_S:
            self._last_report = now
            log.info(
                f"{self.label} {kind} {digest[:13]} {done / 1e6:.1f}/{max(total, 0) / 1e6:.1f} MB"
            )


def _fetch_manifest(
    endpoint: EndpointClient, run: _PullRun, reference: str, expected: Descriptor | None
) -> Manifest:
    response = endpoint.get(
        f"/v2/{run.ref.repository}/manifests/{reference}",
        scope=run.scope,
        accept=ACCEPT,
        not_found_code=MANIFEST_UNKNOWN,
    )
    try:
        body = read_bounded(response, MAX_MANIFEST_BYTES, proxy_url=endpoint.proxy_url)
    finally:
        response.close()
    run.bytes += len(body)
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    announced = response.headers.get("Docker-Content-Digest", "").strip()
    if announced and _digest_of(body, announced) != announced:
        raise RegistryFailure(
            DIGEST_MISMATCH,
            f"manifest verification failed for digest {announced}: the bytes received hash to {actual}",
        )
    if expected is not None:
        if _digest_of(body, expected.digest) != expected.digest or (
            expected.size >= 0 and expected.size != len(body)
        ):
            # Docker's wording for a manifest that does not match its digest.
            raise RegistryFailure(
                DIGEST_MISMATCH, f"image verification failed for digest {expected.digest}"
            )
    return parse_manifest(body, response.headers.get("Content-Type", ""), actual)


def _fetch_blob(endpoint: EndpointClient, run: _PullRun, kind: str, blob: Descriptor) -> None:
    """Stream one blob into a hash and nowhere else; never hold it in memory."""
    response = endpoint.get(
        f"/v2/{run.ref.repository}/blobs/{blob.digest}", scope=run.scope, not_found_code="BLOB_UNKNOWN"
    )
    algorithm = blob.digest.split(":", 1)[0]
    hasher = hashlib.new(algorithm)
    received = 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            received += len(chunk)
            run.bytes += len(chunk)
            if received > blob.size:
                break  # longer than its descriptor: no need to read the rest
            hasher.update(chunk)
            run.blob_progress(kind, blob.digest, received, blob.size)
    except requests.RequestException as exc:
        raise network_failure(
            exc, response.url, proxy_url=endpoint.proxy_url, mid_body=True
        ) from exc
    finally:
        response.close()
    if received != blob.size or f"{algorithm}:{hasher.hexdigest()}" != blob.digest:
        what = "image config" if kind == "config" else "filesystem layer"
        raise RegistryFailure(
            DIGEST_MISMATCH,
            f"{what} verification failed for digest {blob.digest}",
            raw=f"{blob.digest}: received {received} bytes of {blob.size}",
        )


def _digest_of(body: bytes, like: str) -> str | None:
    """`body`'s digest with the algorithm `like` names; None if unsupported."""
    algorithm = like.split(":", 1)[0]
    if algorithm not in ("sha256", "sha384", "sha512"):
        return None
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def parse_manifest(body: bytes, content_type: str, digest: str) -> Manifest:
    """Parse an image manifest or an index; BAD_RESPONSE when it is neither."""
    try:
        document = json.loads(body)
    except ValueError:
        raise _bad_manifest("not JSON") from None
    if not isinstance(document, dict):
        raise _bad_manifest("not a JSON object")
    if document.get("schemaVersion") == 1:
        raise _bad_manifest("schema 1 manifests are not supported")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in IMAGE_TYPES + INDEX_TYPES:
        # Like distribution's UnmarshalManifest: trust the document when the
        # header is missing or generic (text/plain, application/json).
        media_type = document.get("mediaType") or (
            OCI_INDEX if "manifests" in document else OCI_MANIFEST
        )
    if media_type in INDEX_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _bad_manifest("index without a manifests list")
        parsed = []
        for entry in entries:
            platform = entry.get("platform") if isinstance(entry, dict) else None
            if not isinstance(platform, dict):
                continue  # not runnable (attestations and the like)
            parsed.append(
                (
                    _descriptor(entry),
                    Platform(
                        str(platform.get("os", "")).lower(),
                        str(platform.get("architecture", "")).lower(),
                        str(platform.get("variant", "") or "").lower(),
                    ),
                )
            )
        return Manifest(digest=digest, is_index=True, entries=tuple(parsed))
    if media_type not in IMAGE_TYPES:
        raise _bad_manifest(f"unsupported media type {media_type!r}")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise _bad_manifest("image manifest without a layers list")
    return Manifest(
        digest=digest,
        is_index=False,
        config=_descriptor(document.get("config")),
        layers=tuple(_descriptor(layer) for layer in layers),
    )


def _descriptor(item) -> Descriptor:
    if not isinstance(item, dict):
        raise _bad_manifest("descriptor is not an object")
    digest, size = item.get("digest"), item.get("size")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise _bad_manifest(f"bad descriptor digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad_manifest(f"bad descriptor size {size!r} for {digest}")
    return Descriptor(digest, size)


def _bad_manifest(why: str) -> RegistryFailure:
    return RegistryFailure(BAD_RESPONSE, f"invalid manifest: {why}")


def docker_message(failure: RegistryFailure, ref: ImageReference) -> str:
    """What `docker pull` prints for this failure (distribution/errors.go,
    TranslatePullError): registry denials become "pull access denied ...",
    unknown manifests "manifest for ... not found"."""
    if not failure.registry_error:
        return failure.message
    name = ref.repository.removeprefix("library/")
    if failure.insufficient_scope or failure.code in (DENIED, UNAUTHORIZED):
        reason = failure.registry_message if failure.code == DENIED else None
        return (
            f"pull access denied for {name}, repository does not exist or may require "
            f"'docker login': {errcode_text(DENIED, reason or 'requested access to the resource is denied')}"
        )
    if failure.code == MANIFEST_UNKNOWN:
        return f"manifest for {ref.familiar} not found: {failure.message}"
    if failure.code == NAME_UNKNOWN:
        return f"repository {name} not found: {failure.message}"
    return failure.message
