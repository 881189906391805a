import json
import stat
import time

import pytest

from chaos.errors import UsageError
from chaos.lab.accounts import (
    Accounts,
    CheckedPasswords,
    Repo,
    authenticate,
    granted_actions,
    hash_password,
    is_password_hash,
    namespace,
    verify_password,
)

ACCOUNTS = Accounts(
    users={"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "library": "lib-pw"},
    repositories={
        "alice/public": Repo(),
        "alice/private": Repo(private=True, readers=("bob",)),
        "library/redis": Repo(),
    },
)

ANON, OWNER, READER, OTHER = None, "alice", "bob", "carol"
PUBLIC, PRIVATE, MISSING = "alice/public", "alice/private", "alice/missing"


@pytest.mark.parametrize(
    ("user", "repository", "action", "granted"),
    [
        # public: anyone pulls, only the owner pushes
        (ANON, PUBLIC, "pull", True),
        (OWNER, PUBLIC, "pull", True),
        (READER, PUBLIC, "pull", True),
        (OTHER, PUBLIC, "pull", True),
        (ANON, PUBLIC, "push", False),
        (OWNER, PUBLIC, "push", True),
        (READER, PUBLIC, "push", False),
        (OTHER, PUBLIC, "push", False),
        # private: owner and listed readers pull, only the owner pushes
        (ANON, PRIVATE, "pull", False),
        (OWNER, PRIVATE, "pull", True),
        (READER, PRIVATE, "pull", True),
        (OTHER, PRIVATE, "pull", False),
        (ANON, PRIVATE, "push", False),
        (OWNER, PRIVATE, "push", True),
        (READER, PRIVATE, "push", False),
        (OTHER, PRIVATE, "push", False),
        # missing: looks private to all but the namespace owner, who may create it
        (ANON, MISSING, "pull", False),
        (OWNER, MISSING, "pull", True),
        (READER, MISSING, "pull", False),
        (OTHER, MISSING, "pull", False),
        (ANON, MISSING, "push", False),
        (OWNER, MISSING, "push", True),
        (READER, MISSING, "push", False),
        (OTHER, MISSING, "push", False),
    ],
)
def test_granted_actions_table(user, repository, action, granted):
    assert granted_actions(ACCOUNTS, user, repository, {action}) == ({action} if granted else set())


@pytest.mark.parametrize("user", [ANON, OWNER, "library"])
def test_nobody_pushes_official_images_but_everybody_pulls_them(user):
    assert granted_actions(ACCOUNTS, user, "library/redis", {"pull", "push"}) == {"pull"}


def test_missing_official_image_is_pullable_by_nobody():
    assert granted_actions(ACCOUNTS, "library", "library/nope", {"pull", "push"}) == set()


def test_reader_of_one_private_repo_gets_nothing_on_another():
    accounts = Accounts(
        users=ACCOUNTS.users,
        repositories={**ACCOUNTS.repositories, "alice/other": Repo(private=True)},
    )
    assert granted_actions(accounts, READER, "alice/other", {"pull"}) == set()


def test_owner_is_matched_on_the_whole_first_segment():
    assert granted_actions(ACCOUNTS, "ali", "alice/missing", {"pull", "push"}) == set()


def test_actions_other_than_pull_and_push_are_never_granted():
    assert granted_actions(ACCOUNTS, OWNER, PUBLIC, {"pull", "push", "delete", "*"}) == {"pull", "push"}


def test_namespace_is_the_first_path_segment():
    assert namespace("alice/team/app") == "alice"
    assert namespace("redis") == "redis"


@pytest.mark.parametrize(
    ("user", "password", "ok"),
    [("alice", "alice-pw", True), ("alice", "bob-pw", False), ("alice", "", False), ("nobody", "x", False)],
)
def test_authenticate(user, password, ok):
    assert authenticate(ACCOUNTS, user, password) is ok


def test_file_round_trip_keeps_hashes_never_passwords(tmp_path):
    path = tmp_path / "sub" / "accounts.json"
    ACCOUNTS.to_file(path)
    text = path.read_text()
    assert not any(password in text for password in ACCOUNTS.users.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Accounts.from_file(path)
    assert loaded.users == {} and set(loaded.password_hashes) == set(ACCOUNTS.users)
    assert loaded.repositories == ACCOUNTS.repositories
    assert all(is_password_hash(h) for h in loaded.password_hashes.values())
    for user, password in ACCOUNTS.users.items():
        assert authenticate(loaded, user, password)
        assert not authenticate(loaded, user, password + "x")
    assert loaded.has_user("alice") and not loaded.has_user("nobody")
    assert [p.name for p in path.parent.iterdir()] == ["accounts.json"]  # no temp file left behind
    # Written again from hashes, the file is the same (no hashing twice).
    again = tmp_path / "again.json"
    loaded.to_file(again)
    assert json.loads(again.read_text()) == json.loads(text)


def test_a_hash_is_salted_scrypt_and_checks_only_its_password():
    first, second = hash_password("wonderland"), hash_password("wonderland")
    assert first.startswith("$scrypt$ln=14,r=8,p=1$") and first != second  # a fresh salt each time
    assert verify_password(first, "wonderland") and verify_password(second, "wonderland")
    assert not verify_password(first, "Wonderland") and not verify_password(first, "")
    assert hash_password("pw", salt=b"0123456789abcdef") == hash_password("pw", salt=b"0123456789abcdef")


@pytest.mark.parametrize("bad", ["", "wonderland", "$scrypt$ln=14,r=8,p=1$short$short", "$scrypt$ln=99,r=8,p=1$"
                                 + "A" * 22 + "$" + "A" * 43, "$bcrypt$" + "A" * 60])
def test_a_malformed_hash_verifies_nothing(bad):
    assert not verify_password(bad, "wonderland")
    assert not verify_password(bad, bad)


def test_checked_passwords_hash_each_good_login_once_and_still_refuse_bad_ones():
    password_hash = hash_password("wonderland")
    checked = CheckedPasswords()
    started = time.perf_counter()
    assert checked.verify(password_hash, "wonderland")
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert all(checked.verify(password_hash, "wonderland") for _ in range(20))
    assert time.perf_counter() - started < first  # twenty remembered checks cost less than one scrypt
    assert not checked.verify(password_hash, "alice")
    assert not checked.verify(hash_password("other"), "wonderland")  # remembered per hash, not per password
    assert "wonderland" not in repr(vars(checked))


def test_a_file_with_a_password_in_clear_is_refused_without_echoing_it(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"users": {"alice": "wonderland"}}))
    with pytest.raises(UsageError) as caught:
        Accounts.from_file(path)
    assert str(path) in str(caught.value) and "user 'alice': expected a password hash" in str(caught.value)
    assert "wonderland" not in str(caught.value)


def test_missing_fields_default_to_empty():
    assert Accounts.from_dict({}) == Accounts()
    assert Accounts.from_dict({"repositories": {"a/b": {}}}).repositories == {"a/b": Repo()}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected an object"),
        (json.dumps({"users": {"alice": 1}}), "'users' must map"),
        (json.dumps({"users": []}), "'users' must map"),
        (json.dumps({"repositories": []}), "'repositories' must map"),
        (json.dumps({"repositories": {"a/b": True}}), "repository 'a/b': expected an object"),
        (json.dumps({"repositories": {"a/b": {"private": "yes"}}}), "'private' must be true or false"),
        (json.dumps({"repositories": {"a/b": {"readers": "bob"}}}), "'readers' must be a list"),
    ],
)
def test_malformed_file_is_a_usage_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "accounts.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=problem) as caught:
        Accounts.from_file(path)
    assert str(path) in str(caught.value)


def test_unreadable_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read accounts file"):
        Accounts.from_file(tmp_path / "absent.json")
