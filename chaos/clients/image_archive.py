"""A synthetic image as a docker-archive tarball (the `docker save` format:
manifest.json, the config, one folder per layer), so the real engines can
push an image that exists nowhere else: `docker load`, `skopeo copy
docker-archive:...` and `ctr images import` all read it.

Layers are stored as built, gzip-compressed: each of the three tools detects
the compression itself.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from chaos.images.synth import SyntheticImage


def write_docker_archive(image: SyntheticImage, name: str, path: Path) -> None:
    """Write `image` to `path`, tagged `name` (registry/repository:tag)."""
    config_file = f"{image.config.digest.split(':', 1)[1]}.json"
    layer_files = [f"{layer.digest.split(':', 1)[1]}/layer.tar" for layer in image.layers]
    manifest = [{"Config": config_file, "RepoTags": [name], "Layers": layer_files}]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        _add(archive, config_file, image.config.data)
        for file_name, layer in zip(layer_files, image.layers, strict=True):
            _add(archive, file_name, layer.data)
        _add(archive, "manifest.json", json.dumps(manifest).encode())


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))
