"""The HTML report: self-contained, escaped, and rendered by a real browser
(Debian's Chromium, headless) with no console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chaos.report.formats import write_format
from tests._journals import failed_journal, passing_journal

CHROMIUM = shutil.which("chromium")
# As the machine's own probe runs it: no sandbox as root, and nothing reaching
# out (a report must render with no network at all).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    "--enable-logging=stderr", "--v=0",
)


def render(tmp_path: Path, *extra: str, page: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium not found: `make test` installs the Debian package chromium"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )


@pytest.fixture
def page(tmp_path) -> Path:
    path = tmp_path / "report.html"
    write_format("html", [passing_journal(), failed_journal()], path)
    return path


def test_the_page_needs_nothing_from_the_network_and_runs_no_script(page):
    text = page.read_text()
    assert "<script" not in text.replace("&lt;script", "") and "<link" not in text and "@import" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)


def test_text_from_the_run_is_escaped(page):
    text = page.read_text()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert "<script>alert" not in text


def test_chromium_renders_it_without_console_errors(tmp_path, page):
    result = render(tmp_path, "--dump-dom", page=page)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    dom = result.stdout
    assert '<section id="hub-down">' in dom and '<section id="rate-limit-masked">' in dom
    # Every step is a bar on the timeline; the failed one is red; the fault window is drawn.
    assert dom.count('class="bar pass"') == 4 and dom.count('class="bar fail"') == 1 and dom.count('class="bar fault"') == 1
    assert "mirror -&gt; Hub" in dom and "client -&gt; Hub" in dom
    assert "why: Hub's rate limit masked as \"manifest unknown\"" in dom.replace("&quot;", '"').replace("&#39;", "'")


def test_chromium_takes_a_screenshot_of_it(tmp_path, page):
    shot = tmp_path / "report.png"
    result = render(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", page=page)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a real picture, not a blank page
