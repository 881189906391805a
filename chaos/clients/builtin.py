"""The builtin engine: pulls an image the way a Docker 20.10 daemon configured
with `registry-mirrors` does (distribution/pull.go, pull_v2.go and
registry/service_v2.go), without needing a daemon.

Endpoints are tried in order: the mirror, then Docker Hub. For a mirror the
daemon's continueOnError is always true, so any mirror failure (refused,
404, 500, a corrupt layer...) falls back to Hub; the error reported when
every endpoint fails is the last one's, Hub's. Blobs come from the endpoint
that served the manifest, streamed and verified, then thrown away: only bytes
and digests matter here.

Time: the daemon's own limits and retry schedule (registry_http.DaemonTimings)
inside one budget for the whole pull, the caller's. A request the daemon
would wait for forever (a manifest whose answer never comes) is waited for
until the budget ends, and the pull then fails with TIMEOUT naming it;
nothing shorter than the budget depends on the budget.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass

import requests

from chaos import __version__
from chaos.clients.registry_http import (
    DOCKERD_20_10,
    DaemonTimings,
    EndpointClient,
    PullDeadline,
    RegistryFailure,
    Reply,
    daemon_like_session,
)
from chaos.errors import UsageError
from chaos.vocab.codes import (
    BAD_RESPONSE,
    BLOB_UNKNOWN,
    DENIED,
    DIGEST_MISMATCH,
    MANIFEST_UNKNOWN,
    NAME_UNKNOWN,
    TIMEOUT,
    TOOMANYREQUESTS,
    UNAUTHORIZED,
    UNSUPPORTED,
    errcode_text,
)
from chaos.vocab.hub import REGISTRY_URL
from chaos.vocab.names import HUB, MIRROR
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import Attempt, PullResult

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
    endpoint said (status, error code and the endpoint's own message)."""

    def __init__(
        self,
        *,
        mirror_url: str | None,
        hub_url: str = REGISTRY_URL,
        proxy_url: str | None = None,
        ca_file: str | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 120.0,
        platform: str = "linux/amd64",
        mirror_only: bool = False,
        timings: DaemonTimings = DOCKERD_20_10,
        blob_attempts: int | None = None,
    ):
        """mirror_url is reached directly, as Go programs never proxy loopback;
        hub_url, its token realm and its redirects go through proxy_url (None:
        direct) and trust ca_file (None: the system's CAs). credentials are the
        user's `docker login` and only ever go to Hub and its token realm.

        timeout is the whole pull's budget: past it the pull stops where it is
        (TIMEOUT, naming what it was waiting for) as a `docker pull` cancelled
        by its caller would. Inside it only the daemon's own limits apply
        (`timings`: dial, TLS handshake, ping and token limits, the blob retry
        schedule), so the same fault gives the same result whatever the budget,
        unless the budget ends the pull first.

        mirror_only: pull from the mirror alone, as from any registry (no
        fallback to Hub). blob_attempts: cap the attempts per blob (config and
        layers; None: the daemon's 5 and 6)."""
        if timeout <= 0:
            raise UsageError(f"timeout must be positive, got {timeout!r}")
        if blob_attempts is not None and blob_attempts < 1:
            raise UsageError(f"blob_attempts must be at least 1, got {blob_attempts!r}")
        if mirror_only and not mirror_url:
            raise UsageError("a pull from the mirror only needs a mirror")
        self.mirror_url = mirror_url.rstrip("/") if mirror_url else None
        self.hub_url = hub_url.rstrip("/")
        self.proxy_url = proxy_url
        self.ca_file = ca_file
        self.credentials = credentials
        self.timeout = timeout
        self.platform = Platform.parse(platform)
        self.mirror_only = mirror_only
        self.timings = timings
        self.blob_attempts = blob_attempts

    def pull(self, ref: ImageReference) -> PullResult:
        started = time.monotonic()
        deadline = started + self.timeout
        run = _PullRun(ref)
        attempts: list[Attempt] = []
        failure: RegistryFailure | None = None
        session = daemon_like_session(USER_AGENT)
        try:
            for name, endpoint in self._endpoints(session, deadline):
                try:
                    digest = self._pull_from(endpoint, run)
                except RegistryFailure as error:
                    failure = error
                    attempts.append(Attempt(name, endpoint.base_url, False, error.status, error.code, error.message))
                    run.say(f"{run.label} {name} failed: {error.message}")
                    continue
                except PullDeadline as late:
                    message = f"pull {ref.familiar} did not finish within {self.timeout:.1f}s (still waiting for {late.doing})"
                    attempts.append(Attempt(name, endpoint.base_url, False, None, TIMEOUT, message))
                    run.say(f"{run.label} {name}: {message}")
                    return PullResult(
                        image=str(ref), ok=False, error_code=TIMEOUT, message=message, bytes=run.bytes,
                        seconds=time.monotonic() - started, attempts=tuple(attempts), raw=message,
                    )
                attempts.append(Attempt(name, endpoint.base_url, True, 200))
                return PullResult(
                    image=str(ref), ok=True, served_by=name, digest=digest, bytes=run.bytes,
                    seconds=time.monotonic() - started, attempts=tuple(attempts),
                )
        finally:
            session.close()
        assert failure is not None  # at least one endpoint is always tried
        return PullResult(
            image=str(ref), ok=False, error_code=failure.code, message=docker_message(failure, ref), bytes=run.bytes,
            seconds=time.monotonic() - started, attempts=tuple(attempts), raw=failure.raw,
        )

    def _endpoints(self, session: requests.Session, deadline: float):
        if self.mirror_url:
            yield MIRROR, EndpointClient(
                session, self.mirror_url, proxy_url=None, verify=True, credentials=None,
                deadline=deadline, timings=self.timings,
            )
        if self.mirror_only:
            return
        yield HUB, EndpointClient(
            session, self.hub_url, proxy_url=self.proxy_url, verify=self.ca_file or True,
            credentials=self.credentials, deadline=deadline, timings=self.timings,
        )

    def _pull_from(self, endpoint: EndpointClient, run: _PullRun) -> str:
        """Pull everything from one endpoint; return the platform manifest digest."""
        ref = run.ref
        endpoint.ping()
        # As pull_v2.go pullV2Tag: a tag is resolved to a digest first (a HEAD,
        # which Hub's rate limit does not count), then the manifest is fetched by digest.
        if ref.digest:
            manifest = _fetch_manifest(endpoint, run, ref.digest, Descriptor(ref.digest, -1))
        else:
            resolved = _resolve_tag(endpoint, run, ref.tag)
            try:
                manifest = _fetch_manifest(endpoint, run, resolved.digest, resolved)
            except RegistryFailure as failure:
                if failure.status != 404:
                    raise
                # pull_v2.go: a registry that knows the tag but not its digest gets
                # the deprecated fallback, the manifest by tag.
                run.say(f"{run.label}: {endpoint.base_url} failed to pull manifest by the resolved digest; "
                        "falling back to pull by tag (deprecated)")
                manifest = _fetch_manifest(endpoint, run, ref.tag, None)
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
        _Download(endpoint, run, manifest, self.timings, self.blob_attempts).run()
        return manifest.digest


class _PullRun:
    """What one pull accumulates across endpoints: bytes and throttled progress."""

    def __init__(self, ref: ImageReference):
        self.ref = ref
        self.label = f"{ref.repository}:{ref.tag}" if ref.tag else f"{ref.repository}@{ref.digest}"
        self.scope = f"repository:{ref.repository}:pull"
        self.bytes = 0
        self._lock = threading.Lock()  # blobs download in parallel
        # Quick pulls stay quiet; a pull still running after the interval reports.
        self._last_report = time.monotonic()

    def say(self, line: str) -> None:
        log.info(line)

    def received(self, count: int) -> None:
        with self._lock:
            self.bytes += count

    def blob_progress(self, kind: str, digest: str, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_report < PROGRESS_INTERVAL_S:
                return
            self._last_report = now
        log.info(f"{self.label} {kind} {digest[:13]} {done / 1e6:.1f}/{max(total, 0) / 1e6:.1f} MB")


class _Cancelled(Exception):
    """Another blob of the pull failed for good (or the pull ran out of time)."""


# distribution/errors.go retryOnError: registry answers that no retry can change.
_DO_NOT_RETRY = (UNAUTHORIZED, UNSUPPORTED, DENIED, TOOMANYREQUESTS, NAME_UNKNOWN)


def retry_on_error(failure: RegistryFailure) -> bool:
    """Whether the daemon tries a blob again after this failure (moby v20.10.24
    distribution/errors.go retryOnError, pull_v2.go Download): never for
    unauthorized, unsupported, denied, toomanyrequests, name unknown, a 404
    (ErrBlobUnknown), a 4xx that is not registry protocol
    (UnexpectedHTTPResponseError), or a digest mismatch on a download from the
    start; always for the network, timeouts, 5xx and everything else."""
    if failure.code in _DO_NOT_RETRY:
        return False
    if failure.status == 404:
        return False
    if failure.status is not None and 400 <= failure.status < 500 and not failure.registry_error:
        return False
    if failure.code == DIGEST_MISMATCH:
        return failure.retriable  # set when the download had been resumed
    return True


class _Download:
    """The blobs of one image from one endpoint, as the daemon fetches them: the
    config in its own goroutine (5 attempts, 250 ms doubling), layers through
    the download manager (3 at a time, 6 attempts each, 5 to 25 s apart,
    resuming with a Range request). The config's failure wins; otherwise the
    topmost failed layer's, as the chained layer transfers report it. A
    definitive failure ends the others."""

    def __init__(self, endpoint: EndpointClient, run: _PullRun, manifest: Manifest, timings: DaemonTimings,
                 blob_attempts: int | None):
        self.endpoint = endpoint
        self.run_ = run
        self.manifest = manifest
        self.timings = timings
        self.cap = blob_attempts
        self.cancel = threading.Event()

    def run(self) -> None:
        config = _Job(lambda: self._config(self.manifest.config))
        layers = [_Job(lambda layer=layer: self._layer(layer)) for layer in self.manifest.layers]
        config.start()
        queue: list[_Job] = list(layers)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop(0)
                job.run_here(self.cancel)

        for _ in range(min(self.timings.max_concurrent_downloads, len(layers))):
            threading.Thread(target=worker, daemon=True, name="chaos-blob").start()
        try:
            config.result()
            for job in reversed(layers):
                job.result()
        except BaseException:
            self.cancel.set()
            self.endpoint.abort_all()
            raise

    # -- the config: distribution/pull_v2.go pullSchema2Config and retry()

    def _config(self, blob: Descriptor) -> None:
        schedule = self.timings.config_retry_s
        attempts = min(len(schedule) + 1, self.cap or len(schedule) + 1)
        for attempt in range(1, attempts + 1):
            try:
                state = _BlobState(blob)
                self._fetch(blob, "config", state)
                break
            except RegistryFailure as error:
                if not retry_on_error(error) or attempt == attempts:
                    # Go's retry() reports attempt+1 after the last one (an off-by-one):
                    # "download failed after attempts=6" for 5 attempts.
                    said = attempt + 1 if retry_on_error(error) else attempt
                    raise _config_failure(error, f"download failed after attempts={said}: {error.message}") from None
                self._wait(schedule[attempt - 1], f"the retry of the image config {blob.digest[:19]}", error)
        if not state.verified():
            raise _config_failure(
                RegistryFailure(DIGEST_MISMATCH, "", raw=f"{blob.digest}: received {state.offset} bytes of {blob.size}"),
                f"image config verification failed for digest {blob.digest}",
            )

    # -- a layer: distribution/xfer/download.go and pull_v2.go v2LayerDescriptor.Download

    def _layer(self, blob: Descriptor) -> None:
        schedule = self.timings.layer_retry_s
        attempts = min(len(schedule) + 1, self.cap or len(schedule) + 1)
        state = _BlobState(blob)
        for attempt in range(1, attempts + 1):
            try:
                resumed = state.offset > 0
                self._fetch(blob, "layer", state)
                if not state.verified():
                    raise RegistryFailure(
                        DIGEST_MISMATCH,
                        f"filesystem layer verification failed for digest {blob.digest}",
                        raw=f"{blob.digest}: received {state.offset} bytes of {blob.size}",
                        # A mismatch after a resumed download is retried from the start.
                        retriable=resumed,
                    )
                return
            except RegistryFailure as error:
                if error.code == DIGEST_MISMATCH or "206" in error.message:
                    state.truncate()
                if not retry_on_error(error) or attempt == attempts:
                    raise
                delay = schedule[attempt - 1]
                self.run_.say(
                    f"{self.run_.label} layer {blob.digest[:19]}: download failed, retrying "
                    f"({attempt}/{attempts - 1}) in {delay:g}s: {error.message}"
                )
                self._wait(delay, f"the retry of layer {blob.digest[:19]}", error)

    def _wait(self, seconds: float, what: str, error: RegistryFailure) -> None:
        left = self.endpoint.deadline - time.monotonic()
        if seconds >= left:
            self.cancel.wait(max(0.0, left))
            raise PullDeadline(f"{what} in {seconds:g}s, after: {error.message}")
        if self.cancel.wait(seconds):
            raise _Cancelled()

    def _fetch(self, blob: Descriptor, kind: str, state: _BlobState) -> None:
        """One GET of a blob into `state` (from its offset, with Range when resuming)."""
        if self.cancel.is_set():
            raise _Cancelled()
        offset = state.offset
        reply = self.endpoint.get(
            f"/v2/{self.run_.ref.repository}/blobs/{blob.digest}", scope=self.run_.scope,
            not_found_code=BLOB_UNKNOWN, headers={"Range": f"bytes={offset}-"} if offset else None,
        )
        with reply:
            if offset:
                _check_range(reply, offset)
            for chunk in reply.chunks():
                if self.cancel.is_set():
                    raise _Cancelled()
                self.run_.received(len(chunk))
                if not state.feed(chunk):
                    break  # longer than its descriptor: no need to read the rest
                self.run_.blob_progress(kind, blob.digest, state.offset, blob.size)


class _Job:
    """A blob fetch on a daemon thread, whose outcome the pull waits for."""

    def __init__(self, action):
        self.action = action
        self.done = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        threading.Thread(target=self.run_here, args=(None,), daemon=True, name="chaos-blob").start()

    def run_here(self, cancel: threading.Event | None) -> None:
        try:
            if cancel is not None and cancel.is_set():
                raise _Cancelled()
            self.action()
        except BaseException as exc:  # handed to whoever waits for the result
            self.error = exc
        finally:
            self.done.set()

    def result(self) -> None:
        self.done.wait()
        if self.error is not None:
            raise self.error


class _BlobState:
    """A blob received so far: the bytes counted and hashed (kept across a resumed download)."""

    def __init__(self, blob: Descriptor):
        self.blob = blob
        self.truncate()

    def truncate(self) -> None:
        self.offset = 0
        self.hasher = hashlib.new(self.blob.digest.split(":", 1)[0])

    def feed(self, chunk: bytes) -> bool:
        """Count and hash a chunk; False once past the descriptor's size."""
        self.offset += len(chunk)
        if self.offset > self.blob.size:
            return False
        self.hasher.update(chunk)
        return True

    def verified(self) -> bool:
        algorithm = self.blob.digest.split(":", 1)[0]
        return self.offset == self.blob.size and f"{algorithm}:{self.hasher.hexdigest()}" == self.blob.digest


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _check_range(reply: Reply, offset: int) -> None:
    """A resumed download must get its range (distribution's httpReadSeeker)."""
    if reply.status_code != 206:
        raise RegistryFailure(
            BAD_RESPONSE, "expected HTTP 206 from byte range request",
            status=reply.status_code, raw=f"{reply.url}: {reply.status_code} to Range: bytes={offset}-",
        )
    found = _CONTENT_RANGE.match(reply.headers.get("Content-Range", "").strip())
    if not found or int(found.group(1)) != offset:
        raise RegistryFailure(
            BAD_RESPONSE, f"received Content-Range {reply.headers.get('Content-Range')!r} for a download resumed at {offset}",
            status=206,
        )


def _config_failure(error: RegistryFailure, message: str) -> RegistryFailure:
    """ImageConfigPullError: "error pulling image configuration: ..."."""
    return RegistryFailure(
        error.code, f"error pulling image configuration: {message}", status=error.status, raw=error.raw,
        registry_error=error.registry_error, registry_message=error.registry_message,
        insufficient_scope=error.insufficient_scope,
    )


def _resolve_tag(endpoint: EndpointClient, run: _PullRun, tag: str) -> Descriptor:
    """The tag's digest, as distribution's client resolves it (tags.Get): HEAD,
    and when the HEAD fails with a status (or names no digest) a GET, for
    registries without HEAD and for the error's details."""
    path = f"/v2/{run.ref.repository}/manifests/{tag}"
    try:
        with endpoint.get(path, scope=run.scope, accept=ACCEPT, method="HEAD") as reply:
            announced = reply.headers.get("Docker-Content-Digest", "").strip()
            if _DIGEST_RE.match(announced):
                return Descriptor(announced, _length(reply.headers))
    except RegistryFailure as failure:
        if failure.status is None:
            raise  # no answer at all: the daemon does not try a GET either
    with endpoint.get(path, scope=run.scope, accept=ACCEPT, not_found_code=MANIFEST_UNKNOWN) as reply:
        announced = reply.headers.get("Docker-Content-Digest", "").strip()
        if _DIGEST_RE.match(announced):
            return Descriptor(announced, _length(reply.headers))
        body = reply.read(MAX_MANIFEST_BYTES)
    run.received(len(body))
    return Descriptor("sha256:" + hashlib.sha256(body).hexdigest(), len(body))


def _length(headers) -> int:
    try:
        return int(headers.get("Content-Length", "-1"))
    except ValueError:
        return -1


def _fetch_manifest(
    endpoint: EndpointClient, run: _PullRun, reference: str, expected: Descriptor | None
) -> Manifest:
    reply = endpoint.get(
        f"/v2/{run.ref.repository}/manifests/{reference}",
        scope=run.scope,
        accept=ACCEPT,
        not_found_code=MANIFEST_UNKNOWN,
    )
    with reply:
        body = reply.read(MAX_MANIFEST_BYTES)
    run.received(len(body))
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    announced = reply.headers.get("Docker-Content-Digest", "").strip()
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
    return parse_manifest(body, reply.headers.get("Content-Type", ""), actual)


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
