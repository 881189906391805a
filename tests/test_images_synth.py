from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from chaos.errors import UsageError
from chaos.images.synth import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    InvalidImageSpec,
    build_image,
    build_index,
)

KIB = 1024


def all_bytes(image) -> list[bytes]:
    return [image.manifest.data, image.config.data, *(layer.data for layer in image.layers)]


def all_digests(image) -> set[str]:
    return {image.manifest.digest, image.config.digest, *(layer.digest for layer in image.layers)}


def untar(layer_data: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_data)))


def test_same_inputs_build_byte_identical_blobs():
    first = build_image("library/test", "1", 200 * KIB, seed="s1", layers=3)
    second = build_image("library/test", "1", 200 * KIB, seed="s1", layers=3)
    assert all_bytes(first) == all_bytes(second)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": "s2"},
        {"name": "library/other"},
        {"tag": "2"},
        {"platform": "linux/arm64"},
        {"size_bytes": 201 * KIB},
    ],
)
def test_any_changed_input_changes_every_digest(change):
    base = {"name": "library/test", "tag": "1", "size_bytes": 200 * KIB, "seed": "s1"}
    original = build_image(**base)
    changed = build_image(**{**base, **change})
    assert not all_digests(original) & all_digests(changed)


def test_layers_of_one_image_differ_from_each_other():
    image = build_image("library/test", "1", 300 * KIB, layers=3)
    assert len({layer.digest for layer in image.layers}) == 3


def test_diff_ids_are_sha256_of_uncompressed_layers():
    image = build_image("library/test", "1", 150 * KIB, layers=3)
    config = json.loads(image.config.data)
    uncompressed = [
        "sha256:" + hashlib.sha256(gzip.decompress(layer.data)).hexdigest()
        for layer in image.layers
    ]
    assert config["rootfs"] == {"type": "layers", "diff_ids": uncompressed}


def test_blob_digest_and_size_describe_the_bytes():
    image = build_image("library/test", "1", 64 * KIB)
    for blob in (image.manifest, image.config, *image.layers):
        assert blob.digest == "sha256:" + hashlib.sha256(blob.data).hexdigest()
        assert blob.size == len(blob.data)


@pytest.mark.parametrize("size", [64 * KIB, 100_000, 1024 * KIB, 5_000_000])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_compressed_layers_total_within_five_percent_of_size(size, layers):
    image = build_image("library/test", "1", size, layers=layers)
    total = sum(layer.size for layer in image.layers)
    assert abs(total - size) <= 0.05 * size


@pytest.mark.parametrize("size", [0, 1, 100])
def test_tiny_sizes_round_up_to_valid_layers(size):
    image = build_image("library/test", "1", size)
    assert sum(layer.size for layer in image.layers) > size
    for layer in image.layers:
        assert untar(layer.data).getnames()


def test_gzip_header_has_no_timestamp():
    layer = build_image("library/test", "1", 64 * KIB).layers[0]
    assert layer.data[:2] == b"\x1f\x8b"
    assert layer.data[4:8] == b"\0\0\0\0"


def test_tar_entries_are_sorted_root_owned_and_timeless():
    image = build_image("library/test", "1", 64 * KIB, layers=2)
    for layer in image.layers:
        members = untar(layer.data).getmembers()
        names = [member.name for member in members]
        assert names == sorted(names)
        assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 1704067200)}


def test_first_layer_names_the_image_in_a_release_file():
    image = build_image("library/test", "7", 64 * KIB, seed="abc", platform="linux/arm64")
    archive = untar(image.layers[0].data)
    text = archive.extractfile("etc/hub-chaos-release").read().decode()
    assert "library/test:7" in text
    assert "linux/arm64" in text
    assert "seed: abc" in text


def test_layer_payload_is_incompressible_random_data():
    image = build_image("library/test", "1", 256 * KIB, layers=1)
    payload = untar(image.layers[0].data).extractfile("opt/hub-chaos/layer-1.bin").read()
    assert len(payload) > 250 * KIB
    assert len(gzip.compress(payload, compresslevel=9)) > len(payload)


def test_config_describes_platform_command_and_history():
    image = build_image("library/test", "1", 64 * KIB, layers=3, platform="linux/arm64")
    config = json.loads(image.config.data)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm64", "v8")
    assert config["config"]["Cmd"] == ["cat", "/etc/hub-chaos-release"]
    assert any(entry.startswith("PATH=") for entry in config["config"]["Env"])
    assert len(config["history"]) == 3
    assert config["created"] == "2024-01-01T00:00:00Z"


def test_amd64_config_has_no_variant():
    config = json.loads(build_image("library/test", "1", 64 * KIB).config.data)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert "variant" not in config


@pytest.mark.parametrize(
    ("media", "manifest_type", "config_type", "layer_type"),
    [
        ("docker", DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
        ("oci", OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    ],
)
def test_manifest_points_at_config_and_layers_with_media_types(
    media, manifest_type, config_type, layer_type
):
    image = build_image("library/test", "1", 64 * KIB, media=media)
    manifest = json.loads(image.manifest.data)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == image.manifest.media_type == manifest_type
    assert manifest["config"] == {
        "mediaType": config_type,
        "size": image.config.size,
        "digest": image.config.digest,
    }
    assert manifest["layers"] == [
        {"mediaType": layer_type, "size": layer.size, "digest": layer.digest}
        for layer in image.layers
    ]


def test_media_kind_does_not_change_layer_content():
    docker = build_image("library/test", "1", 64 * KIB, media="docker")
    oci = build_image("library/test", "1", 64 * KIB, media="oci")
    assert [layer.data for layer in docker.layers] == [layer.data for layer in oci.layers]
    assert docker.manifest.digest != oci.manifest.digest


@pytest.mark.parametrize(
    ("media", "index_type"), [("docker", DOCKER_MANIFEST_LIST), ("oci", OCI_INDEX)]
)
def test_index_lists_each_platform_image(media, index_type):
    index = build_index("library/test", "1", 64 * KIB, media=media)
    document = json.loads(index.index.data)
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == index.index.media_type == index_type
    assert [entry["platform"] for entry in document["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    for entry, image in zip(document["manifests"], index.images, strict=True):
        assert entry["digest"] == image.manifest.digest
        assert entry["size"] == image.manifest.size
        assert entry["mediaType"] == image.manifest.media_type


def test_index_platform_images_have_different_content():
    amd64, arm64 = build_index("library/test", "1", 64 * KIB).images
    assert not all_digests(amd64) & all_digests(arm64)
    assert json.loads(arm64.config.data)["architecture"] == "arm64"


def test_index_child_equals_the_single_platform_image():
    index = build_index("library/test", "1", 64 * KIB, seed="x", platforms=("linux/arm/v7",))
    alone = build_image("library/test", "1", 64 * KIB, seed="x", platform="linux/arm/v7")
    assert index.images[0] == alone
    assert json.loads(index.index.data)["manifests"][0]["platform"]["variant"] == "v7"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"media": "podman"},
        {"platform": "amd64"},
        {"platform": "linux/amd64/v1/extra"},
        {"platform": "Linux/AMD64"},
        {"layers": 0},
        {"size_bytes": "lots"},
    ],
)
def test_bad_image_specs_are_usage_errors(kwargs):
    arguments = {"name": "library/test", "tag": "1", "size_bytes": 1024, **kwargs}
    with pytest.raises(InvalidImageSpec) as caught:
        build_image(**arguments)
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == 2


def test_index_children_have_the_layer_count_asked_for():
    index = build_index("library/test", "1", 64 * KIB, layers=3)
    assert [len(image.layers) for image in index.images] == [3, 3]


def test_index_rejects_duplicate_platforms():
    with pytest.raises(InvalidImageSpec, match="duplicate platform"):
        build_index("library/test", "1", 1024, platforms=("linux/amd64", "linux/amd64"))
