"""Settings for a mirror of the user's own in front of the lab hub
(`Lab(spec, root, mirror=False)`): what to paste into its configuration and
environment, as data, for the CLI to print.

The mirror keeps its production upstream (`proxy.remoteurl:
https://registry-1.docker.io`) and reaches it through the fault proxy's
listener for origin "mirror" (HTTPS_PROXY), trusting the proxy's CA
(SSL_CERT_FILE for Go programs such as distribution). The proxy listens on
127.0.0.1: the mirror must run on this machine (or reach it through a tunnel).

hub_routes and the CDN secret are what a fault proxy of the user's own
(`mitmdump -s addons/hub_chaos.py`) needs to serve this lab hub instead of the
lab's proxy: `--set hub_routes=...` and `--set hub_cdn_secret_file=...`
(without the secret, blob GETs are not redirected to the CDN), plus
`--set ssl_verify_upstream_trusted_ca=...` (the lab's CDN serves TLS with a
certificate from the lab proxy's CA) and `--set confdir=...` of a folder
holding that CA, or its clients will not trust the CDN either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from chaos.lab.components.proxy import routes_value
from chaos.lab.layout import LabPaths, LabState
from chaos.vocab.hub import CDN_HOST, REGISTRY_URL


@dataclass(frozen=True)
class ExternalMirrorSettings:
    remote_url: str  # the mirror's proxy.remoteurl: production's, unchanged
    https_proxy: str  # HTTPS_PROXY for the mirror: the fault proxy's listener for origin "mirror"
    ca_file: str  # the fault proxy's CA: SSL_CERT_FILE for the mirror (or its system trust store)
    control_url: str  # the fault proxy's control API: `chaos fault|tap --control URL`
    hub_routes: str  # the addon's hub_routes value that serves this lab hub
    cdn_host: str  # the host blob GETs are redirected to
    cdn_secret_file: str  # the addon's hub_cdn_secret_file: signs those redirects (0600)
    upstream_ca_file: str  # mitmproxy's ssl_verify_upstream_trusted_ca: the CA of the lab's TLS CDN
    users_file: str  # the lab users' passwords (0600), for the mirror's proxy.username/password

    def env(self) -> dict[str, str]:
        """The mirror's environment: where Hub traffic goes, and the CA it trusts."""
        return {"HTTPS_PROXY": self.https_proxy, "SSL_CERT_FILE": self.ca_file}

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "env": self.env()}


def external_mirror_settings(state: LabState) -> ExternalMirrorSettings:
    """The settings for a user's mirror in front of the lab described by state."""
    return ExternalMirrorSettings(
        remote_url=REGISTRY_URL,
        https_proxy=state.proxy_urls.get("mirror", state.proxy_url),
        ca_file=state.ca_file,
        control_url=state.control_url,
        hub_routes=routes_value({"registry": state.hub_url, "auth": state.auth_url, "cdn": state.cdn_url}),
        cdn_host=CDN_HOST,
        cdn_secret_file=state.cdn_secret_file,
        upstream_ca_file=state.ca_file,
        users_file=str(LabPaths(Path(state.root)).users_file) if state.root else "",
    )
