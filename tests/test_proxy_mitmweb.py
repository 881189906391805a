"""The addon in mitmweb, mitmproxy's web interface: a person watches Hub traffic
and faults live in a browser while the control API drives the faults.

A real mitmweb on free loopback ports; its page is loaded over HTTP, not in a
browser (that mitmweb's own JavaScript runs is mitmproxy's business)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from chaos.errors import EnvironmentProblem
from chaos.proxy.control_client import ControlClient
from tests.test_proxy_mitmdump import ADDON, REGISTRY, free_port, upstream  # noqa: F401 - upstream: a fixture

pytestmark = pytest.mark.lab

MITMWEB = Path(sys.executable).with_name("mitmweb")


def test_mitmweb_loads_the_addon_and_serves_its_page_and_the_control_api(tmp_path, upstream):
    web_port, proxy_port, control_port = free_port(), free_port(), free_port()
    target = f"http://127.0.0.1:{upstream.server_port}"
    argv = [
        str(MITMWEB), "-s", str(ADDON),
        "--set", "web_open_browser=false", "--set", "web_host=127.0.0.1", "--set", f"web_port={web_port}",
        "--listen-host", "127.0.0.1", "-p", str(proxy_port),
        "--set", f"confdir={tmp_path / 'conf'}", "--set", "connection_strategy=lazy",
        "--set", f"hub_routes=registry={target},auth={target},cdn={target}",
        "--set", f"hub_control=127.0.0.1:{control_port}",
    ]  # fmt: skip
    log = tmp_path / "mitmweb.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with ControlClient(f"http://127.0.0.1:{control_port}", timeout=5) as control:
            try:
                control.wait_ready(deadline_s=20)
            except EnvironmentProblem as err:
                pytest.fail(f"mitmweb not ready: {err}\n{log.read_text(errors='replace')[-3000:]}")
            session = requests.Session()
            session.trust_env = False
            page = session.get(f"http://127.0.0.1:{web_port}/", timeout=10)
            assert page.status_code == 200
            assert "<title>mitmproxy</title>" in page.text and 'id="mitmproxy"' in page.text

            control.add({"name": "manifests-down", "kind": "http", "params": {"status": 503},
                         "match": {"endpoints": ["manifest"]}})  # fmt: skip
            proxied = requests.Session()
            proxied.trust_env = False
            proxied.proxies = {"https": f"http://127.0.0.1:{proxy_port}"}
            proxied.verify = str(tmp_path / "conf" / "mitmproxy-ca-cert.pem")
            assert proxied.get(f"{REGISTRY}/v2/library/alpine/manifests/3", timeout=10).status_code == 503
            assert [f["counters"]["applied"] for f in control.list()] == [1]

            # The same request, in mitmweb's own list of flows (what its page shows).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                flows = session.get(f"http://127.0.0.1:{web_port}/flows", timeout=10).json()
                if flows:
                    break
                time.sleep(0.1)
            assert [(f["request"]["host"], f["response"]["status_code"]) for f in flows] == [("registry-1.docker.io", 503)]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
    output = log.read_text(errors="replace")
    assert "hub-chaos: control API on" in output
    assert "Traceback" not in output, output[-3000:]
