"""The docker engine: pulls through a real Docker daemon with the docker SDK.

In the lab it talks to the lab's private dockerd (chaos.lab.dockerd), whose
mirror is the lab mirror and whose fallback to registry-1.docker.io goes
through the fault proxy; against an external target it uses DOCKER_HOST or the
default socket, and whatever that daemon is configured with.

What each PullResult field comes from:
- ok / error_code / message / raw: the daemon's own answer. An error before
  the pull starts is the API error body; one during it is the `error` line of
  the progress stream. raw keeps it verbatim; error_code is
  chaos.clients.error_map.classify of it; message is Docker's wording
  (the daemon already speaks it).
- served_by: the daemon's own account, from its debug log ("Trying to pull X
  from <endpoint>"; the last endpoint tried is the one that served). The fault
  proxy's tap cannot tell: the mirror filling its cache and the daemon falling
  back to Hub send the same requests to registry-1.docker.io. Without the log
  (an external daemon) served_by is None.
- digest: the platform image manifest's digest, as the builtin client reports
  it: for a manifest list, the entry the daemon picked (its log says "found
  match for linux/amd64 ... digest ..."); otherwise the "Digest:" line of the
  stream, which then is the manifest's digest. Without the log, a multi-arch
  image reports the list's digest (what `docker pull` prints).
- bytes: best effort, the compressed sizes of the layers the daemon
  downloaded, as its progress reports them; manifests and config are not
  counted (the builtin client counts them).

- attempts: one per endpoint the daemon tried (its log); a failed one carries
  the error the daemon logged when it moved on ("Attempting next endpoint for
  pull after error: ...") with its code, and the HTTP status when the text
  quotes one or the code implies one (manifest unknown: 404).

Every pull really pulls: the reference is removed from the daemon first. The
pull is a streamed POST /images/create on the SDK's session rather than
APIClient.pull, whose stream has no read timeout: a watchdog closes the
response at the deadline (the engine's timeout: the whole pull's budget),
which makes the daemon cancel the pull. Nothing else here limits time: the
daemon keeps its own limits (15 s for a ping, a token or a login; none on a
manifest or blob answer; layer retries 5 to 25 s apart).

mirror_only pulls `<mirror host>/<repository>:<tag>` from the mirror as from
any registry (dockerd treats 127.0.0.0/8 as insecure, so plain http works).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import docker
import docker.auth
import docker.errors
import requests
import urllib3.exceptions

from chaos.clients.error_map import answer_status, classify, docker_message, unquote_log_value
from chaos.errors import EnvironmentProblem, UsageError
from chaos.vocab.codes import TIMEOUT
from chaos.vocab.hub import DAEMON_HUB_NAMES, INDEX_SERVER
from chaos.vocab.names import HUB, MIRROR
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import Attempt, PullResult, PushResult, with_final_error

log = logging.getLogger(__name__)
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
PROGRESS_INTERVAL_S = 0.25

# Logins that succeeded, per daemon: like `docker login`, done once and then
# sent with every pull, so a pull during an outage still carries them.
_logged_in: set[tuple[str, str, str]] = set()
_logged_in_lock = threading.Lock()


def default_docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


class DockerEngine:
    name = "docker"

    def __init__(
        self,
        *,
        docker_host: str,
        mirror_url: str | None,
        daemon_log: Path | None,
        credentials: tuple[str, str] | None,
        timeout: float,
        platform: str = "linux/amd64",
        mirror_only: bool = False,
    ):
        """daemon_log: the daemon's --debug log, when it is ours to read (the
        lab's dockerd); served_by and a list's platform digest come from it.
        timeout bounds each pull as a whole. EnvironmentProblem when the
        daemon does not answer."""
        if mirror_only and not mirror_url:
            raise UsageError("a pull from the mirror only needs a mirror")
        self.docker_host = docker_host
        self.mirror_url = mirror_url
        self.mirror_only = mirror_only
        self.daemon_log = daemon_log
        self.credentials = credentials
        self.timeout = timeout
        self.platform = platform
        try:
            self.api = docker.APIClient(base_url=docker_host, version="auto", timeout=min(timeout, 10.0))
        except docker.errors.DockerException as exc:
            raise EnvironmentProblem(
                f"engine docker cannot run: no Docker daemon answers at {docker_host} ({_first_line(exc)}); "
                "start the lab with the docker engine, set DOCKER_HOST, or use --engine builtin"
            ) from None

    def close(self) -> None:
        self.api.close()

    # -- pull ------------------------------------------------------------------

    def pull(self, ref: ImageReference) -> PullResult:
        started = time.monotonic()
        deadline = started + self.timeout
        log_offset = _size(self.daemon_log)
        stream = _PullStream(ref)
        error_text, timed_out = None, False
        try:
            self._remove(self._pulled_name(ref), deadline)
            headers = {}
            if self.credentials and not self.mirror_only:
                auth, failure = self._login(deadline)
                if failure is not None:
                    return _failed(ref, failure, started, bytes_=0)
                headers["X-Registry-Auth"] = auth
            error_text = self._stream_pull(ref, headers, stream, deadline)
        except _Deadline:
            timed_out = True
        seconds = time.monotonic() - started
        log = _DaemonLog(self.daemon_log, log_offset, ref, registry=self._registry()) if self.daemon_log else None
        attempts = log.attempts(self.mirror_url, ok=error_text is None and not timed_out) if log else ()
        if timed_out:
            message = f"docker pull {ref.familiar} did not finish within {self.timeout:.1f}s (cancelled)"
            return PullResult(
                image=str(ref), ok=False, error_code=TIMEOUT, message=message, bytes=stream.bytes,
                seconds=seconds, attempts=with_final_error(attempts, TIMEOUT, message), raw=message,
            )
        if error_text is not None:
            return _failed(ref, error_text, started, bytes_=stream.bytes, attempts=attempts)
        digest = (log.platform_digest() if log else None) or stream.digest
        return PullResult(
            image=str(ref), ok=True, served_by=attempts[-1].endpoint if attempts else None,
            digest=digest, bytes=stream.bytes, seconds=seconds, attempts=attempts,
        )

    def _registry(self) -> str:
        """Where the image is pulled from, as the reference names it."""
        return urlsplit(self.mirror_url).netloc if self.mirror_only else "docker.io"

    def _pulled_name(self, ref: ImageReference) -> str:
        return f"{self._registry()}/{ref.repository}" + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")

    def _stream_pull(self, ref: ImageReference, headers: dict, stream: _PullStream, deadline: float) -> str | None:
        """Run the pull; the daemon's error text, or None when it succeeded.
        Raises _Deadline when the deadline passed first (the pull is cancelled)."""
        params = {"fromImage": f"{self._registry()}/{ref.repository}", "tag": ref.digest or ref.tag,
                  "platform": self.platform}
        url = f"{self.api.base_url}/v{self.api.api_version}/images/create"
        remaining = _remaining(deadline)
        try:
            response = self.api.post(url, params=params, headers=headers, stream=True, timeout=(min(remaining, 10.0), remaining))
        except requests.RequestException as exc:
            if time.monotonic() >= deadline or isinstance(exc, requests.Timeout):
                raise _Deadline() from None
            raise self._daemon_gone(exc) from None
        # Closing the response drops the connection, and dockerd cancels a pull
        # whose client went away: that is what stops a stuck pull.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), response.close)
        watchdog.daemon = True
        watchdog.start()
        try:
            if response.status_code >= 400:
                return _api_error_text(response)
            for line in _json_lines(response):
                if "error" in line:
                    return str(line.get("error") or line.get("errorDetail", {}).get("message", ""))
                stream.feed(line)
            if time.monotonic() >= deadline:
                raise _Deadline()
            return None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: urllib3 reading from a response the watchdog closed.
            if time.monotonic() >= deadline - 0.05 or isinstance(exc, requests.Timeout):
                raise _Deadline() from None
            raise self._daemon_gone(exc) from None
        finally:
            watchdog.cancel()
            response.close()

    def _remove(self, name: str, deadline: float) -> None:
        """Forget the image so this pull really pulls (its layers go too when
        no other image shares them)."""
        try:
            with self._call_timeout(_remaining(deadline)):
                self.api.remove_image(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise EnvironmentProblem(f"engine docker: cannot remove {name} before pulling it: {_first_line(exc)}") from None
        except requests.Timeout:
            raise _Deadline() from None
        except requests.RequestException as exc:
            raise self._daemon_gone(exc) from None

    def _login(self, deadline: float) -> tuple[str, str | None]:
        """(X-Registry-Auth value, login failure text or None). The daemon checks
        the login itself (POST /auth, against Hub through the fault proxy,
        within its own 15 s limits). A login that fails on the network - Hub is
        down, or so slow the login outlives the deadline - is not fatal: a user
        who logged in before the outage still sends credentials with every
        pull, and so does this engine."""
        user, password = self.credentials
        header = docker.auth.encode_header({"username": user, "password": password, "serveraddress": INDEX_SERVER})
        key = (self.docker_host, user, password)
        with _logged_in_lock:
            if key in _logged_in:
                return header, None
        # The daemon bounds a login itself (registry/auth.go: 15 s per request);
        # only the pull's own deadline is added here.
        budget = _remaining(deadline)
        try:
            with self._call_timeout(budget):
                self.api.login(user, password, registry=INDEX_SERVER, reauth=True)
        except docker.errors.APIError as exc:
            text = _explanation(exc)
            if classify(text) in ("UNAUTHORIZED", "DENIED"):
                return header, text
            self._say(f"docker login as {user} failed ({text}); pulling with the credentials anyway")
            return header, None
        except requests.Timeout:
            self._say(f"docker login as {user} got no answer within {budget:.1f}s; pulling with the credentials anyway")
            return header, None
        except requests.RequestException as exc:
            raise self._daemon_gone(exc) from None
        with _logged_in_lock:
            _logged_in.add(key)
        return header, None

    # -- push (an optional ability, chaos.clients.engines.Pusher) -------------

    def push_archive(self, archive: Path, image: str, *, plain_http: bool) -> PushResult:
        """`docker load` the archive (it names `image`), then `docker push image`:
        what a user pushing a local build does. The daemon retries a failed
        layer upload 5 times in all, 5, 10, 15, 20 s apart (distribution/xfer/
        upload.go); past the engine's timeout the push is abandoned and the
        result names the error it was retrying. plain_http needs nothing: the
        daemon treats 127.0.0.0/8 registries as insecure."""
        started = time.monotonic()
        deadline = started + self.timeout
        log_offset = _size(self.daemon_log)
        name, _, tag = image.rpartition(":")
        error_text, digest, timed_out = None, None, False
        try:
            self._load(archive, deadline)
            headers = {}
            if self.credentials and name.startswith("docker.io/"):
                auth, failure = self._login(deadline)
                if failure is not None:
                    return _push_result(image, ok=False, text=failure, started=started)
                headers["X-Registry-Auth"] = auth
            else:
                headers["X-Registry-Auth"] = docker.auth.encode_header({})
            error_text, digest = self._stream_push(name, tag, headers, deadline)
        except _Deadline:
            timed_out = True
        finally:
            try:
                with self._call_timeout(10.0):
                    self.api.remove_image(image, force=True)
            except (docker.errors.APIError, requests.RequestException):
                pass
        if timed_out:
            retried = _upload_errors(self.daemon_log, log_offset)
            if retried:
                # Like skopeo's back-offs on 429: the deadline ended a push the daemon
                # kept retrying; the code is the registry's answer it kept getting.
                text = (f"docker push {image} was still retrying after {len(retried)} failed upload(s) when its "
                        f"{self.timeout:g}s ran out: {retried[-1]}")
                return _push_result(image, ok=False, text=text, started=started, code=classify(retried[-1]))
            text = f"docker push {image} did not finish within {self.timeout:.1f}s (cancelled)"
            return _push_result(image, ok=False, text=text, started=started, code=TIMEOUT)
        if error_text is not None:
            return _push_result(image, ok=False, text=error_text, started=started)
        return _push_result(image, ok=True, text=None, started=started, digest=digest)

    def _load(self, archive: Path, deadline: float) -> None:
        try:
            with self._call_timeout(_remaining(deadline)), open(archive, "rb") as data:
                answer = self.api.load_image(data, quiet=True)
                for line in answer or ():
                    if isinstance(line, dict) and line.get("error"):
                        raise EnvironmentProblem(f"engine docker: docker load {archive.name}: {line['error']}")
        except docker.errors.APIError as exc:
            raise EnvironmentProblem(f"engine docker: docker load {archive.name}: {_first_line(exc)}") from None
        except requests.Timeout:
            raise _Deadline() from None
        except requests.RequestException as exc:
            raise self._daemon_gone(exc) from None

    def _stream_push(self, name: str, tag: str, headers: dict, deadline: float) -> tuple[str | None, str | None]:
        """(error text or None, digest): POST /images/<name>/push streamed, with a
        watchdog at the deadline, as for pulls."""
        url = f"{self.api.base_url}/v{self.api.api_version}/images/{name}/push"
        remaining = _remaining(deadline)
        try:
            response = self.api.post(url, params={"tag": tag}, headers=headers, stream=True,
                                     timeout=(min(remaining, 10.0), remaining))
        except requests.RequestException as exc:
            if time.monotonic() >= deadline or isinstance(exc, requests.Timeout):
                raise _Deadline() from None
            raise self._daemon_gone(exc) from None
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), response.close)
        watchdog.daemon = True
        watchdog.start()
        digest = None
        try:
            if response.status_code >= 400:
                return _api_error_text(response), None
            for line in _json_lines(response):
                if "error" in line:
                    return str(line.get("error") or line.get("errorDetail", {}).get("message", "")), None
                status = str(line.get("status", ""))
                found = re.search(r"digest: (sha256:[0-9a-f]{64})", status)
                if found:
                    digest = found.group(1)
                elif status.startswith("Retrying in"):
                    self._say(f"push {name}:{tag} {line.get('id', '')} {status}")
            if time.monotonic() >= deadline:
                raise _Deadline()
            return None, digest
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError) as exc:
            if time.monotonic() >= deadline - 0.05 or isinstance(exc, requests.Timeout):
                raise _Deadline() from None
            raise self._daemon_gone(exc) from None
        finally:
            watchdog.cancel()
            response.close()

    # -- helpers ------------------------------------------------------------------

    @contextmanager
    def _call_timeout(self, seconds: float) -> Iterator[None]:
        """Bound the SDK calls inside by `seconds` (the SDK takes its timeout from
        the client; this client serves this engine, and so one pull, only)."""
        saved, self.api.timeout = self.api.timeout, seconds
        try:
            yield
        finally:
            self.api.timeout = saved

    def _say(self, line: str) -> None:
        log.info(line)

    def _daemon_gone(self, exc: Exception) -> EnvironmentProblem:
        return EnvironmentProblem(f"engine docker: lost the Docker daemon at {self.docker_host}: {_first_line(exc)}")


class _Deadline(Exception):
    pass


def _remaining(deadline: float) -> float:
    """Seconds left before `deadline`; _Deadline when none are."""
    left = deadline - time.monotonic()
    if left <= 0.01:
        raise _Deadline()
    return left


class _PullStream:
    """What the progress stream tells: per-layer progress (shown, throttled),
    layer sizes and the digest."""

    def __init__(self, ref: ImageReference):
        self.label = ref.familiar
        self.layer_sizes: dict[str, int] = {}
        self.digest: str | None = None
        self._last_report = 0.0

    @property
    def bytes(self) -> int:
        return sum(self.layer_sizes.values())

    def feed(self, line: dict) -> None:
        status = str(line.get("status", ""))
        layer = line.get("id")
        detail = line.get("progressDetail") or {}
        if status.startswith("Digest: "):
            self.digest = status.removeprefix("Digest: ").strip()
        if layer and status in ("Downloading", "Extracting") and isinstance(detail.get("total"), int):
            self.layer_sizes[layer] = max(self.layer_sizes.get(layer, 0), detail["total"])
        if not layer:
            return
        now = time.monotonic()
        # Every state change of a layer is shown; byte counts at most every interval.
        if status not in ("Downloading", "Extracting") or now - self._last_report >= PROGRESS_INTERVAL_S:
            self._last_report = now
            log.info(f"{self.label} {layer}: {status} {line.get('progress', '')}".rstrip())


class _DaemonLog:
    """The daemon's --debug log lines written during one pull, about one image.

    Only "Trying to pull <repository>" names its image. When pulls overlap (a
    step with concurrency), the fallback error of a mirror attempt and a
    list's platform digest may come from another image's lines, and two tags
    of one repository cannot be told apart; docs/engines.md says so."""

    _TRYING = re.compile(r'msg="Trying to pull (\S+) from (\S+) v\d"')
    _NEXT = re.compile(r'msg="Attempting next endpoint for pull after error: ((?:[^"\\]|\\.)*)"')
    _LIST = re.compile(r'msg="(\S+) resolved to a manifestList object')
    _MATCH = re.compile(r'msg="found match for \S+ with media type \S+, digest (sha256:[0-9a-f]{64})"')

    def __init__(self, path: Path, offset: int, ref: ImageReference, *, registry: str = "docker.io"):
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                self.lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            self.lines = []
        # The daemon names a Hub image familiarly ("alpine", "alice/app") and
        # any other registry's in full ("127.0.0.1:5000/library/alpine").
        self.name = ref.repository.removeprefix("library/") if registry == "docker.io" else f"{registry}/{ref.repository}"
        self.registry = registry
        self.ref = ref

    def attempts(self, mirror_url: str | None, *, ok: bool) -> tuple[Attempt, ...]:
        """Each endpoint the daemon tried for this image, in order; all but the
        last failed (with the error it logged), the last one is `ok`."""
        found: list[list] = []
        for line in self.lines:
            trying = self._TRYING.search(line)
            if trying and trying.group(1) == self.name:
                found.append([trying.group(2).rstrip("/"), None])
                continue
            fallback = self._NEXT.search(line)
            if fallback and found and found[-1][1] is None:
                found[-1][1] = unquote_log_value(fallback.group(1))
        if mirror_url and urlsplit(mirror_url).scheme == "http":
            # A registry that is not Hub is tried over https first; for a plain-http
            # mirror that probe fails ("server gave HTTP response to HTTPS client")
            # and says nothing about the mirror.
            netloc = urlsplit(mirror_url).netloc
            found = [item for index, item in enumerate(found)
                     if not (item[0].startswith(f"https://{netloc}") and index < len(found) - 1)]
        attempts = []
        for index, (url, error) in enumerate(found):
            last = index == len(found) - 1
            endpoint = _endpoint_name(url, mirror_url)
            if last:
                attempts.append(Attempt(endpoint, url, ok, 200 if ok else None))
            else:
                code = classify(error or "")
                attempts.append(Attempt(endpoint, url, False, answer_status(code, error or ""), code, error))
        return tuple(attempts)

    def platform_digest(self) -> str | None:
        """The manifest-list entry the daemon chose for this image, if it met a list."""
        after_list = False
        for line in self.lines:
            listed = self._LIST.search(line)
            if listed:
                after_list = listed.group(1).endswith(f"/{self.ref.repository}:{self.ref.tag}") or listed.group(1).endswith(
                    f"@{self.ref.digest}"
                )
                continue
            match = self._MATCH.search(line)
            if match and after_list:
                return match.group(1)
        return None


def _endpoint_name(url: str, mirror_url: str | None) -> str:
    netloc = urlsplit(url).netloc
    if mirror_url and netloc == urlsplit(mirror_url).netloc:
        return MIRROR
    if netloc in DAEMON_HUB_NAMES:
        return HUB
    return url


def _failed(ref, text: str, started: float, *, bytes_: int, attempts=()) -> PullResult:
    code = classify(text)
    message = docker_message(code, ref, text)
    attempts = with_final_error(tuple(attempts), code, message)
    if attempts and attempts[-1].status is None:
        attempts = (*attempts[:-1], replace(attempts[-1], status=answer_status(code, text)))
    return PullResult(
        image=str(ref), ok=False, error_code=code, message=message, bytes=bytes_,
        seconds=time.monotonic() - started, attempts=attempts, raw=text,
    )


def _push_result(image: str, *, ok: bool, text: str | None, started: float, code: str | None = None,
                 digest: str | None = None) -> PushResult:
    registry = image.split("/", 1)[0]
    if ok:
        return PushResult(image=image, target=registry, ok=True, digest=digest, seconds=time.monotonic() - started)
    code = code or classify(text or "")
    return PushResult(image=image, target=registry, ok=False, error_code=code, message=text,
                      status=answer_status(code, text or ""), seconds=time.monotonic() - started)


_UPLOAD_FAILED = re.compile(r'msg="Upload failed, retrying: ((?:[^"\\]|\\.)*)"')


def _upload_errors(path: Path | None, offset: int) -> list[str]:
    """The errors the daemon retried uploads after, from its log (upload.go logs
    "Upload failed, retrying: <error>")."""
    if path is None:
        return []
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return [unquote_log_value(found) for found in _UPLOAD_FAILED.findall(text)]


def _json_lines(response: requests.Response) -> Iterator[dict]:
    for raw in response.iter_lines():
        if raw.strip():
            try:
                yield json.loads(raw)
            except ValueError:
                continue  # not a progress object; the daemon only sends JSON


def _api_error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"


def _explanation(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
