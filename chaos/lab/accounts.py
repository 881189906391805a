"""Who may do what on the lab hub: users, passwords, public and private repositories.

Pure data and pure functions; the auth service reads the file, the lab writes it.
The rules imitate Docker Hub: a repository's owner is its namespace (first path
segment); a missing repository looks exactly like a private one to everybody
but that owner, so clients see the same "insufficient_scope" for both.
"""

from __future__ import annotations

import hmac
import json
import os
import tempfile
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


@dataclass(frozen=True)
class Accounts:
    users: dict[str, str] = field(default_factory=dict)  # name -> password
    repositories: dict[str, Repo] = field(default_factory=dict)  # "alice/app" -> Repo

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
            isinstance(name, str) and isinstance(password, str) for name, password in users.items()
        ):
            raise UsageError(f"{source}: 'users' must map user names to password strings")
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
        return cls(users=dict(users), repositories=repositories)

    def to_dict(self) -> dict:
        return {
            "users": dict(self.users),
            "repositories": {
                name: {"private": repo.private, "readers": list(repo.readers)}
                for name, repo in self.repositories.items()
            },
        }

    def to_file(self, path: Path) -> None:
        """Write JSON atomically.

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


def authenticate(accounts: Accounts, user: str, password: str) -> bool:
    """True when user exists and password is its password."""
    expected = accounts.users.get(user)
    return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


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
