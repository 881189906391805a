"""Deterministic synthetic images, valid enough for a real Docker daemon to unpack.

The lab hub cannot hold real public images (the machine has no internet), so it
is seeded with images built here. Every byte is a function of (name, tag, seed,
size, platform, layer count): the same inputs give byte-identical blobs and so
the same digests on every machine, and a different seed gives different digests.

Layers are gzip tar archives whose files hold pseudo-random bytes. Random data
does not compress, so the pushed size (what a mirror stores and a fault proxy
slows down) is the size asked for, within a block of 512 bytes per layer.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass
from functools import cached_property

from chaos.errors import UsageError
from chaos.vocab.units import parse_size

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

_MEDIA_TYPES = {
    "docker": {
        "manifest": DOCKER_MANIFEST,
        "index": DOCKER_MANIFEST_LIST,
        "config": DOCKER_CONFIG,
        "layer": DOCKER_LAYER,
    },
    "oci": {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG, "layer": OCI_LAYER},
}

# One fixed instant for tar entries and config history, so time never leaks into a digest.
_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
_CREATED = "2024-01-01T00:00:00Z"
RELEASE_FILE = "etc/hub-chaos-release"
_RANDOM_CHUNK = 1 << 20
_BLOCK = 512  # tar block
_STORED_MAX = 0xFFFF  # largest deflate stored block
_GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # mtime 0, OS unknown


class InvalidImageSpec(UsageError, ValueError):
    """A size, platform or media kind that cannot describe an image.

    A ValueError too, so callers parsing plain values can catch what they expect.
    """


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @cached_property
    def digest(self) -> str:
        # Cached: layers can be hundreds of MB and the digest is asked for often.
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict:
        """The {mediaType, size, digest} triple a manifest uses to point at this blob."""
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


@dataclass(frozen=True)
class SyntheticImage:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    platform: str  # "linux/amd64", "linux/arm64/v8"

    @property
    def digest(self) -> str:
        """The manifest digest: what a pull by digest and Docker-Content-Digest name."""
        return self.manifest.digest

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config then layers: every blob the manifest references."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class SyntheticIndex:
    index: Blob
    images: tuple[SyntheticImage, ...]

    @property
    def digest(self) -> str:
        return self.index.digest


def build_image(
    name: str,
    tag: str,
    size_bytes: int,
    *,
    seed: str = "",
    layers: int = 2,
    platform: str = "linux/amd64",
    media: str = "docker",
) -> SyntheticImage:
    """A single-platform image whose layers together weigh about `size_bytes`.

    `media` is "docker" (schema2 media types, what Hub serves for most images)
    or "oci". Sizes too small to hold the tar headers are rounded up.
    """
    try:
        size = parse_size(size_bytes)
    except ValueError as exc:
        raise InvalidImageSpec(str(exc)) from None
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise InvalidImageSpec(f"invalid layer count {layers!r}: need at least 1")
    types = _media_types(media)
    os_name, arch, variant = _parse_platform(platform)

    release = (
        f"hub-chaos synthetic image {name}:{tag}\n"
        f"platform: {platform}\n"
        f"seed: {seed}\n"
    ).encode()
    shares = [size // layers] * layers
    shares[0] += size - sum(shares)

    layer_blobs: list[Blob] = []
    diff_ids: list[str] = []
    history: list[dict] = []
    for index, share in enumerate(shares):
        key = _key(name, tag, seed, size, platform, layers, index)
        compressed, diff_id, payload = _build_layer(
            key, index, share, release if index == 0 else None
        )
        layer_blobs.append(Blob(types["layer"], compressed))
        diff_ids.append(diff_id)
        step = f"hub-chaos synthetic layer {index + 1}/{layers} ({payload} random bytes)"
        history.append({"created": _CREATED, "created_by": step})

    config_doc: dict = {"architecture": arch, "os": os_name}
    if variant:
        config_doc["variant"] = variant
    config_doc.update(
        {
            "created": _CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                # The image has no binaries of its own; the command documents intent.
                "Cmd": ["cat", "/" + RELEASE_FILE],
                "Labels": {"io.hub-chaos.image": f"{name}:{tag}", "io.hub-chaos.seed": seed},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
    )
    config = Blob(types["config"], _json(config_doc))
    manifest = Blob(
        types["manifest"],
        _json(
            {
                "schemaVersion": 2,
                "mediaType": types["manifest"],
                "config": config.descriptor(),
                "layers": [blob.descriptor() for blob in layer_blobs],
            }
        ),
    )
    return SyntheticImage(manifest, config, tuple(layer_blobs), platform)


def build_index(
    name: str,
    tag: str,
    size_bytes: int,
    *,
    seed: str = "",
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    layers: int = 2,
    media: str = "docker",
) -> SyntheticIndex:
    """A multi-arch image: one image of `size_bytes` per platform, under a
    manifest list ("docker") or an OCI image index ("oci")."""
    platforms = tuple(platforms)
    if not platforms:
        raise InvalidImageSpec("an index needs at least one platform")
    if len(set(platforms)) != len(platforms):
        raise InvalidImageSpec(f"duplicate platform in {list(platforms)!r}")
    types = _media_types(media)
    images = tuple(
        build_image(name, tag, size_bytes, seed=seed, layers=layers, platform=platform, media=media)
        for platform in platforms
    )
    entries = []
    for image in images:
        os_name, arch, variant = _parse_platform(image.platform)
        platform_doc = {"architecture": arch, "os": os_name}
        if variant:
            platform_doc["variant"] = variant
        entries.append({**image.manifest.descriptor(), "platform": platform_doc})
    index = Blob(
        types["index"],
        _json({"schemaVersion": 2, "mediaType": types["index"], "manifests": entries}),
    )
    return SyntheticIndex(index, images)


def _media_types(media: str) -> dict[str, str]:
    try:
        return _MEDIA_TYPES[media]
    except KeyError:
        raise InvalidImageSpec(
            f"unknown media kind {media!r} (expected one of: {', '.join(_MEDIA_TYPES)})"
        ) from None


def _parse_platform(platform: str) -> tuple[str, str, str | None]:
    """("linux", "arm64", "v8") from "linux/arm64"; arm64 means v8 as Docker reports it."""
    parts = platform.split("/") if isinstance(platform, str) else []
    if len(parts) not in (2, 3) or not all(re.fullmatch(r"[a-z0-9_]+", p) for p in parts):
        raise InvalidImageSpec(
            f"invalid platform {platform!r}: expected os/architecture[/variant], e.g. linux/arm64"
        )
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else ("v8" if arch == "arm64" else None)
    return os_name, arch, variant


def _key(*parts: object) -> bytes:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()


def _json(document: dict) -> bytes:
    return json.dumps(document, indent=3).encode()


def _build_layer(
    key: bytes, index: int, target: int, release: bytes | None
) -> tuple[bytes, str, int]:
    """Compressed layer, diff_id and random payload size for one layer of ~`target` bytes."""
    random_name = f"opt/hub-chaos/layer-{index + 1}.bin"
    entries: list[tuple[str, bytes | None]] = [("opt", None), ("opt/hub-chaos", None)]
    if release is not None:
        entries += [("etc", None), (RELEASE_FILE, release)]
    fixed = _BLOCK * (len(entries) + 1) + 2 * _BLOCK  # headers incl. the random file, end marker
    fixed += sum(_padded(len(data)) for _, data in entries if data is not None)
    # Largest whole-block payload whose gzip stays within target (see _StoredGzip).
    payload = target - fixed - len(_GZIP_HEADER) - 8 - 5 * (target // _STORED_MAX + 1)
    payload = max(0, payload // _BLOCK * _BLOCK)
    entries.append((random_name, b""))  # placeholder: streamed below

    sink = _StoredGzip()
    for path, data in sorted(entries):
        if path == random_name:
            sink.write(_tar_header(path, payload))
            for chunk in _random_stream(key, payload):
                sink.write(chunk)
        elif data is None:
            sink.write(_tar_header(path, None))
        else:
            sink.write(_tar_header(path, len(data)))
            sink.write(data + b"\0" * (_padded(len(data)) - len(data)))
    sink.write(b"\0" * (2 * _BLOCK))  # end of archive; no record padding, it is optional
    compressed, diff_id = sink.close()
    return compressed, diff_id, payload


def _padded(length: int) -> int:
    return -(-length // _BLOCK) * _BLOCK


def _tar_header(path: str, size: int | None) -> bytes:
    """A ustar header: directory when size is None, else a regular file. Owner,
    mode and mtime are fixed so only the content decides the digest."""
    info = tarfile.TarInfo(path)
    info.mtime = _EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if size is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _random_stream(key: bytes, length: int):
    """`length` pseudo-random bytes in 1 MiB chunks: SHAKE-128 of key and chunk
    number, which is fast (~500 MB/s) and identical on every platform."""
    for number, offset in enumerate(range(0, length, _RANDOM_CHUNK)):
        yield hashlib.shake_128(key + number.to_bytes(8, "big")).digest(
            min(_RANDOM_CHUNK, length - offset)
        )


class _StoredGzip:
    """A gzip stream of deflate *stored* blocks, with the sha256 of its input.

    Why not gzip.compress: the layers are random bytes that no compressor can
    shrink, zlib at level 1 spends ~6 s on 256 MB finding that out, and zlib's
    output may change between zlib versions, which would change digests. Stored
    blocks (RFC 1951 section 3.2.4) are plain gzip every reader accepts, cost
    nothing, and make the compressed size exactly computable:
    len = 10 + input + 5 * (input // 65535 + 1) + 8.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = [_GZIP_HEADER]
        self._pending = bytearray()
        self._crc = 0
        self._length = 0
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)
        self._sha.update(data)
        view = memoryview(data)
        if self._pending:
            room = _STORED_MAX - len(self._pending)
            self._pending += view[:room]
            view = view[room:]
            if len(self._pending) < _STORED_MAX:
                return
            self._emit(bytes(self._pending), final=False)
            self._pending.clear()
        while len(view) >= _STORED_MAX:
            self._emit(view[:_STORED_MAX], final=False)
            view = view[_STORED_MAX:]
        self._pending += view

    def close(self) -> tuple[bytes, str]:
        """The gzip bytes and "sha256:<hex>" of the uncompressed input."""
        self._emit(bytes(self._pending), final=True)
        self._parts.append(struct.pack("<II", self._crc, self._length & 0xFFFFFFFF))
        return b"".join(self._parts), "sha256:" + self._sha.hexdigest()

    def _emit(self, block, *, final: bool) -> None:
        size = len(block)
        self._parts.append(struct.pack("<BHH", 1 if final else 0, size, size ^ 0xFFFF))
        self._parts.append(bytes(block))
