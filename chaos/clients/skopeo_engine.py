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

PullResult fields: served_by from skopeo's own --debug account (`Trying to
access "<mirror>/..."` or `"docker.io/..."`: the last one tried served);
digest = sha256 of the manifest skopeo wrote, which for a manifest list is the
platform entry's (--override-os/--override-arch), as the builtin client
reports; bytes = the files skopeo wrote (manifest, config, compressed layers);
raw = skopeo's fatal error line; error_code and message via
chaos.clients.error_map (only the primary's error counts, as in dockerd).
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
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from urllib.parse import urlsplit

from chaos.clients.error_map import classify, docker_message, primary_error, unquote_log_value
from chaos.vocab.names import HUB, MIRROR
from chaos.vocab.codes import TIMEOUT, TOOMANYREQUESTS
from chaos.vocab.hub import REGISTRY_URL
from chaos.vocab.results import Attempt, PullResult, PushResult, with_final_error
from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab.binaries import require_skopeo
from chaos.vocab.reference import ImageReference

log = logging.getLogger(__name__)
_TRYING = re.compile(r'msg="Trying to access \\"([^"\\]+)\\""')
_FAILED = re.compile(r'msg="Accessing \\"([^"\\]+)\\" failed: ((?:[^"\\]|\\.)*)"')
_BACKOFF = re.compile(r'msg="Too many requests to https?://([^/"]+)/')
_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')
KILL_GRACE_S = 1.0


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
    ):
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {platform!r}: expected os/architecture[/variant]")
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
        argv = [*self._global_args(), "copy", "--src-authfile", str(self.auth_file), f"docker://{ref}", f"dir:{out}"]
        try:
            returncode, timed_out = self._run(argv, log_path, ref.familiar)
            log = log_path.read_text(errors="replace")
            attempts = self._attempts(log, ok=returncode == 0)
            seconds = time.monotonic() - started
            if timed_out:
                message = f"skopeo copy {ref.familiar} did not finish within {self.timeout:g}s (killed)"
                return PullResult(image=str(ref), ok=False, error_code=TIMEOUT, message=message, bytes=_bytes_in(out),
                                  seconds=seconds, attempts=with_final_error(attempts, TIMEOUT, message), raw=message)
            if returncode != 0:
                text = _fatal_text(log)
                code = classify(text)
                message = docker_message(code, ref, text)
                backoffs = _BACKOFF.findall(log)
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

    def push(self, image: ImageReference, registry_url: str, *, source: ImageReference) -> PushResult:
        """`skopeo copy docker://docker.io/<source> docker://<registry>/<image>`:
        the source comes through the mirror, the copy goes to registry_url."""
        started = time.monotonic()
        run = next(self._runs)
        log_path = self.workdir / f"skopeo-{run}.log"
        parts = urlsplit(registry_url)
        target = f"docker://{parts.netloc}/{image.repository}:{image.tag or 'latest'}"
        argv = [*self._global_args(), "copy", "--src-authfile", str(self.auth_file),
                f"--dest-tls-verify={'false' if parts.scheme == 'http' else 'true'}", f"docker://{source}", target]
        try:
            returncode, timed_out = self._run(argv, log_path, image.familiar)
            text = _fatal_text(log_path.read_text(errors="replace"))
        finally:
            log_path.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        if timed_out:
            return PushResult(image=str(image), target=registry_url, ok=False, error_code=TIMEOUT,
                              message=f"skopeo copy to {target} did not finish within {self.timeout:g}s", seconds=seconds)
        if returncode != 0:
            return PushResult(image=str(image), target=registry_url, ok=False, error_code=classify(text), message=text, seconds=seconds)
        return PushResult(image=str(image), target=registry_url, ok=True, seconds=seconds)

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
        """Run skopeo in its own process group, its progress lines (stdout) shown
        as they come, its debug log (stderr) to log_path. (returncode, timed_out);
        a run past the timeout is killed, group and all."""
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                        env=self._env(), start_new_session=True)
            except OSError as exc:
                raise EnvironmentProblem(f"engine skopeo cannot run: {self.binary}: {exc.strerror}") from None
        reader = threading.Thread(target=self._forward, args=(proc, label), daemon=True)
        reader.start()
        try:
            # skopeo's own --command-timeout normally ends it first, with its own message.
            proc.wait(timeout=self.timeout + KILL_GRACE_S)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
            reader.join(timeout=5)
            proc.stdout.close()
        return proc.returncode, timed_out

    def _forward(self, proc: subprocess.Popen, label: str) -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line:
                log.info(f"{label} {line}")

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
                attempts.append(Attempt(endpoint, url, ok))
            else:
                attempts.append(Attempt(endpoint, url, False, error_code=classify(error or ""), message=error))
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
