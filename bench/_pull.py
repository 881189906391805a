"""A lean image pull from a mirror, timed: manifest, then config and layers.

Blobs are fetched `concurrency` at a time (a Docker daemon's default
max-concurrent-downloads is 3) and read in 1 MiB chunks and dropped, so the
client costs as little CPU as it can: on 2 cores the client, the mirror, the
hub and the proxy all share the same CPUs, and the benchmark must measure the
proxy, not this client. Byte counts are checked; digests are the mirror's job.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
CHUNK = 1 << 20
TIMEOUT_S = 120.0  # per read: a stuck pull fails instead of hanging the benchmark


@dataclass(frozen=True)
class Pulled:
    seconds: float
    bytes: int


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # straight to the mirror on loopback
    return session


def _fetch_blob(url: str, size: int) -> int:
    with _session() as session, session.get(url, stream=True, timeout=TIMEOUT_S) as response:
        response.raise_for_status()
        got = 0
        for chunk in response.iter_content(CHUNK):
            got += len(chunk)
    if got != size:
        raise RuntimeError(f"{url}: got {got} bytes, expected {size}")
    return got


def pull(mirror_url: str, repository: str, tag: str, *, concurrency: int = 3) -> Pulled:
    """Pull repository:tag through the mirror; the time covers the first request to the last byte."""
    started = time.perf_counter()
    with _session() as session:
        response = session.get(f"{mirror_url}/v2/{repository}/manifests/{tag}",
                               headers={"Accept": MANIFEST_TYPES}, timeout=TIMEOUT_S)
        response.raise_for_status()
        manifest = response.json()
    blobs = [manifest["config"], *manifest["layers"]]
    with ThreadPoolExecutor(concurrency) as pool:
        sizes = list(pool.map(lambda d: _fetch_blob(f"{mirror_url}/v2/{repository}/blobs/{d['digest']}", d["size"]), blobs))
    return Pulled(time.perf_counter() - started, sum(sizes))
