"""The containerd engine: pulls as a Kubernetes node does, with containerd 1.6
configured by `certs.d/docker.io/hosts.toml` (the mirror first, then
registry-1.docker.io):

    ctr --debug --address <socket> --namespace hub-chaos --timeout <budget>
        images pull --snapshotter native --platform linux/amd64
        --hosts-dir <private folder> [--user NAME] docker.io/library/alpine:3.19
    env: HTTPS_PROXY=<fault proxy>  SSL_CERT_FILE=<the proxy's CA>

ctr resolves and fetches in its own process (containerd only stores what it
is given), so the proxy and CA go in ctr's environment; the generated
hosts.toml also names the CA for registry-1.docker.io (`ca`), as a node
would. A login is `--user NAME`, its password typed on ctr's terminal (a
pseudo-terminal on its stdin), never on its command line. The image is
removed first (`ctr images rm --sync`: content and snapshots collected) so
every pull really pulls.

containerd's fallback (remotes/docker/resolver.go, fetcher.go, v1.6.20) is
per request, not per pull: resolving the tag (a HEAD) tries each host in
order on any error, 404 or status above 399; every manifest and blob GET
then tries each host in order again on any error. The error reported is the
*first* host's that was not a 404 (often the mirror's, where dockerd reports
Hub's). 401 retries with credentials, 408 and 429 are retried at once, up
to 5 times; 5xx are not retried.

PullResult fields, from ctr's --debug log (every request's method, URL and
answer status are logged; Authorization headers are not):
- served_by: the host that delivered the platform image manifest;
- digest: that manifest's digest (the platform entry of a list);
- bytes: the sizes of the descriptors fetched (index, manifest, config, layers);
- attempts: one per host, in the order first asked: its first failing answer
  (status, code inferred from the status where the protocol fixes it, the
  request and status as message), or ok;
- error_code / message / raw: ctr's final error line (`ctr: ...`), classified.
"""

from __future__ import annotations

import http
import itertools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from chaos.clients.child import run_child
from chaos.clients.error_map import answer_status, classify, code_for_status, docker_message, unquote_log_value
from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab.binaries import require_ctr
from chaos.vocab.codes import DENIED, DIGEST_MISMATCH, TIMEOUT
from chaos.vocab.hub import REGISTRY_HOST, REGISTRY_URL
from chaos.vocab.names import HUB, MIRROR
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import Attempt, PullResult, PushResult, with_final_error

log = logging.getLogger(__name__)
NAMESPACE = "hub-chaos"
DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
SNAPSHOTTER = "native"  # needs no overlay support: works wherever containerd runs
REMOVE_TIMEOUT_S = 30.0
_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
_FIELD = re.compile(r'([\w.\-]+)=("(?:[^"\\]|\\.)*"|\S*)')
_FINAL = re.compile(r"^ctr: (.*)$", re.MULTILINE)
# content.Copy's commit: the bytes received do not hash to the descriptor's digest.
_CORRUPT = re.compile(r'failed commit on ref "[\w.]+-(sha256:[0-9a-f]{64})".*unexpected commit (?:digest|size)')


def default_address() -> str:
    return os.environ.get("CONTAINERD_ADDRESS") or DEFAULT_ADDRESS


def hosts_toml(mirror_url: str | None, ca_file: str | None) -> str:
    """certs.d/docker.io/hosts.toml as a node behind a mirror has it: the mirror
    for pulls and tag resolution, then Docker Hub (the server, which alone may
    take pushes). A plain-http mirror is named with its scheme; `ca` lets
    registry-1.docker.io (the fault proxy, in the lab) be trusted."""
    lines = ["# Written by hub-chaos: docker.io pulls go to the mirror first, then Docker Hub.",
             f'server = "{REGISTRY_URL}"']
    if ca_file:
        lines.append(f'ca = "{ca_file}"')
    if mirror_url:
        lines += ["", f'[host."{mirror_url.rstrip("/")}"]', '  capabilities = ["pull", "resolve"]']
    return "\n".join(lines) + "\n"


class ContainerdEngine:
    name = "containerd"

    def __init__(
        self,
        *,
        address: str,
        mirror_url: str | None,
        proxy_url: str | None,
        ca_file: str | None,
        credentials: tuple[str, str] | None,
        timeout: float,
        platform: str = "linux/amd64",
        mirror_only: bool = False,
        namespace: str = NAMESPACE,
        binary: str = "ctr",
    ):
        """address: containerd's socket (the lab's, CONTAINERD_ADDRESS, or the
        default). timeout: the whole pull's budget (ctr --timeout).
        EnvironmentProblem when ctr is missing or no containerd answers."""
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {platform!r}: expected os/architecture[/variant]")
        if mirror_only and not mirror_url:
            raise UsageError("a pull from the mirror only needs a mirror")
        self.binary = require_ctr(binary)
        self.address = address.removeprefix("unix://")
        self.mirror_url = mirror_url.rstrip("/") if mirror_url else None
        self.mirror_host = urlsplit(mirror_url).netloc if mirror_url else None
        self.proxy_url = proxy_url
        self.ca_file = ca_file
        self.credentials = credentials
        self.timeout = timeout
        self.platform = platform
        self.mirror_only = mirror_only
        self.namespace = namespace
        self._check_daemon()
        self.workdir = Path(tempfile.mkdtemp(prefix="hc-ctr-"))
        self.hosts_dir = self.workdir / "hosts"
        (self.hosts_dir / "docker.io").mkdir(parents=True)
        (self.hosts_dir / "docker.io" / "hosts.toml").write_text(hosts_toml(self.mirror_url, ca_file))
        self._runs = itertools.count(1)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.workdir, True)

    def close(self) -> None:
        self._cleanup()

    # -- pull ----------------------------------------------------------------

    def pull(self, ref: ImageReference) -> PullResult:
        started = time.monotonic()
        deadline = started + self.timeout
        name = self._pull_name(ref)
        self._forget_images(deadline)
        run = next(self._runs)
        log_path = self.workdir / f"ctr-{run}.log"
        budget = max(0.1, deadline - time.monotonic())
        argv = [*self._global_args(budget), "images", "pull", "--snapshotter", SNAPSHOTTER, "--platform", self.platform]
        if self.mirror_only:
            if urlsplit(self.mirror_url).scheme == "http":
                argv.append("--plain-http")
        else:
            argv += ["--hosts-dir", str(self.hosts_dir)]
            if self.credentials:
                argv += ["--user", self.credentials[0]]
        argv.append(name)
        secret = self.credentials[1] if self.credentials and not self.mirror_only else None
        try:
            returncode, killed = run_child(argv, env=self._env(), log_path=log_path, label=ref.familiar, timeout=budget,
                                           logger=log, engine="containerd", secret_line=secret)
            text = log_path.read_text(errors="replace")
        finally:
            log_path.unlink(missing_ok=True)
        account = _Account.parse(text, self.mirror_host)
        final = _final_error(text) if returncode != 0 else ""
        timed_out = killed or (returncode != 0 and classify(final) == TIMEOUT)
        attempts = account.attempts(self.mirror_url, ok=returncode == 0, timed_out=timed_out, final=final)
        seconds = time.monotonic() - started
        if timed_out:
            waiting = account.pending()
            message = f"ctr images pull {ref.familiar} did not finish within {self.timeout:.1f}s" + (
                f" (still waiting for an answer to {waiting})" if waiting else "")
            return PullResult(image=str(ref), ok=False, error_code=TIMEOUT, message=message, bytes=account.bytes,
                              seconds=seconds, attempts=_with_final_error(attempts, TIMEOUT, message),
                              raw=final or message)
        if returncode != 0:
            code = classify(final)
            message = docker_message(code, ref, final)
            return PullResult(image=str(ref), ok=False, error_code=code, message=message, bytes=account.bytes,
                              seconds=seconds, attempts=_with_final_error(attempts, code, message), raw=final)
        served_by, digest = account.platform_manifest(self.mirror_host)
        return PullResult(image=str(ref), ok=True, served_by=served_by, digest=digest, bytes=account.bytes,
                          seconds=seconds, attempts=attempts)

    # -- push (an optional ability, chaos.clients.engines.Pusher) -------------

    def push_archive(self, archive: Path, image: str, *, plain_http: bool) -> PushResult:
        """`ctr images import` the archive, then `ctr images push <image>` (with
        the hosts folder and the login for docker.io); the image is removed
        afterwards."""
        started = time.monotonic()
        deadline = started + self.timeout
        target = image.split("/", 1)[0]
        self._forget_images(deadline)
        self._ctr(["images", "import", "--no-unpack", str(archive)], max(1.0, min(REMOVE_TIMEOUT_S, deadline - time.monotonic())))
        run = next(self._runs)
        log_path = self.workdir / f"ctr-{run}.log"
        budget = max(0.1, deadline - time.monotonic())
        argv = [*self._global_args(budget), "images", "push"]
        if plain_http:
            argv.append("--plain-http")
        to_hub = target == "docker.io"
        if to_hub:
            argv += ["--hosts-dir", str(self.hosts_dir)]
            if self.credentials:
                argv += ["--user", self.credentials[0]]
        argv += [image, image]
        secret = self.credentials[1] if self.credentials and to_hub else None
        try:
            returncode, killed = run_child(argv, env=self._env(), log_path=log_path, label=image, timeout=budget,
                                           logger=log, engine="containerd", secret_line=secret)
            text = log_path.read_text(errors="replace")
        finally:
            log_path.unlink(missing_ok=True)
            self._ctr(["images", "rm", "--sync", image], REMOVE_TIMEOUT_S)
        seconds = time.monotonic() - started
        final = _final_error(text) if returncode != 0 else ""
        if killed or (returncode != 0 and classify(final) == TIMEOUT):
            return PushResult(image=image, target=target, ok=False, error_code=TIMEOUT,
                              message=f"ctr images push {image} did not finish within {self.timeout:.1f}s", seconds=seconds)
        if returncode != 0:
            code = classify(final)
            refused = next((r for r in reversed(_Account.parse(text, self.mirror_host).requests)
                            if _status_code(r.status) and _status_code(r.status) >= 400), None)
            status = _status_code(refused.status) if refused else answer_status(code, final)
            return PushResult(image=image, target=target, ok=False, error_code=code, message=final, status=status,
                              seconds=seconds)
        return PushResult(image=image, target=target, ok=True, seconds=seconds)

    def _pull_name(self, ref: ImageReference) -> str:
        """What ctr is asked for: docker.io/<repository>, or the mirror's own
        name for it when pulling from the mirror alone."""
        host = self.mirror_host if self.mirror_only else "docker.io"
        return f"{host}/{ref.repository}" + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")

    # -- helpers ---------------------------------------------------------------

    def _global_args(self, budget: float, *, debug: bool = True) -> list[str]:
        return [self.binary, *(["--debug"] if debug else []), "--address", self.address,
                "--namespace", self.namespace, "--timeout", f"{budget:.3f}s"]

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        if self.proxy_url:
            env["HTTPS_PROXY"] = self.proxy_url
        if self.ca_file:
            env["SSL_CERT_FILE"] = self.ca_file
        return env

    def _check_daemon(self) -> None:
        try:
            done = subprocess.run([self.binary, "--address", self.address, "--timeout", "10s", "version"],
                                  capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL,
                                  env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0 or "Server:" not in done.stdout:
            why = _first_line(done.stderr) if done is not None else "no answer within 15s"
            raise EnvironmentProblem(
                f"engine containerd cannot run: no containerd answers at {self.address} ({why}); "
                "start the lab with the containerd engine, set CONTAINERD_ADDRESS, or use --engine builtin"
            )

    def _forget_images(self, deadline: float) -> None:
        """Remove every image of the engine's namespace and collect their content
        and snapshots (--sync), so the pull fetches everything again: content
        still referenced under any name (the mirror-only name of the same image,
        say) would not be downloaded. A pull running beside this one (a step
        with concurrency) keeps its content: its lease protects it until it
        ends (measured: 8 pulls side by side, each clearing the namespace, all
        succeed)."""
        budget = max(1.0, min(REMOVE_TIMEOUT_S, deadline - time.monotonic()))
        names = self._ctr(["images", "ls", "--quiet"], budget).stdout.split()
        if names:
            self._ctr(["images", "rm", "--sync", *names], budget)

    def _ctr(self, args: list[str], budget: float) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run([*self._global_args(budget, debug=False), *args],
                                  capture_output=True, text=True, timeout=budget + 5, stdin=subprocess.DEVNULL,
                                  env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"engine containerd: ctr {' '.join(args[:2])} took more than {budget:.0f}s") from None
        if done.returncode != 0 and "not found" not in done.stderr:
            raise EnvironmentProblem(f"engine containerd: ctr {' '.join(args[:2])} failed: {_first_line(done.stderr)}")
        return done


@dataclass
class _Request:
    method: str
    url: str
    digest: str | None
    media_type: str | None
    size: int | None
    status: str | None = None  # "404 Not Found"
    challenge: str = ""  # the answer's WWW-Authenticate (a 401's error="insufficient_scope" means DENIED)
    error: str | None = None  # why no answer came, when ctr said


@dataclass
class _Account:
    """ctr's own account of one pull: every request, in order, with its answer."""

    requests: list[_Request] = field(default_factory=list)
    resolve_errors: list[tuple[str, str]] = field(default_factory=list)  # (host, error) of "trying next host"

    @classmethod
    def parse(cls, text: str, mirror_host: str | None) -> _Account:
        account = cls()
        waiting: dict[str, list[_Request]] = {}
        for line in text.splitlines():
            if "msg=" not in line:
                continue
            fields = _fields(line)
            message = fields.get("msg", "")
            if message == "do request" and "url" in fields:
                size = fields.get("size")
                request = _Request(fields.get("request.method", "GET"), fields["url"], fields.get("digest"),
                                   fields.get("mediatype"), int(size) if size and size.isdigit() else None)
                account.requests.append(request)
                waiting.setdefault(request.url, []).append(request)
            elif message == "fetch response received" and waiting.get(fields.get("url", "")):
                request = waiting[fields["url"]].pop(0)
                request.status = fields.get("response.status")
                request.challenge = fields.get("response.header.www-authenticate", "")
            elif message == "trying next host" and "error" in fields:
                account.resolve_errors.append((fields.get("host", ""), fields["error"]))
        for host, error in account.resolve_errors:
            for request in account.requests:
                if request.status is None and request.error is None and urlsplit(request.url).netloc == host:
                    request.error = error
                    break
        return account

    @property
    def bytes(self) -> int:
        """The sizes of the descriptors fetched (each once, whichever host gave it)."""
        sizes = {r.digest: r.size for r in self.requests if r.digest and r.size and _ok(r.status) and r.method == "GET"}
        return sum(sizes.values())

    def pending(self) -> str | None:
        """The first request still without an answer when the deadline came, if
        any: what a timed-out pull waited for (the requests after it were
        cut short by the same deadline)."""
        for request in self.requests:
            if request.status is None and (request.error is None or _deadline_error(request.error)):
                return f'{request.method} "{request.url}"'
        return None

    def platform_manifest(self, mirror_host: str | None) -> tuple[str | None, str | None]:
        """(who served, digest) of the platform image manifest."""
        for request in reversed(self.requests):
            if request.method == "GET" and request.media_type in _MANIFEST_TYPES and _ok(request.status):
                return _endpoint(request.url, mirror_host), request.digest
        return None, None

    def attempts(self, mirror_url: str | None, *, ok: bool, timed_out: bool = False, final: str = "") -> tuple[Attempt, ...]:
        """One attempt per host, in the order first asked: its first failing
        answer; else what the pull's end says about it (the request it still
        waited for when the budget ran out; the blob it served that did not
        match its digest); else ok. Requests ctr abandoned when it stopped for
        another reason say nothing about their host."""
        mirror_host = urlsplit(mirror_url).netloc if mirror_url else None
        hosts: dict[str, list[_Request]] = {}
        for request in self.requests:
            hosts.setdefault(urlsplit(request.url).netloc, []).append(request)
        corrupt = _CORRUPT.search(final)
        corrupt_host = self._served(corrupt.group(1)) if corrupt else None
        out = []
        for index, (host, requests) in enumerate(hosts.items()):
            endpoint = _endpoint(f"//{host}", mirror_host)
            url = mirror_url if endpoint == MIRROR else (REGISTRY_URL if endpoint == HUB else f"https://{host}")
            answered = _answers([r for r in requests if r.status is not None or r.error is not None])
            failed = next((r for r in answered if not _ok(r.status)), None)
            pending = [r for r in requests if r.status is None and (r.error is None or _deadline_error(r.error))]
            if timed_out and pending and (failed is None or failed in pending):
                message = f'no answer to {pending[-1].method} "{pending[-1].url}" before the deadline'
                out.append(Attempt(endpoint, url, False, None, TIMEOUT, message))
            elif failed is not None:
                status = _status_code(failed.status)
                if status is not None:
                    kind = "manifest" if "/manifests/" in failed.url else "blob"
                    message = f'{failed.method} "{failed.url}": {_status_text(failed.status)}'
                    code = code_for_status(status, kind)
                    if status == 401 and 'error="insufficient_scope"' in failed.challenge:
                        code = DENIED  # as distribution's HandleErrorResponse reads the challenge
                    out.append(Attempt(endpoint, url, False, status, code, message))
                else:
                    out.append(Attempt(endpoint, url, False, None, classify(failed.error), failed.error))
            elif corrupt_host == host:
                out.append(Attempt(endpoint, url, False, 200, DIGEST_MISMATCH, final))
            elif not answered and not ok:
                out.append(Attempt(endpoint, url, False, None, None, "no answer before ctr stopped (it failed elsewhere)"))
            else:
                last = index == len(hosts) - 1
                out.append(Attempt(endpoint, url, ok or not last, 200 if answered else None))
        return tuple(out)

    def _served(self, digest: str) -> str | None:
        """The host whose answer gave `digest` (its last 2xx GET)."""
        for request in reversed(self.requests):
            if request.digest == digest and request.method == "GET" and _ok(request.status):
                return urlsplit(request.url).netloc
        return None


def _with_final_error(attempts: tuple[Attempt, ...], code: str, message: str) -> tuple[Attempt, ...]:
    """The pull's error on the last attempt, when no attempt already carries it.
    containerd reports the first failing host's error (not the last's, as
    dockerd does), so the attempt that caused it usually says so itself."""
    if any(attempt.error_code == code for attempt in attempts):
        return attempts
    return with_final_error(attempts, code, message)


def _deadline_error(error: str) -> bool:
    return "deadline exceeded" in error or "context canceled" in error


def _answers(requests: list[_Request]) -> list[_Request]:
    """The last try of each request (a 401 answered again with a token is one request)."""
    last: dict[tuple[str, str], _Request] = {}
    for request in requests:
        last[request.method, request.url] = request
    return list(last.values())


def _ok(status: str | None) -> bool:
    code = _status_code(status)
    return code is not None and 200 <= code < 300


def _status_text(status: str | None) -> str:
    """"429 Too Many Requests" even when the server sent no reason phrase."""
    code = _status_code(status)
    if code is None:
        return status or ""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return status.strip()


def _status_code(status: str | None) -> int | None:
    found = re.match(r"^(\d{3})\b", status or "")
    return int(found.group(1)) if found else None


def _endpoint(url: str, mirror_host: str | None) -> str:
    netloc = urlsplit(url).netloc
    if mirror_host and netloc == mirror_host:
        return MIRROR
    if netloc == REGISTRY_HOST:
        return HUB
    return netloc


def _fields(line: str) -> dict[str, str]:
    """A logrus text line's key=value fields, quoted values unquoted."""
    out = {}
    for key, value in _FIELD.findall(line):
        out[key] = unquote_log_value(value[1:-1]) if value.startswith('"') else value
    return out


def _final_error(text: str) -> str:
    found = _FINAL.findall(text)
    if found:
        return found[-1].strip()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "ctr failed without a message"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1].removeprefix("ctr: ")
