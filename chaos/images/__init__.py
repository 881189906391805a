"""Synthetic images (deterministic from a seed) and pushing them to a registry."""

from chaos.images.push import PushError, RegistryHTTPError, RegistryUnreachable, push_image
from chaos.images.synth import (
    Blob,
    InvalidImageSpec,
    SyntheticImage,
    SyntheticIndex,
    build_image,
    build_index,
)

__all__ = [
    "Blob",
    "InvalidImageSpec",
    "PushError",
    "RegistryHTTPError",
    "RegistryUnreachable",
    "SyntheticImage",
    "SyntheticIndex",
    "build_image",
    "build_index",
    "push_image",
]
