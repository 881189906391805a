"""The skopeo engine: containers/image (what podman, buildah and CRI-O pull
with) through `skopeo copy docker://docker.io/... dir:...`.

Configuration is generated per engine in a private folder, so the user's own
containers configuration never decides anything:
- registries.conf (v2) declaring the lab mirror for docker.io; containers/image
  tries mirrors in order, then the primary location (registry-1.docker.io);
- an auth file in the format skopeo reads ({"auths": {"docker.io": {"auth":
  base64(user:password)}}}) for logins; it names docker.io only, so the
  credentials never go to the mirror;
- HTTPS_PROXY and SSL_CERT_FILE so Hub is reached through the fault proxy
  (Go never proxies the loopback mirror), HOME and XDG_RUNTIME_DIR pointing
  into the private folder.

timeout is the whole pull's budget (--command-timeout); containers/image has
no other limit on an answer (a 30 s dial, a 10 s TLS handshake), and backs
off on 429 (2, 4, 8... s).

mirror_only copies `docker://<mirror host>/<repository>:<tag>` from the mirror
as from any registry (--src-tls-verify=false for a plain-http mirror).

PullResult fields: served_by from skopeo's own --debug account (`Trying to
access "<mirror>/..."` or `"docker.io/..."`: the last one tried served);
digest = sha256 of the manifest skopeo wrote, which for a manifest list is the
platform entry's (--override-os/--override-arch), as the builtin client
reports; bytes = the files skopeo wrote (manifest, config, compressed layers);
raw = skopeo's fatal error line; error_code and message via
chaos.clients.error_map (only the primary's error counts, as in dockerd);
attempts from the same account, each failed one with the error skopeo gave
for it ("Accessing ... failed: ..."), its code and the HTTP status the text
quotes or the code implies.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from urllib.parse import urlsplit

from chaos.clients.child import run_child
from chaos.clients.error_map import answer_status, classify, docker_message, primary_error, unquote_log_value
from chaos.errors import UsageError
from chaos.lab.binaries import require_skopeo
from chaos.vocab.codes import TIMEOUT, TOOMANYREQUESTS
from chaos.vocab.hub import REGISTRY_URL
from chaos.vocab.names import HUB, MIRROR
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import Attempt, PullResult, PushResult, with_final_error

log = logging.getLogger(__name__)
_TRYING = re.compile(r'msg="Trying to access \\"([^"\\]+)\\""')
_FAILED = re.compile(r'msg="Accessing \\"([^"\\]+)\\" failed: ((?:[^"\\]|\\.)*)"')
_BACKOFF = re.compile(r'msg="Too many requests to https?://([^/"]+)/')
_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')


def registries_conf(mirror_url: str | None) -> str:
    """registries.conf (v2) sending docker.io pulls to the mirror first."""
    lines = ['unqualified-search-registries = ["docker.io"]', "", "[[registry]]", 'prefix = "docker.io"', 'location = "docker.io"']
    if mirror_url:
        parts = urlsplit(mirror_url)
        lines += ["", "[[registry.mirror]]", f'location = "{parts.netloc}{parts.path.rstrip("/")}"',
                  f"insecure = {'true' if parts.scheme == 'http' else 'false'}"]
    return "\n".join(lines) + "\n"


def auth_file(credentials: tuple[str, str] | None) -> str:
    """The auth file skopeo reads (containers-auth.json(5)); empty when logged out."""
    if not credentials:
        return json.dumps({"auths": {}})
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
    return json.dumps({"auths": {"docker.io": {"auth": token}}})


class SkopeoEngine:
    name = "skopeo"

    def __init__(
        self,
        *,
        mirror_url: str | None,
        proxy_url: str | None,
        ca_file: str | None,
        credentials: tuple[str, str] | None,
        timeout: float,
        platform: str = "linux/amd64",
        binary: str = "skopeo",
        mirror_only: bool = False,
    ):
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {platform!r}: expected os/architecture[/variant]")
        if mirror_only and not mirror_url:
            raise UsageError("a pull from the mirror only needs a mirror")
        self.mirror_only = mirror_only
        self.binary = require_skopeo(binary)
        self.mirror_url = mirror_url
        self.mirror_host = urlsplit(mirror_url).netloc if mirror_url else None
        self.proxy_url = proxy_url
        self.ca_file = ca_file
        self.timeout = timeout
        self.platform = parts
        self.workdir = Path(tempfile.mkdtemp(prefix="hc-skopeo-"))
        self.registries_conf = self.workdir / "registries.conf"
        self.registries_conf.write_text(registries_conf(mirror_url))
        self.auth_file = self.workdir / "auth.json"
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(auth_file(credentials))
        self._runs = itertools.count(1)
        # The folder goes when the engine does, even if nobody calls close().
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.workdir, True)

    def close(self) -> None:
        self._cleanup()

    # -- pull ----------------------------------------------------------------

    def pull(self, ref: ImageReference) -> PullResult:
        started = time.monotonic()
        run = next(self._runs)
        out = self.workdir / f"image-{run}"
        log_path = self.workdir / f"skopeo-{run}.log"
        if self.mirror_only:
            source = f"docker://{self.mirror_host}/{ref.repository}" + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")
            insecure = urlsplit(self.mirror_url).scheme == "http"
            argv = [*self._global_args(), "copy", f"--src-tls-verify={'false' if insecure else 'true'}", source, f"dir:{out}"]
        else:
            argv = [*self._global_args(), "copy", "--src-authfile", str(self.auth_file), f"docker://{ref}", f"dir:{out}"]
        try:
            returncode, timed_out = self._run(argv, log_path, ref.familiar)
            log = log_path.read_text(errors="replace")
            if returncode not in (0, None) and not timed_out and "deadline exceeded" in _fatal_text(log):
                timed_out = True  # skopeo's own --command-timeout ended it
            attempts = self._attempts(log, ok=returncode == 0)
            seconds = time.monotonic() - started
            backoffs = _BACKOFF.findall(log)
            if timed_out and not backoffs:
                message = f"skopeo copy {ref.familiar} did not finish within {self.timeout:.1f}s"
                return PullResult(image=str(ref), ok=False, error_code=TIMEOUT, message=message, bytes=_bytes_in(out),
                                  seconds=seconds, attempts=with_final_error(attempts, TIMEOUT, message),
                                  raw=_fatal_text(log) if returncode else message)
            if returncode != 0:
                text = _fatal_text(log)
                code = classify(text)
                message = docker_message(code, ref, text)
                if code == TIMEOUT and backoffs:
                    # containers/image sleeps 2, 4, 8... s on each 429 (honouring
                    # Retry-After): the deadline ran out while Hub kept refusing.
                    code = TOOMANYREQUESTS
                    message = (f"toomanyrequests: {backoffs[-1]} kept answering 429 Too Many Requests; skopeo backed off "
                               f"{len(backoffs)} times until its deadline ({primary_error(text)})")
                return PullResult(image=str(ref), ok=False, error_code=code, message=message, bytes=_bytes_in(out),
                                  seconds=seconds, attempts=with_final_error(attempts, code, message), raw=text)
            manifest = (out / "manifest.json").read_bytes()
            return PullResult(
                image=str(ref), ok=True, served_by=attempts[-1].endpoint if attempts else None,
                digest="sha256:" + hashlib.sha256(manifest).hexdigest(), bytes=_bytes_in(out),
                seconds=seconds, attempts=attempts,
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
            log_path.unlink(missing_ok=True)

    # -- push (an optional ability, chaos.clients.engines.Pusher) -------------

    def push_archive(self, archive: Path, image: str, *, plain_http: bool) -> PushResult:
        """`skopeo copy docker-archive:<archive> docker://<image>`, as podman push
        does; a login goes in the auth file (docker.io only)."""
        started = time.monotonic()
        run = next(self._runs)
        log_path = self.workdir / f"skopeo-{run}.log"
        argv = [*self._global_args(), "copy", "--dest-authfile", str(self.auth_file),
                f"--dest-tls-verify={'false' if plain_http else 'true'}", f"docker-archive:{archive}", f"docker://{image}"]
        try:
            returncode, timed_out = self._run(argv, log_path, image)
            text = _fatal_text(log_path.read_text(errors="replace"))
        finally:
            log_path.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        target = image.split("/", 1)[0]
        if timed_out or (returncode != 0 and classify(text) == TIMEOUT):
            return PushResult(image=image, target=target, ok=False, error_code=TIMEOUT,
                              message=f"skopeo copy to {image} did not finish within {self.timeout:.1f}s", seconds=seconds)
        if returncode != 0:
            code = classify(text)
            return PushResult(image=image, target=target, ok=False, error_code=code, message=text,
                              status=answer_status(code, text), seconds=seconds)
        return PushResult(image=image, target=target, ok=True, seconds=seconds)

    # -- helpers ---------------------------------------------------------------

    def _global_args(self) -> list[str]:
        args = [self.binary, "--debug", "--insecure-policy", "--registries-conf", str(self.registries_conf),
                "--command-timeout", f"{self.timeout:.3f}s",  # a Go duration: fractions allowed
                "--override-os", self.platform[0], "--override-arch", self.platform[1]]
        if len(self.platform) == 3:
            args += ["--override-variant", self.platform[2]]
        return args

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir), "XDG_RUNTIME_DIR": str(self.workdir)}
        if self.proxy_url:
            env["HTTPS_PROXY"] = self.proxy_url
        if self.ca_file:
            env["SSL_CERT_FILE"] = self.ca_file
        return env

    def _run(self, argv: list[str], log_path: Path, label: str) -> tuple[int | None, bool]:
        """(returncode, killed): skopeo in its own process group, never past its deadline."""
        return run_child(argv, env=self._env(), log_path=log_path, label=label, timeout=self.timeout,
                         logger=log, engine="skopeo")

    def _attempts(self, log: str, *, ok: bool) -> tuple[Attempt, ...]:
        tried: list[list] = []
        for line in log.splitlines():
            trying = _TRYING.search(line)
            if trying:
                tried.append([trying.group(1), None])
                continue
            failed = _FAILED.search(line)
            if failed and tried and tried[-1][0] == failed.group(1):
                tried[-1][1] = unquote_log_value(failed.group(2))
        attempts = []
        for index, (location, error) in enumerate(tried):
            endpoint = MIRROR if self.mirror_host and location.startswith(self.mirror_host + "/") else HUB
            url = f"{self.mirror_url}" if endpoint == MIRROR else REGISTRY_URL
            if index == len(tried) - 1 and error is None:
                attempts.append(Attempt(endpoint, url, ok, 200 if ok else None))
            else:
                code = classify(error or "")
                attempts.append(Attempt(endpoint, url, False, answer_status(code, error or ""), code, error))
        return tuple(attempts)


def _fatal_text(log: str) -> str:
    found = _FATAL.findall(log)
    if found:
        return unquote_log_value(found[-1])
    lines = [line for line in log.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "skopeo failed without a message"


def _bytes_in(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and f.name != "version")
