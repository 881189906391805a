"""The CDN URL contract shared by the redirecting addon and the lab's CDN."""

import pytest

from chaos.errors import UsageError
from chaos.proxy.cdn_urls import blob_path, check_signature, read_secret, sign

SECRET = b"lab-secret-0123456789abcdef"
DIGEST = "sha256:" + "ab" * 32


def test_signature_covers_path_and_expiry():
    path = blob_path(DIGEST)
    good = sign(SECRET, path, 2_000_000_000)
    assert check_signature(SECRET, path, f"verify={good}", 1_000_000_000) is None
    later = good.replace("2000000000", "2000000001", 1)
    assert check_signature(SECRET, path, f"verify={later}", 1_000_000_000) == "bad signature"
    assert check_signature(b"another-secret-0123456789", path, f"verify={good}", 1_000_000_000) == "bad signature"
    assert check_signature(SECRET, path, f"verify={good}&verify={good}", 1_000_000_000) is not None


@pytest.mark.parametrize("digest", ["sha512:" + "a" * 128, "sha256:" + "A" * 64, "sha256:abc", "sha256:" + "a" * 64 + "/.."])
def test_blob_path_refuses_anything_but_sha256_hex(digest):
    with pytest.raises(ValueError):
        blob_path(digest)


def test_read_secret_refuses_missing_and_short_files(tmp_path):
    short = tmp_path / "short"
    short.write_text("tiny\n")
    for path in (tmp_path / "missing", short):
        with pytest.raises(UsageError, match=str(path.name)):
            read_secret(path)
    good = tmp_path / "good"
    good.write_text("s" * 32 + "\n")
    assert read_secret(good) == b"s" * 32
