"""The scenario loader: good files parse into dataclasses, bad ones give one
`file:line: what is wrong` message (a ScenarioError, exit code 2)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chaos.errors import ScenarioError
from chaos.scenario.loader import load_scenario
from chaos.scenario.model import CheckAction, FaultAction, PullAction, PushAction

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

GOOD = """\
name: t
lab:
  users:
    - {name: alice, password: pw}
  images:
    - ref: alpine:3.19
      size: 1MB
    - alice/app:1
steps:
  - name: warm
    pull: alpine:3.19
    expect: {ok: true, served_by: mirror}
  - name: private
    pull: alice/app:1
    login: alice
  - name: look
    check: {cached: [alpine], storage_unchanged_since: warm}
  - name: down
    fault: {name: hub-down, kind: refuse}
  - name: again
    pull: alpine:3.19
    expect: {from_cache: true, same_digest_as: warm, upstream: {blob_bytes: 0}}
  - clear: all
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_flagship_scenario_parses():
    scenario = load_scenario(SCENARIOS / "hub-down.yaml")
    assert scenario.name == "hub-down"
    kinds = {step.kind for step in scenario.steps}
    assert kinds == {"pull", "push", "check", "fault", "clear"}
    assert any(image.private for image in scenario.lab.images)


def test_good_scenario_becomes_dataclasses(tmp_path):
    scenario = load_scenario(write(tmp_path, GOOD))
    warm, private, look, down, again, clear = scenario.steps
    assert isinstance(warm.action, PullAction) and warm.action.image.repository == "library/alpine"
    assert private.action.login == "alice"
    assert isinstance(look.action, CheckAction) and look.action.cached == ("library/alpine",)
    assert isinstance(down.action, FaultAction) and down.action.name == "hub-down"
    assert again.expect.same_digest_as == "warm" and again.expect.upstream == (("blob_bytes", 0),)
    assert clear.name == "06-clear" and clear.action.names == ()
    assert scenario.lab.images[1].size_bytes == 2_000_000  # default size for a bare reference
    assert warm.loc.endswith("s.yaml:10")


BAD = [
    # (document, expected line, text in the message)
    ("", 1, "empty scenario file"),
    ("- a\n- b\n", 1, "a scenario is a mapping"),
    ("name: t\nsteps: [\n", 3, "YAML syntax error"),
    ("name: t\nstepz: []\n", 2, "unknown key 'stepz' in scenario; did you mean 'steps'?"),
    ("name: t\n", 1, "steps: expected a non-empty list"),
    ("steps:\n  - pull: alpine\n", 1, "missing required key 'name'"),
    ("name: t\nsteps:\n  - expect: {ok: true}\n", 3, "step has no kind"),
    ("name: t\nsteps:\n  - pul: alpine\n", 3, "did you mean 'pull'?"),
    ("name: t\nsteps:\n  - pull: alpine\n    check: {cached: [alpine]}\n", 3, "two kinds"),
    ("name: t\nsteps:\n  - pull: Not/Valid\n", 3, "invalid image reference 'Not/Valid'"),
    ("name: t\nsteps:\n  - pull: quay.io/a/b\n", 3, "is not Docker Hub"),
    ("name: t\nsteps:\n  - {name: a, pull: alpine}\n  - {name: a, pull: alpine}\n", 4, "duplicate step name 'a'"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect: {same_digest_as: nope}\n", 3, "'nope' names no step"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      served_by: cdn\n", 5, "served_by: expected mirror or hub"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      ok: yes please\n", 5, "ok: expected true or false"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      message: '(['\n", 5, "not a valid regular expression"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      upstream: {blobs: 0}\n", 5, "unknown endpoint kind 'blobs'"),
    ("name: t\nsteps:\n  - pull: alpine\n    login: bob\n", 3, "unknown user 'bob'"),
    ("name: t\nsteps:\n  - pull: alpine\n    timeout: soon\n", 4, "timeout: expected a duration"),
    ("name: t\nlab:\n  images:\n    - ref: alpine\n      size: lots\n", 5, "size:"),
    ("name: t\nlab:\n  images:\n    - ref: alpine\n      platforms: [amd64]\n", 5, "platforms:"),
    ("name: t\nsteps:\n  - fault: {name: x, kind: refuze}\n", 3, "refuze"),
    ("name: t\nsteps:\n  - push: {image: a/b:1, to: cdn}\n", 3, "unknown push target 'cdn'"),
    ("name: t\nname: u\nsteps: []\n", 2, "duplicate key 'name'"),
]


@pytest.mark.parametrize("document,line,text", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_scenario_names_file_and_line(tmp_path, document, line, text):
    path = write(tmp_path, document)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert text in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "absent.yaml")


def test_push_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, "name: t\nsteps:\n  - push: {image: a/b:1}\n"))
    action = scenario.steps[0].action
    assert isinstance(action, PushAction) and action.to == "mirror" and action.size_bytes == 1_000_000
