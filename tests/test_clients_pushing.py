"""Pushes with the run's engine: the synthetic image as a docker-archive the
real tools read, and the one-line usage errors. Pushes against the whole lab
(every engine to the mirror) are in test_engines_parity.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile

import pytest

from chaos.clients.image_archive import write_docker_archive
from chaos.clients.pushing import PUSH_SEED, push_with
from chaos.errors import UsageError
from chaos.images.synth import build_image
from chaos.lab.layout import LabState
from chaos.vocab.reference import parse_reference

IMAGE = parse_reference("alice/build-cache:1")
LAB = LabState(root="/nonexistent/lab", mirror_url="http://127.0.0.1:5000")


def test_the_archive_is_docker_saves_format_naming_the_target(tmp_path):
    image = build_image("alice/build-cache", "1", 20_000, seed=PUSH_SEED)
    path = tmp_path / "image.tar"
    write_docker_archive(image, "127.0.0.1:5000/alice/build-cache:1", path)
    with tarfile.open(path) as archive:
        (entry,) = json.load(archive.extractfile("manifest.json"))
        assert entry["RepoTags"] == ["127.0.0.1:5000/alice/build-cache:1"]
        config = archive.extractfile(entry["Config"]).read()
        layers = [archive.extractfile(name).read() for name in entry["Layers"]]
    assert "sha256:" + hashlib.sha256(config).hexdigest() == image.config.digest
    assert ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers] == [b.digest for b in image.layers]


def test_a_real_tool_reads_the_archive_as_the_image_it_is(tmp_path):
    assert shutil.which("skopeo"), "skopeo not found: `make test` installs the Debian package skopeo"
    image = build_image("alice/build-cache", "1", 20_000, seed=PUSH_SEED)
    write_docker_archive(image, "127.0.0.1:5000/alice/build-cache:1", tmp_path / "image.tar")
    done = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--config", f"docker-archive:{tmp_path / 'image.tar'}"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rootfs"]["diff_ids"] == json.loads(image.config.data)["rootfs"]["diff_ids"]


@pytest.mark.parametrize(
    ("engine", "to", "credentials", "wanted"),
    [
        ("podman", "mirror", None, "unknown engine 'podman'"),
        ("docker", "elsewhere", None, "unknown target 'elsewhere'"),
        ("skopeo", "hub", None, "push to hub needs a login"),
        ("containerd", "push-registry", None, "the lab has no push registry"),
    ],
)
def test_a_push_that_cannot_mean_anything_is_a_usage_error(engine, to, credentials, wanted):
    with pytest.raises(UsageError, match=wanted) as caught:
        push_with(engine, LAB, IMAGE, to=to, size_bytes=10_000, credentials=credentials)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
