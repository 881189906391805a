"""The scenario loader: good files parse into dataclasses, bad ones give one
`file:line: what is wrong` message (a ScenarioError, exit code 2)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chaos.errors import ScenarioError
from chaos.language.model import Comparison, Counts
from chaos.scenario.loader import load_scenario
from chaos.steps.kinds.check import CheckAction
from chaos.steps.kinds.fault import FaultAction
from chaos.steps.kinds.pull import PullAction
from chaos.steps.kinds.push import PushAction

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
    assert isinstance(warm.action, PullAction) and warm.action.images[0].repository == "library/alpine"
    assert private.action.login == "alice"
    assert isinstance(look.action, CheckAction) and look.action.cached == ("library/alpine",)
    assert isinstance(down.action, FaultAction) and down.action.name == "hub-down"
    assert again.expect.same_digest_as == "warm" and again.expect.upstream == (Counts((("blob_bytes", Comparison("==", 0)),)),)
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
    # the full language (issue 4)
    ("name: t\nsteps:\n  - pull: ${IMAGE}\n", 3, "undefined variable 'IMAGE'"),
    ("name: t\nsteps:\n  - pull: ${IMAGE\n", 3, "malformed variable reference"),
    ("name: t\nsteps:\n  - fault: {name: slow, kind: refuse, ttl_s: -1}\n", 3, "fault: ttl_s"),
    ("name: t\nsteps:\n  - fault:\n      name: x\n      kind: refuse\n      match: {roles: [hubb]}\n", 6, "match.roles"),
    ("name: t\nsteps:\n  - wait: forever\n", 3, "wait: expected a duration"),
    ("name: t\nsteps:\n  - wait: {until: {cached: [alpine]}, intervall: 1s}\n", 3, "did you mean 'interval'?"),
    ("name: t\nsteps:\n  - restart: mirorr\n", 3, "did you mean 'mirror'?"),
    ("name: t\nsteps:\n  - publish: {image: alpine:3.20, size: huge}\n", 3, "size:"),
    ("name: t\nsteps:\n  - pull: alpine\n    repeat: {times: 3, duration: 5s}\n", 4, "exactly one of times or duration"),
    ("name: t\nsteps:\n  - fault: {name: x, kind: refuse}\n    repeat: 3\n", 4, "only check, pull, push steps repeat"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect: {success_rate: '>= 0.9'}\n", 4, "needs repeat"),
    ("name: t\nsteps:\n  - pull: alpine\n    repeat: 5\n    expect: {success_rate: '>= 1.5'}\n", 5, "fraction from 0 to 1"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect: {within: -1s}\n", 4, "within:"),
    ("name: t\nsteps:\n  - pull: alpine\n    engine: dockr\n", 4, "unknown engine 'dockr'"),
    ("name: t\nsteps:\n  - check: {tap: {counts: {manifests: 1}}}\n", 3, "did you mean 'manifest'?"),
    ("name: t\nsteps:\n  - clear: all\n    expect: {served_by: mirror}\n", 4, "not meaningful for a clear step"),
    ("name: t\nsteps:\n  - push: {image: a/b:1, to: hub}\n", 3, "push to hub needs a login"),
    ("name: t\ntarget: {mirror: 'http://m:5000', control: 'http://c:5380', proxy: 'http://p:8080'}\nsteps:\n  - restart: mirror\n", 4, "needs the embedded lab"),
    # a target that would reach the real Hub, and the mirror's settings (issue 11)
    ("name: t\ntarget: {mirror: 'http://m:5000', control: 'http://c:5380'}\nsteps:\n  - pull: alpine\n", 2, "live: true to allow the real Hub"),
    ("name: t\nlab:\n  mirror: {logn: alice}\nsteps:\n  - pull: alpine\n", 3, "unknown key 'logn' in lab.mirror; did you mean 'login'?"),
    ("name: t\nlab:\n  users: [{name: alice, password: pw}]\n  mirror: {login: bob}\nsteps:\n  - pull: alpine\n", 4, "mirror.login: unknown user 'bob'"),
    ("name: t\nlab:\n  mirror: {config: nope.yml}\nsteps:\n  - pull: alpine\n", 3, "mirror.config:"),
    ("name: t\nlab:\n  mirror: {ttl: forever}\nsteps:\n  - pull: alpine\n", 3, "mirror.ttl: expected a duration"),
    ("name: t\ntarget: {mirror: 'ftp://m', control: 'http://c:5380'}\nsteps:\n  - pull: alpine\n", 2, "target.mirror: expected an http"),
    ("name: t\ntarget:\n  mirror: 'http://m'\n  control: 'http://c'\n  proxy: 'http://bob:hunter2@p:8080'\nsteps:\n  - pull: alpine\n", 5,
     "target.proxy: no user or password in the URL (user:password@...); logins go in target.users"),
    ("name: t\nlab: {}\ntarget: {mirror: 'http://m', control: 'http://c'}\nsteps:\n  - pull: alpine\n", 3, "either lab"),
    ("name: t\ntags: [Smoke]\nsteps:\n  - pull: alpine\n", 2, "tags: expected lowercase"),
    ("name: t\nsteady_state:\n  - {name: a, pull: alpine}\nsteps:\n  - {name: a, pull: alpine}\n", 5, "duplicate step name 'a'"),
    ("name: t\nsteps:\n  - check: {storage_grew_since: later}\n  - {name: later, pull: alpine}\n", 3, "names a later step"),
    # who asked, and what the mirror answered (issue 10)
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      upstream: {manifest: 1, origin: cdn}\n", 5, "unknown origin 'cdn'"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      upstream: {manifest: 1, status: 6xx}\n", 5, "upstream.status: expected a status"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      upstream: {origin: mirror}\n", 5, "filters without anything to count"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      mirror: {status: fourohfour}\n", 5, "mirror.status: expected an HTTP status"),
    ("name: t\nsteps:\n  - pull: alpine\n    expect:\n      mirror: {code: X}\n", 5, "unknown key 'code' in expect.mirror"),
    ("name: t\nsteps:\n  - push: {image: a/b:1}\n    expect: {mirror: {status: 405}}\n", 4, "not meaningful for a push step"),
    # hostile input (issue 9): values quoted in messages are cut
    ("name: t\nsteps:\n  - pull: " + "a" * 5000 + "!\n", 3, "..."),
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


@pytest.mark.parametrize("key", ["mirror", "control", "proxy"])
def test_a_target_url_with_a_password_is_refused_without_echoing_it(tmp_path, key):
    urls = {"mirror": "http://m:5000", "control": "http://c:5380", "proxy": "http://p:8080"}
    urls[key] = urls[key].replace("//", "//bob:hunter2@")
    path = write(tmp_path, "name: t\ntarget: {" + ", ".join(f"{k}: '{v}'" for k, v in urls.items()) + "}\nsteps:\n  - pull: alpine\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:2: target.{key}: no user or password in the URL")
    assert "hunter2" not in str(caught.value) and "bob" not in str(caught.value)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "absent.yaml")


def test_push_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, "name: t\nsteps:\n  - push: {image: a/b:1}\n"))
    action = scenario.steps[0].action
    assert isinstance(action, PushAction) and action.to == "mirror" and action.size_bytes == 1_000_000


FULL = """\
name: full
tags: [smoke, outage]
variables:
  IMAGE: alpine:3.19
  ROUNDS: 3
defaults: {timeout: 45s}
lab:
  users: [{name: alice, password: pw}]
  images: [{ref: "${IMAGE}", size: 1MB}]
steady_state:
  - name: healthy
    pull: ${IMAGE}
steps:
  - name: many
    pull: [alpine:3.19, "${EXTRA:-nginx:1.25}"]
    concurrency: 2
    expect: {success_rate: ">= 0.5"}
  - name: again
    pull: ${IMAGE}
    repeat: {times: "${ROUNDS}", interval: 100ms}
    expect: {within: 2s, upstream: {manifest: "<= 3"}}
  - name: publish-new
    publish: {image: "${IMAGE}", seed: v2}
  - name: settle
    wait: {until: {cached: [alpine], tap: {since: healthy, counts: {manifest: ">= 1"}}}, interval: 200ms}
  - restart: mirror
    expect: {ok: false, message: panic}
rollback:
  - clear: all
"""


def test_full_language_parses(tmp_path):
    scenario = load_scenario(write(tmp_path, FULL), overrides={"ROUNDS": "4"}, environ={})
    assert scenario.tags == ("smoke", "outage")
    assert [s.name for s in scenario.steady_state] == ["healthy"]
    assert [s.name for s in scenario.rollback] == ["rollback-01-clear"]
    many, again, publish, settle, restart = scenario.steps
    assert [i.familiar for i in many.action.images] == ["alpine:3.19", "nginx:1.25"]
    assert many.action.concurrency == 2 and str(many.expect.success_rate) == ">= 0.5"
    assert again.repeat.times == 4 and again.repeat.interval_s == 0.1  # --var beats the file
    assert again.expect.within_s == 2.0 and again.timeout_s == 45.0
    assert publish.action.content_seed == "v2" and publish.action.image.ref.familiar == "alpine:3.19"
    assert settle.action.until.cached == ("library/alpine",) and settle.action.until.tap_since == "healthy"
    assert restart.action.component == "mirror" and restart.name == "05-restart"
    assert scenario.variables == {"IMAGE": "alpine:3.19", "EXTRA": "nginx:1.25", "ROUNDS": "4"}


def test_environment_beats_file_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, FULL), environ={"IMAGE": "redis:7"})
    assert scenario.steady_state[0].action.images[0].familiar == "redis:7"


def test_target_scenario_has_no_lab(tmp_path):
    text = "name: t\ntarget: {mirror: 'http://127.0.0.1:5000/', control: 'http://127.0.0.1:5380', proxy: 'http://127.0.0.1:8080'}\nsteps:\n  - pull: alpine\n"
    scenario = load_scenario(write(tmp_path, text))
    assert scenario.target.mirror_url == "http://127.0.0.1:5000"
    assert scenario.lab.images == ()
