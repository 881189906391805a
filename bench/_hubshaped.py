"""A Hub-shaped set-up for the benchmarks: blobs come from a CDN, as Hub's do.

    mirror --TLS--> hub registry   (manifests; blob GETs answer 307)
       \\--TLS--> blob CDN          (every blob byte)

One CA signs everything: the hubs' and the CDN's certificates, and, being
the CA in each fault proxy's confdir, every certificate mitmproxy makes when
it intercepts. So every mirror trusts that one file (SSL_CERT_FILE), whether
it talks to the hub and CDN directly or through a proxy that intercepts or
relays them; that is also how the lab's pass-through is meant to be set up
(chaos.proxy.upstream_tls).

Who answers the 307 differs by path, so each path gets a hub of its own over
the same storage (the same distribution binary):
- `direct`: the registry itself redirects (distribution's `redirect` storage
  middleware) to the CDN on 127.0.0.1;
- through the fault proxy: the lab's way, the proxy's CdnRedirect answers
  the 307 with a signed URL on production.cloudflare.docker.com (after its
  Range: bytes=0-0 probe), and the proxy routes that host to the CDN;
- the mitmproxy floor: the registry redirects to production.cloudflare.docker.com,
  which a plain mitmdump with a bare routing script sends to the CDN.
"""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path

from _stack import Proxy, Stack
from mitmproxy.certs import CertStore

from chaos.lab.components import cdn as lab_cdn
from chaos.lab.components import proxy as lab_proxy
from chaos.lab.components.launch import Launch, clean_env, http_ok, loopback_url
from chaos.lab.components.proxy import PROXY_TUNING, mitmdump_argv, mitmdump_binary
from chaos.lab.components.registry import serve_registry
from chaos.lab.ports import free_port, free_ports
from chaos.lab.registry_config import push_config
from chaos.proxy.upstream_tls import CA_BASENAME, CA_KEY_SIZE, issue_server_cert
from chaos.vocab.hub import CDN_HOST, REGISTRY_HOST

HERE = Path(__file__).resolve().parent
CDN_SCRIPT = HERE / "_cdn.py"
ROUTER_SCRIPT = HERE / "_router.py"
CA_FILES = (f"{CA_BASENAME}-ca.pem", f"{CA_BASENAME}-ca-cert.pem", f"{CA_BASENAME}-dhparam.pem")


class HubShaped:
    """The CA, the hub storage, the CDN; hubs and proxies on demand, all started through `stack`."""

    def __init__(self, stack: Stack, root: Path):
        self.stack = stack
        self.root = root
        self.ca_dir = root / "ca"
        CertStore.from_store(self.ca_dir, CA_BASENAME, CA_KEY_SIZE)
        self.ca_file = self.ca_dir / f"{CA_BASENAME}-ca-cert.pem"
        self.storage = root / "hub" / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.hub_cert = issue_server_cert(self.ca_dir, root / "tls", (REGISTRY_HOST, "127.0.0.1", "localhost"), name="hub")
        self.cdn_cert = issue_server_cert(self.ca_dir, root / "tls", (CDN_HOST, "127.0.0.1"), name="cdn")
        self.cdn_url: str | None = None
        self.cdn_secret: Path | None = None
        self.hubs: dict[str, str] = {}  # name -> URL

    def hub(self, name: str, *, redirect_to: str | None = None, tls: bool = True) -> str:
        """A plain (no auth) registry over the shared storage, serving TLS (or,
        tls=False, plain HTTP as the lab's hub does today); with redirect_to (a
        base URL), blob GETs answer 307 there. Returns its URL."""
        port = free_port()
        config = push_config(self.storage, port)
        if tls:
            config["http"]["tls"] = {"certificate": str(self.hub_cert.cert_file), "key": str(self.hub_cert.key_file)}
        if redirect_to is not None:
            del config["storage"]["redirect"]  # "disable: true" would win over the middleware
            config["middleware"] = {"storage": [{"name": "redirect", "options": {"baseurl": redirect_to}}]}
        url = loopback_url(port, "https" if tls else "http")
        self.stack.start(serve_registry(
            name, binary=self.stack.registry, config=config, config_path=self.root / name / "config.yml",
            log_path=self.stack.log(name), url=url, ready=http_ok(f"{url}/v2/", verify=str(self.ca_file))))
        self.hubs[name] = url
        return url

    def cdn(self) -> str:
        """The blob CDN over the hub storage, serving TLS (bench/_cdn.py); returns its URL."""
        self.cdn_secret = lab_cdn.write_secret(self.root / "cdn-secret")
        port = free_port()
        url = loopback_url(port, "https")
        argv = (
            sys.executable, str(CDN_SCRIPT),
            "--storage", str(self.storage), "--secret-file", str(self.cdn_secret), "--port", str(port),
            "--cert", str(self.cdn_cert.cert_file), "--key", str(self.cdn_cert.key_file),
            "--log", str(self.stack.log("cdn-requests")),
        )  # fmt: skip
        env = clean_env({"PYTHONPATH": str(HERE.parent)})
        self.stack.start(Launch("cdn", argv, http_ok(f"{url}/healthz", verify=str(self.ca_file)),
                                self.stack.log("cdn"), url=url, env=env))
        self.cdn_url = url
        return url

    def confdir(self, name: str) -> Path:
        """A proxy's confdir holding the shared CA (mitmproxy uses the CA it finds there)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name in CA_FILES:
            shutil.copy2(self.ca_dir / file_name, folder / file_name)
        return folder

    def fault_proxy(self, name: str, hub_url: str, extra: tuple[str, ...] = (), *, http2: bool = False,
                    drop: tuple[str, ...] = ()) -> Proxy:
        """The lab's fault proxy (its launcher, its tuning): registry -> hub_url,
        cdn -> the TLS CDN (pass-through possible), 307s by CdnRedirect.
        http2: mitmproxy's own default instead of the lab's http2=false.
        drop: options to leave out even if the lab's launcher sets them."""
        assert self.cdn_url is not None and self.cdn_secret is not None
        confdir = self.confdir(name)
        port, control_port = free_ports(2)
        launch = lab_proxy.fault_proxy(
            mitmdump=mitmdump_binary(), port=port, control_port=control_port, confdir=confdir,
            routes={"registry": hub_url, "cdn": self.cdn_url}, cdn_secret_file=self.cdn_secret,
            log_path=self.stack.log(name), name=name,
            extra=("--set", f"ssl_verify_upstream_trusted_ca={self.ca_file}", *extra),
        )
        launch = replace(launch, argv=_without_repeats(launch.argv, drop))
        if http2:
            launch = replace(launch, argv=tuple("http2=true" if a == "http2=false" else a for a in launch.argv))
        process = self.stack.start(launch)
        return Proxy(launch.url, lab_proxy.ca_file(confdir), loopback_url(control_port), process)

    def floor_proxy(self, name: str, hub_url: str, extra: tuple[str, ...] = ()) -> Proxy:
        """Plain mitmdump intercepting everything, with only a routing script."""
        assert self.cdn_url is not None
        confdir = self.confdir(name)
        port = free_port()
        routes = f"{REGISTRY_HOST}={hub_url},{CDN_HOST}={self.cdn_url}"
        argv = (
            *mitmdump_argv(mitmdump_binary(), port=port, confdir=confdir), *PROXY_TUNING,
            "-s", str(ROUTER_SCRIPT), "--set", f"bench_routes={routes}",
            "--set", f"ssl_verify_upstream_trusted_ca={self.ca_file}", *extra,
        )  # fmt: skip
        ca_file = confdir / f"{CA_BASENAME}-ca-cert.pem"
        url = loopback_url(port)

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True

        process = self.stack.start(Launch(name, argv, ready, self.stack.log(name), url=url))
        return Proxy(url, ca_file, None, process)


def _without_repeats(argv: tuple[str, ...], drop: tuple[str, ...] = ()) -> tuple[str, ...]:
    """argv without a later `--set NAME=...` for a NAME set before (mitmproxy refuses
    an option given twice: the lab's launcher may already set what the bench
    adds), and without any `--set NAME=...` of `drop`."""
    seen: set[str] = set(drop)
    out: list[str] = []
    index = 0
    while index < len(argv):
        if argv[index] == "--set" and index + 1 < len(argv):
            name = argv[index + 1].split("=", 1)[0]
            if name not in seen:
                seen.add(name)
                out += argv[index:index + 2]
            index += 2
            continue
        out.append(argv[index])
        index += 1
    return tuple(out)
