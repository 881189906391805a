"""YAML with line numbers, and the bounds that keep hostile files harmless."""

from __future__ import annotations

import resource
import time

import pytest

from chaos.errors import ScenarioError
from chaos.language.marked_yaml import MAX_EXPANDED_NODES, MAX_FILE_BYTES, load_marked, load_marked_text


def test_values_remember_their_lines():
    doc = load_marked_text("name: t\nsteps:\n  - pull: alpine\n  - pull: nginx\n", "t.yaml")
    assert doc.line_of("steps") == 2 and doc["steps"].line_of(1) == 4


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_quickly_with_a_short_message(levels):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(ScenarioError, match="aliases expand this document beyond") as caught:
        load_marked_text(billion_laughs(levels), "bomb.yaml")
    assert time.monotonic() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: not gigabytes
    assert len(str(caught.value)) < 200
    assert str(caught.value).startswith("bomb.yaml:")


def test_anchors_within_the_bound_still_work():
    doc = load_marked_text("x: &x {a: 1}\ny: *x\nz: [*x, *x]\n", "ok.yaml")
    assert doc["y"] == {"a": 1} and doc["z"] == [{"a": 1}, {"a": 1}]
    assert MAX_EXPANDED_NODES >= 10_000  # room for any real scenario


def test_a_recursive_alias_is_refused():
    with pytest.raises(ScenarioError, match="recursive alias"):
        load_marked_text("a: &a [1, *a]\n", "loop.yaml")


def test_a_control_character_names_its_line():
    with pytest.raises(ScenarioError, match=r"^nul\.yaml:5: unacceptable character #x0000"):
        load_marked_text('name: x\nsteps:\n  - pull: alpine\n  - pull: nginx\n  - name: "a\x00b"\n', "nul.yaml")


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\nsteps:\n" + "  - {pull: alpine}\n" * 60_000)
    assert big.stat().st_size > MAX_FILE_BYTES
    started = time.monotonic()
    with pytest.raises(ScenarioError, match="limited to 1024 KiB"):
        load_marked(big)
    assert time.monotonic() - started < 1
