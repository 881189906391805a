"""Configuration files for the distribution registries of the lab (docker-registry 2.8.2).

Three roles, one binary (`docker-registry serve config.yml`):
- the lab hub: token auth configured exactly like Docker Hub's registry, so its
  challenges are Hub's byte for byte;
- the mirror under test: proxy mode in front of registry-1.docker.io, the
  production pull-through cache configuration;
- the push registry: the blog post's fix for "push to a mirror is
  UNSUPPORTED", a plain registry sharing the mirror's storage, so what is
  pushed there can be pulled through the mirror.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from chaos.errors import EnvironmentProblem, UsageError, quoted
from chaos.vocab.hub import REGISTRY_URL, TOKEN_ISSUER, TOKEN_REALM, TOKEN_SERVICE

# Fixed rather than random: the secret signs upload state, and a registry
# restarted mid-scenario should still accept uploads it began. Loopback only.
HTTP_SECRET = "hub-chaos-lab-not-a-secret"


def _base_config(storage_dir: Path, port: int) -> dict:
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            # Filesystem storage never redirects anyway; said explicitly so a blob
            # GET is always answered by the registry itself.
            "redirect": {"disable": True},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": HTTP_SECRET,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }


def hub_config(storage_dir: Path, port: int, cert_path: Path) -> dict:
    """The lab hub: token auth like Hub's (realm, service, issuer), trusting cert_path."""
    config = _base_config(storage_dir, port)
    config["storage"]["delete"] = {"enabled": True}
    config["auth"] = {
        "token": {
            "realm": TOKEN_REALM,
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(cert_path),
        }
    }
    return config


def mirror_config(storage_dir: Path, port: int, remote_url: str = REGISTRY_URL) -> dict:
    """A pull-through cache of remote_url: anonymous upstream, no auth on the mirror itself."""
    config = _base_config(storage_dir, port)
    config["proxy"] = {"remoteurl": remote_url}
    return config


# -- the user's own mirror configuration (lab.mirror) ---------------------------------

TOP_LEVEL_KEYS = (
    "version", "log", "loglevel", "storage", "auth", "middleware", "reporting", "http", "notifications",
    "redis", "health", "proxy", "compatibility", "validation", "policy",
)  # fmt: skip
"""distribution 2.8's configuration sections (configuration.Configuration)."""
STORAGE_PARAMETERS = ("cache", "delete", "maintenance", "redirect")
"""storage keys that are not a driver: every other key under storage names one."""
MAX_CONFIG_BYTES = 1024 * 1024
SECRET_WORDS = ("password", "secret", "accesskey", "accountkey", "privatekey", "authorization", "credentials")
"""Keys whose values redacted() hides, wherever they sit."""
REDACTED = "<redacted by hub-chaos>"


@dataclass(frozen=True)
class MirrorConfig:
    """The mirror's configuration and which keys of the user's base the lab set or removed."""

    config: dict
    overridden: tuple[str, ...] = ()


def load_user_config(path: Path | str) -> dict:
    """A distribution config file, as the base of the lab's mirror; UsageError
    (one line naming the file) when it is not one."""
    path = Path(path)

    def refuse(why: str) -> UsageError:
        return UsageError(f"{path}: not a distribution registry config: {why}")

    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise refuse(f"{size} bytes (a registry config is at most {MAX_CONFIG_BYTES})")
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the mirror's config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise refuse("not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise refuse(f"YAML error{where}: {getattr(exc, 'problem', None) or 'cannot parse'}") from None
    if not isinstance(data, dict):
        raise refuse("expected a YAML mapping with `version: 0.1`")
    if "version" not in data:
        raise refuse("no `version` (distribution configs start with `version: 0.1`)")
    if str(data["version"]) != "0.1":
        raise refuse(f"version {quoted(data['version'])} (distribution 2.x reads version 0.1)")
    unknown = [str(key) for key in data if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise refuse(f"unknown section {quoted(unknown[0])} (expected: {', '.join(TOP_LEVEL_KEYS)})")
    for section in ("log", "storage", "http", "proxy", "auth", "redis", "health", "middleware", "notifications"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise refuse(f"`{section}` must be a mapping")
    return data


def upstream_login_problem(base: Mapping, passwords: Mapping[str, str]) -> str | None:
    """Why the upstream login a user's config carries (proxy.username and
    password) cannot work against the lab hub, whose accounts are the lab's
    users; None when it can (or when there is none)."""
    proxy = base.get("proxy") if isinstance(base.get("proxy"), dict) else {}
    username = proxy.get("username")
    if not username:
        return None
    if username not in passwords:
        return (f"proxy.username {quoted(username)} is not a lab user: the lab hub refuses its login, so the "
                "mirror's upstream requests fail (name a lab user in lab.mirror.upstream_login)")
    if str(proxy.get("password", "")) != passwords[username]:
        return (f"proxy.password is not the password of lab user {quoted(username)}: the lab hub refuses its login "
                "(name the user in lab.mirror.upstream_login instead)")
    return None


def go_duration(seconds: float) -> str:
    """seconds as Go's time.Duration.String() writes it ("168h0m0s", "1m30s",
    "1.5s", "500ms"): what distribution's proxy.ttl parses."""
    nanos = round(seconds * 1e9)
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, scale in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= scale:
                return sign + _decimal(nanos, scale) + unit
    text = _decimal(nanos % 60_000_000_000, 1_000_000_000) + "s"
    minutes = nanos // 60_000_000_000
    if minutes:
        text = f"{minutes % 60}m" + text
        if minutes // 60:
            text = f"{minutes // 60}h" + text
    return sign + text


def _decimal(value: int, scale: int) -> str:
    """value / scale with the fraction's trailing zeros (and a bare point) dropped, as Go's fmtFrac."""
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def mirror_config_from(
    base: Mapping | None,
    storage_dir: Path,
    port: int,
    remote_url: str = REGISTRY_URL,
    *,
    username: str | None = None,
    password: str | None = None,
    ttl_s: float | None = None,
) -> MirrorConfig:
    """The lab's mirror configuration on top of base (a user's config from
    load_user_config, or None for the lab's own). The lab sets only what it
    must: the listen address (plain HTTP on loopback: http.addr, no TLS, no
    unix socket), the storage folder (a filesystem driver, replacing any
    other), the upstream (proxy.remoteurl), no auth on the mirror itself (the
    lab's clients pull anonymously from it), and what lab.mirror asks
    (proxy.username/password, proxy.ttl). Everything else of base is kept:
    cache, TTL, credentials, middleware, log, notifications...
    overridden lists the dotted keys of base the lab changed or removed."""
    config = mirror_config(storage_dir, port, remote_url) if base is None else copy.deepcopy(dict(base))
    overridden: list[str] = []

    def section(name: str) -> dict:
        if not isinstance(config.get(name), dict):
            config[name] = {}
        return config[name]

    def put(parent: dict, key: str, value: object, dotted: str) -> None:
        if base is not None and parent.get(key) != value:
            overridden.append(dotted)
        parent[key] = value

    def drop(parent: dict, key: str, dotted: str) -> None:
        if key in parent:
            overridden.append(dotted)
            del parent[key]

    http = section("http")
    put(http, "addr", f"127.0.0.1:{port}", "http.addr")
    if http.get("net", "tcp") != "tcp":
        drop(http, "net", "http.net")
    drop(http, "tls", "http.tls")
    http.setdefault("secret", HTTP_SECRET)
    storage = section("storage")
    for driver in [key for key in storage if key not in STORAGE_PARAMETERS and key != "filesystem"]:
        drop(storage, driver, f"storage.{driver}")
    filesystem = storage.get("filesystem") if isinstance(storage.get("filesystem"), dict) else {}
    storage["filesystem"] = filesystem
    put(filesystem, "rootdirectory", str(storage_dir), "storage.filesystem.rootdirectory")
    drop(config, "auth", "auth")
    proxy = section("proxy")
    put(proxy, "remoteurl", remote_url, "proxy.remoteurl")
    if username is not None:
        put(proxy, "username", username, "proxy.username")
        put(proxy, "password", password or "", "proxy.password")
    if ttl_s is not None:
        if not ttl_s > 0:
            raise UsageError(f"lab.mirror.ttl: {ttl_s:g}s: must be a positive duration")
        put(proxy, "ttl", go_duration(ttl_s), "proxy.ttl")
    return MirrorConfig(config, tuple(overridden))


def redacted(config: object) -> object:
    """config with the value of every secret-looking key (SECRET_WORDS) replaced:
    what a run folder may keep as evidence."""
    if isinstance(config, dict):
        return {
            key: REDACTED if _secret_key(key) and not isinstance(value, (dict, list)) else redacted(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [redacted(item) for item in config]
    return config


def _secret_key(key: object) -> bool:
    lowered = str(key).lower()
    return any(word in lowered for word in SECRET_WORDS)


def push_config(storage_dir: Path, port: int) -> dict:
    """A plain registry (no proxy, no auth) to share the mirror's storage_dir and take pushes."""
    return _base_config(storage_dir, port)


def write_config(config: dict, path: Path) -> Path:
    """Write config as YAML for `docker-registry serve`, readable by its owner
    only (it may hold the mirror's upstream password); returns path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(yaml.safe_dump(config, sort_keys=False, default_flow_style=False))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EnvironmentProblem(f"cannot write registry config {path}: {exc.strerror}") from exc
    return path


def redact_config_file(path: Path) -> bool:
    """Rewrite a registry config written by write_config with its secrets
    redacted (at stop: the run folder keeps the config as evidence, not the
    password). True when it held a secret."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    clean = redacted(config)
    if clean == config:
        return False
    write_config(clean, path)
    return True
