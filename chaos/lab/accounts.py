"""Who may do what on the lab hub: users, passwords, public and private repositories.

Pure data and pure functions; the auth service reads the file, the lab writes it.
The rules imitate Docker Hub: a repository's owner is its namespace (first path
segment); a missing repository looks exactly like a private one to everybody
but that owner, so clients see the same "insufficient_scope" for both.

The file keeps password hashes, as an htpasswd file does, never passwords:
scrypt with a random salt, written as a PHC string
(`$scrypt$ln=14,r=8,p=1$SALT$HASH`, unpadded base64), checked with a
constant-time compare.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from chaos.errors import UsageError

PULL = "pull"
PUSH = "push"
# Hub's official images: no user owns them, so nobody may push through the token service.
OFFICIAL_NAMESPACE = "library"


@dataclass(frozen=True)
class Repo:
    private: bool = False
    readers: tuple[str, ...] = ()  # users besides the owner who may pull a private repo


_SCRYPT_LN, _SCRYPT_R, _SCRYPT_P = 14, 8, 1  # 16 MB, ~50 ms per check
_HASH = re.compile(r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{32,})$")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of password, as a PHC string."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**_SCRYPT_LN, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"$scrypt$ln={_SCRYPT_LN},r={_SCRYPT_R},p={_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    return bool(_HASH.match(text))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether password matches password_hash (constant-time compare); False for a malformed hash."""
    match = _HASH.match(password_hash)
    if not match:
        return False
    ln, r, p = (int(group) for group in match.groups()[:3])
    if not (1 <= ln <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    expected = _unb64(match.group(5))
    try:
        actual = hashlib.scrypt(password.encode(), salt=_unb64(match.group(4)), n=2**ln, r=r, p=p,
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Accounts:
    # name -> password, in memory only (a lab, a test): to_file() writes their hashes.
    users: dict[str, str] = field(default_factory=dict)
    repositories: dict[str, Repo] = field(default_factory=dict)  # "alice/app" -> Repo
    # name -> password hash (what from_file() reads; what to_file() writes).
    password_hashes: dict[str, str] = field(default_factory=dict)

    def hashed(self) -> Accounts:
        """The same accounts with every password replaced by its hash (hashing is slow: do it once)."""
        hashes = dict(self.password_hashes)
        hashes.update({name: hash_password(password) for name, password in self.users.items()})
        return Accounts(repositories=dict(self.repositories), password_hashes=hashes)

    def has_user(self, user: str) -> bool:
        return user in self.users or user in self.password_hashes

    @classmethod
    def from_file(cls, path: Path) -> Accounts:
        """Read the JSON that to_file() writes; UsageError naming the file if malformed."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise UsageError(f"{path}: cannot read accounts file: {exc.strerror}") from exc
        except ValueError as exc:
            raise UsageError(f"{path}: accounts file is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: object, *, source: str = "accounts") -> Accounts:
        if not isinstance(data, dict):
            raise UsageError(f"{source}: expected an object with 'users' and 'repositories'")
        users = data.get("users", {})
        if not isinstance(users, dict) or not all(
            isinstance(name, str) and isinstance(password_hash, str) for name, password_hash in users.items()
        ):
            raise UsageError(f"{source}: 'users' must map user names to password hashes")
        clear = sorted(name for name, password_hash in users.items() if not is_password_hash(password_hash))
        if clear:
            # Never echo the value: it may be a password written in clear.
            raise UsageError(
                f"{source}: user {clear[0]!r}: expected a password hash ($scrypt$...), not a password"
            )
        raw_repos = data.get("repositories", {})
        if not isinstance(raw_repos, dict):
            raise UsageError(f"{source}: 'repositories' must map repository names to objects")
        repositories = {}
        for name, spec in raw_repos.items():
            if not isinstance(spec, dict):
                raise UsageError(f"{source}: repository {name!r}: expected an object")
            private = spec.get("private", False)
            readers = spec.get("readers", [])
            if not isinstance(private, bool):
                raise UsageError(f"{source}: repository {name!r}: 'private' must be true or false")
            if not isinstance(readers, list) or not all(isinstance(r, str) for r in readers):
                raise UsageError(f"{source}: repository {name!r}: 'readers' must be a list of user names")
            repositories[name] = Repo(private=private, readers=tuple(readers))
        return cls(repositories=repositories, password_hashes=dict(users))

    def to_dict(self) -> dict:
        """What the file holds: password hashes, never passwords."""
        hashed = self.hashed() if self.users else self
        return {
            "users": dict(hashed.password_hashes),
            "repositories": {
                name: {"private": repo.private, "readers": list(repo.readers)}
                for name, repo in self.repositories.items()
            },
        }

    def to_file(self, path: Path) -> None:
        """Write JSON atomically, readable by its owner only (mkstemp: 0600).

        The auth service re-reads the file whenever it changes; a rename means
        it never sees a half-written file.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(self.to_dict(), out, indent=2, sort_keys=True)
                out.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def namespace(repository: str) -> str:
    """The first path segment: the owner of `alice/app`, `library` for official images."""
    return repository.split("/", 1)[0]


def authenticate(accounts: Accounts, user: str, password: str, *, checked: CheckedPasswords | None = None) -> bool:
    """True when user exists and password is its password. checked: a memory
    of passwords already verified, so each is hashed once per process."""
    if user in accounts.users:
        return hmac.compare_digest(accounts.users[user].encode(), password.encode())
    password_hash = accounts.password_hashes.get(user)
    if password_hash is None:
        return False
    if checked is not None:
        return checked.verify(password_hash, password)
    return verify_password(password_hash, password)


class CheckedPasswords:
    """Remembers which (hash, password) pairs verified, as a keyed HMAC of the
    password with a key of this process (never the password itself), so an
    auth service checks each login's scrypt hash once, not on every token."""

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._key = os.urandom(32)
        self._good: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        entry = (password_hash, hmac.new(self._key, password.encode(), hashlib.sha256).digest())
        with self._lock:
            if entry in self._good:
                self._good.move_to_end(entry)
                return True
        if not verify_password(password_hash, password):
            return False
        with self._lock:
            self._good[entry] = None
            while len(self._good) > self.capacity:
                self._good.popitem(last=False)
        return True


def granted_actions(accounts: Accounts, user: str | None, repository: str, requested: set[str]) -> set[str]:
    """The subset of requested actions user (None = anonymous) gets on repository.

    Only pull and push exist on the lab hub; anything else is never granted.
    """
    owner = user is not None and namespace(repository) == user and user != OFFICIAL_NAMESPACE
    repo = accounts.repositories.get(repository)
    granted: set[str] = set()
    if PULL in requested:
        if owner or (repo is not None and (not repo.private or (user is not None and user in repo.readers))):
            granted.add(PULL)
    if PUSH in requested and owner:
        granted.add(PUSH)
    return granted
