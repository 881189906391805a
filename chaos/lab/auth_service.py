"""The lab's auth.docker.io: the token endpoint the lab hub's registry sends clients to.

Plain HTTP on loopback; the fault proxy answers for https://auth.docker.io and
forwards here, so the Host header is never looked at. Behaviour imitates Hub:
- GET /token (optional Basic auth) always issues a token when the credentials
  are right (or absent); it only lists the actions granted, so an anonymous
  pull of a private or missing repository gets a token with empty access and
  the registry then answers 401 insufficient_scope, as Hub's does.
- POST /token is Docker's OAuth2 flow (grant_type=password or refresh_token).
- A wrong password is 401 {"details": "incorrect username or password"}.

Run it: python -m chaos.lab.auth_service --accounts FILE --keys DIR --port N [--log FILE]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

from chaos.errors import ChaosError, UsageError
from chaos.lab.accounts import Accounts, CheckedPasswords, authenticate, granted_actions
from chaos.lab.serving import serve_until_stopped
from chaos.lab.tokens import (
    BadScope,
    BadToken,
    Scope,
    TokenSigner,
    parse_scopes,
)
from chaos.vocab.hub import TOKEN_ISSUER, TOKEN_LIFETIME_S, TOKEN_SERVICE

WRONG_CREDENTIALS = "incorrect username or password"
# Refresh tokens are JWTs from the same key with an audience the registry does
# not accept, so one can never be replayed as a registry bearer token and the
# service keeps no state between requests (or restarts).
REFRESH_AUDIENCE = "auth.docker.io/refresh"
REFRESH_LIFETIME_S = 30 * 24 * 3600
MAX_FORM_BYTES = 64 * 1024
_SECRET_PARAMS = {"password", "refresh_token"}


@dataclass(frozen=True)
class Reply:
    """What one request gets back, plus what the log line needs."""

    status: int
    body: dict
    user: str | None = None
    granted: list[Scope] = field(default_factory=list)
    note: str = ""  # why a request failed, for the log only


def _fail(status: int, details: str, user: str | None = None) -> Reply:
    return Reply(status, {"details": details}, user=user, note=details)


def _issued_at() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AccountsSource:
    """The accounts file, re-read whenever it changes (the lab adds repositories at run time)."""

    def __init__(self, path: Path, on_reload_error: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.on_reload_error = on_reload_error
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._accounts: Accounts | None = None
        self._last_error = ""

    def current(self) -> Accounts:
        """The latest readable accounts; UsageError only if the file has never been readable."""
        with self._lock:
            try:
                st = os.stat(self.path)
                # The inode changes on every atomic replace, the mtime may not tick
                # between two quick writes: compare all three.
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    self._accounts = Accounts.from_file(self.path)
                    self._stamp = stamp
                    self._last_error = ""
            except (OSError, UsageError) as exc:
                message = str(exc) if isinstance(exc, UsageError) else f"{self.path}: {exc.strerror}"
                if self._accounts is None:
                    raise UsageError(message) from exc
                # A lab rewriting the file must not take the hub's auth down: keep
                # the last good copy, and say so once per distinct problem.
                if message != self._last_error and self.on_reload_error:
                    self.on_reload_error(message)
                self._last_error = message
            return self._accounts


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from `Authorization: Basic ...`; None if no Basic auth; ValueError if garbled."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("malformed Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise ValueError("malformed Basic credentials")
    return user, password


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


class AuthService:
    """Token logic, free of HTTP plumbing: query or form in, Reply out."""

    def __init__(self, accounts: AccountsSource, signer: TokenSigner):
        self.accounts = accounts
        self.signer = signer
        self.checked = CheckedPasswords()

    def grant(self, accounts: Accounts, user: str | None, scopes: list[Scope]) -> list[Scope]:
        """The granted part of each requested scope; resources with nothing granted are left out."""
        granted = []
        for scope in scopes:
            if scope.type != "repository":
                continue  # Hub grants no registry:catalog:* to anybody
            allowed = granted_actions(accounts, user, scope.name, set(scope.actions))
            actions = tuple(action for action in scope.actions if action in allowed)
            if actions:
                granted.append(Scope(scope.type, scope.name, actions))
        return granted

    def _access_token(self, user: str | None, granted: list[Scope]) -> str:
        access = [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in granted]
        return self.signer.sign(user or "", access)

    def _refresh_token(self, user: str) -> str:
        return self.signer.sign(user, [], audience=REFRESH_AUDIENCE, expires_in=REFRESH_LIFETIME_S)

    def token_get(self, query: dict[str, list[str]], authorization: str | None) -> Reply:
        """GET /token?service=...&scope=...: Basic auth optional."""
        if _first(query, "service") != TOKEN_SERVICE:
            return _fail(400, f"unknown service {_first(query, 'service')!r}")
        accounts = self.accounts.current()
        try:
            credentials = _basic_credentials(authorization)
        except ValueError:
            return _fail(401, WRONG_CREDENTIALS)
        user = None
        if credentials is not None:
            user, password = credentials
            if not authenticate(accounts, user, password, checked=self.checked):
                return _fail(401, WRONG_CREDENTIALS, user)
        try:
            scopes = parse_scopes(query.get("scope", []))
        except BadScope as exc:
            return _fail(400, str(exc), user)
        granted = self.grant(accounts, user, scopes)
        token = self._access_token(user, granted)
        body = {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_S, "issued_at": _issued_at()}
        if user is not None and _first(query, "offline_token") == "true":
            body["refresh_token"] = self._refresh_token(user)
        return Reply(200, body, user=user, granted=granted)

    def token_post(self, form: dict[str, list[str]]) -> Reply:
        """POST /token, Docker's OAuth2 form: grant_type=password or refresh_token."""
        if _first(form, "service") != TOKEN_SERVICE:
            return _fail(400, f"unknown service {_first(form, 'service')!r}")
        accounts = self.accounts.current()
        grant_type = _first(form, "grant_type")
        refresh_token = None
        if grant_type == "password":
            user = _first(form, "username") or ""
            if not authenticate(accounts, user, _first(form, "password") or "", checked=self.checked):
                return _fail(401, WRONG_CREDENTIALS, user or None)
        elif grant_type == "refresh_token":
            refresh_token = _first(form, "refresh_token") or ""
            try:
                user = self.signer.verify(refresh_token, audience=REFRESH_AUDIENCE, issuer=TOKEN_ISSUER)["sub"]
            except BadToken:
                return _fail(401, "invalid refresh token")
            if not accounts.has_user(user):
                return _fail(401, "invalid refresh token", user)
        else:
            return _fail(400, f"unsupported grant_type {grant_type!r}")
        try:
            scopes = parse_scopes(form.get("scope", []))
        except BadScope as exc:
            return _fail(400, str(exc), user)
        granted = self.grant(accounts, user, scopes)
        body = {
            "access_token": self._access_token(user, granted),
            "scope": " ".join(str(scope) for scope in granted),
            "expires_in": TOKEN_LIFETIME_S,
            "issued_at": _issued_at(),
        }
        if _first(form, "access_type") == "offline":
            # Docker's spec: a refresh token only when offline access is asked for;
            # a refresh grant hands the same one back rather than rotating it.
            body["refresh_token"] = refresh_token or self._refresh_token(user)
        return Reply(200, body, user=user, granted=granted)


class RequestLog:
    """One line per request. Passwords never reach it: they travel in headers and
    form bodies, which are not logged, and secret query parameters are masked."""

    def __init__(self, stream: TextIO | None):
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        if self.stream is None:
            return
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            self.stream.write(f"{stamp} {line}\n")
            self.stream.flush()

    def request(self, method: str, target: str, reply: Reply) -> None:
        granted = " ".join(str(scope) for scope in reply.granted) or "-"
        line = f"{method} {_masked(target)} user={reply.user or '-'} status={reply.status} granted={granted}"
        if reply.note:
            line += f" note={reply.note!r}"
        self.write(line)


def _masked(target: str) -> str:
    parts = urlsplit(target)
    if not parts.query:
        return parts.path
    params = parse_qs(parts.query, keep_blank_values=True)
    safe = [(k, "REDACTED" if k in _SECRET_PARAMS else v) for k, values in params.items() for v in values]
    return f"{parts.path}?{urlencode(safe, safe=':/,')}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients behind the proxy expect
    timeout = 30  # an idle keep-alive connection must not hold a thread forever
    server: AuthServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's stderr access log; RequestLog writes ours."""

    def _dispatch(self) -> None:
        target = urlsplit(self.path)  # origin-form or absolute-form: only path and query count
        try:
            reply = self._route(target.path, parse_qs(target.query, keep_blank_values=True))
        except Exception as exc:  # noqa: BLE001 - one bad request must not look like an outage
            reply = Reply(500, {"details": "internal error"}, note=repr(exc))
        self._send(reply)
        self.server.log.request(self.command, self.path, reply)

    def _route(self, path: str, query: dict[str, list[str]]) -> Reply:
        # Read the body whatever the route: left unread it would corrupt the
        # next request on this keep-alive connection.
        body = self._read_body()
        if body is None:
            return _fail(413, "request body too large")
        service = self.server.service
        if path == "/healthz":
            return Reply(200, {"status": "ok"}) if self.command in ("GET", "HEAD") else _fail(405, "method not allowed")
        if path != "/token":
            return _fail(404, "not found")
        if self.command == "GET":
            return service.token_get(query, self.headers.get("Authorization"))
        if self.command == "POST":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != "application/x-www-form-urlencoded":
                return _fail(400, "expected an application/x-www-form-urlencoded form")
            return service.token_post(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        return _fail(405, "method not allowed")

    def _read_body(self) -> bytes | None:
        """The request body (b"" when none); None when over MAX_FORM_BYTES."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_FORM_BYTES:
            self.close_connection = True  # the unread body would be parsed as the next request
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _dispatch


class AuthServer(ThreadingHTTPServer):
    """The auth service on one loopback port; serve_forever() in a thread or a process."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: AuthService, log: RequestLog):
        self.service = service
        self.log = log
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


def make_server(
    accounts_path: Path,
    signer: TokenSigner,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log: TextIO | None = None,
) -> AuthServer:
    """A bound, not yet serving, auth server (port 0 = pick a free one: read .port).

    The accounts file is read once here so a broken file fails at start, not on
    the first client's request.
    """
    request_log = RequestLog(log)
    accounts = AccountsSource(
        accounts_path, on_reload_error=lambda message: request_log.write(f"keeping previous accounts: {message}")
    )
    accounts.current()
    return AuthServer((host, port), AuthService(accounts, signer), request_log)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.lab.auth_service",
        description="The lab hub's auth.docker.io token service (plain HTTP on loopback).",
    )
    parser.add_argument("--accounts", type=Path, required=True, help="accounts JSON (re-read when it changes)")
    parser.add_argument("--keys", type=Path, required=True, help="directory holding key.pem and cert.pem")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0 = any free port)")
    parser.add_argument("--log", type=Path, help="append one line per request here (default stderr)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    log_stream = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    try:
        server = make_server(args.accounts, TokenSigner.load(args.keys), host=args.host, port=args.port, log=log_stream)
    except ChaosError as exc:
        print(f"auth_service: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"auth_service: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 3
    server.log.write(f"listening on {args.host}:{server.port}")
    serve_until_stopped(server, log_stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
