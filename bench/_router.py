"""The least addon a Hub-shaped mitmdump needs: send each Hub host to its lab
upstream (`--set bench_routes=HOST=URL,...`). No tap, no faults, no metrics:
mitmdump with this script is the floor of what intercepting every byte costs."""

from __future__ import annotations

from urllib.parse import urlsplit

from mitmproxy import ctx, http


class Router:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, str, int]] = {}

    def load(self, loader) -> None:
        loader.add_option("bench_routes", str, "", "HOST=https://IP:PORT,...")

    def configure(self, updated) -> None:
        if "bench_routes" in updated:
            self.routes = {}
            for item in filter(None, ctx.options.bench_routes.split(",")):
                host, _, url = item.partition("=")
                parts = urlsplit(url)
                self.routes[host] = (parts.scheme, parts.hostname, parts.port)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        route = self.routes.get(flow.request.host)
        if route is not None:
            host_header = flow.request.host_header
            flow.request.scheme, flow.request.host, flow.request.port = route
            flow.request.host_header = host_header


addons = [Router()]
