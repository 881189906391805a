import pytest

from chaos.proxy.control_auth import authorized, read_token

TOKEN = "s3cret-token-0123456789"


def test_token_is_read_stripped(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    assert read_token(str(path)) == TOKEN.encode()


@pytest.mark.parametrize(
    "content, problem",
    [
        ("short-secret", "holds 12 characters; a token needs at least 16"),
        ("has a space in it but is long", "printable ASCII without spaces"),
        ("ünïcode-token-ünïcode-token", "printable ASCII"),
    ],
)
def test_unusable_tokens_are_refused_without_showing_them(tmp_path, content, problem):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ValueError) as caught:
        read_token(str(path))
    assert problem in str(caught.value)
    assert content not in str(caught.value)


def test_missing_file_says_why(tmp_path):
    with pytest.raises(ValueError, match="cannot read it: No such file"):
        read_token(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "header, expected",
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN} ", True),
        (f"Bearer {TOKEN}x", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        ("Bearer ", False),
        ("Bearer ünïcode", False),
        ("", False),
        (None, False),
    ],
)
def test_authorized(header, expected):
    assert authorized(header, TOKEN.encode()) is expected
