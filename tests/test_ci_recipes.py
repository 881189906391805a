"""The CI recipes: action.yml (a composite GitHub Action) and
ci/gitlab/hub-chaos.gitlab-ci.yml (a GitLab CI job template).

First their structure, read as YAML: inputs used exist, step outputs come
from earlier steps, actions are maintained ones pinned to a major version,
files the scripts run exist here, the reports asked for are real `--report`
formats, the exit codes are documented. Then their shell logic, run for
real: the action's `run:` steps in order as a runner runs them (bash -eo
pipefail, GITHUB_OUTPUT, GITHUB_PATH, the step's env and working-directory,
`if:` conditions), with the `uses:` steps stood in for, and the GitLab job's
before_script and script as one shell, each installing this checkout into a
fresh virtual environment and running `chaos run hub-down` against the
embedded lab; the files must land where the upload steps and the artifacts
look for them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from chaos.errors import ChaosError
from chaos.report.formats import FORMATS
from chaos.vocab.names import ENGINES

ROOT = Path(__file__).resolve().parents[1]
ACTION_FILE = ROOT / "action.yml"
GITLAB_FILE = ROOT / "ci" / "gitlab" / "hub-chaos.gitlab-ci.yml"
CI_DOC = ROOT / "docs" / "ci.md"
GITLAB_JOB = ".hub-chaos"

# What each engine needs besides the registry. An engine missing here fails
# test_each_engine_gets_its_debian_packages: teach both recipes about it.
ENGINE_PACKAGES = {
    "builtin": {"docker-registry"},
    "docker": {"docker-registry", "docker.io"},
    "skopeo": {"docker-registry", "skopeo"},
    "containerd": {"docker-registry", "containerd"},
}
# Actions the recipe may use: maintained, pinned to a major version.
ALLOWED_ACTIONS = {"actions/setup-python", "actions/upload-artifact", "mikepenz/action-junit-report", "dorny/test-reporter"}
JUNIT_PUBLISHERS = {"mikepenz/action-junit-report", "dorny/test-reporter"}

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)


def _action() -> dict:
    return yaml.safe_load(ACTION_FILE.read_text())


def _gitlab_job() -> dict:
    return yaml.safe_load(GITLAB_FILE.read_text())[GITLAB_JOB]


def _steps() -> list[dict]:
    return _action()["runs"]["steps"]


def _action_name(uses: str) -> str:
    return uses.split("@", 1)[0]


def _exit_codes() -> set[int]:
    codes, todo = {0}, [ChaosError]
    while todo:
        cls = todo.pop()
        codes.add(cls.exit_code)
        todo.extend(cls.__subclasses__())
    return codes


def _strings(node, key=None):
    """Every string in a YAML tree, with the key it sits under."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif isinstance(node, str):
        yield key, node


def _expressions(node) -> list[str]:
    """Every ${{ }} expression, and every `if:` (an expression with or without the braces)."""
    found = []
    for key, text in _strings(node):
        inner = EXPRESSION.findall(text)
        found += inner if inner else ([text] if key == "if" else [])
    return found


# -- the action's structure -------------------------------------------------

def test_action_is_a_composite_action_that_says_what_it_does():
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert action["name"] and action["description"]
    for name, spec in action["inputs"].items():
        assert spec.get("description"), f"input {name}: no description"
    for name, spec in action["outputs"].items():
        assert spec.get("description") and spec.get("value"), f"output {name}: description and value"


def test_every_input_the_action_uses_exists_and_every_input_is_used():
    action = _action()
    declared = set(action["inputs"])
    used = {m for expr in _expressions(action["runs"]) for m in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", expr)}
    assert used <= declared, f"inputs used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"inputs declared but never used: {sorted(declared - used)}"


def _outputs_written(step: dict) -> set[str]:
    if "uses" in step:
        return {"python-path", "python-version"} if _action_name(step["uses"]) == "actions/setup-python" else set()
    return set(re.findall(r'echo "([A-Za-z0-9_-]+)=', step["run"]))


def test_step_outputs_used_are_written_by_an_earlier_step():
    action = _action()
    seen: dict[str, set[str]] = {}
    for step in action["runs"]["steps"]:
        for expr in _expressions(step):
            for step_id, output in re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", expr):
                assert step_id in seen, f"step {step.get('name')!r} uses steps.{step_id} before (or without) it"
                assert output in seen[step_id], f"steps.{step_id} never writes output {output!r}"
        if "id" in step:
            seen[step["id"]] = _outputs_written(step)
    for name, spec in action["outputs"].items():
        for step_id, output in re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", spec["value"]):
            assert output in seen.get(step_id, set()), f"output {name}: steps.{step_id} never writes {output!r}"


def test_uses_maintained_actions_pinned_to_a_major_version():
    steps = _steps()
    uses = [s["uses"] for s in steps if "uses" in s]
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", ref), f"{ref}: pin a major version tag (owner/name@vN)"
        assert _action_name(ref) in ALLOWED_ACTIONS, f"{ref}: not one of the actions this recipe vouches for"
    assert "actions/upload-artifact@v4" in uses
    assert any(_action_name(u) == "actions/setup-python" for u in uses)
    assert any(_action_name(u) in JUNIT_PUBLISHERS for u in uses)


def test_uploads_and_junit_run_whatever_happened_before():
    for step in _steps():
        if "uses" in step and _action_name(step["uses"]) in {"actions/upload-artifact"} | JUNIT_PUBLISHERS:
            assert "always()" in step.get("if", ""), f"{step['name']}: needs `if: always()`"
    uploads = [s for s in _steps() if "uses" in s and _action_name(s["uses"]) == "actions/upload-artifact"]
    paths = {s["with"]["path"] for s in uploads}
    assert paths == {"${{ steps.paths.outputs.run-dir }}", "${{ steps.paths.outputs.html }}"}, paths


def test_run_steps_name_their_shell_and_take_inputs_through_env():
    for step in _steps():
        if "run" in step:
            assert step.get("shell") == "bash", f"{step.get('name')}: composite run steps need `shell:`"
            # An input pasted into a script is a script injection; env is not.
            assert not EXPRESSION.search(step["run"]), f"{step.get('name')}: use env: for ${{{{ }}}} values"


def _files_referenced(text: str, variable: str) -> set[str]:
    return set(re.findall(r"\$\{?" + variable + r"\}?/([\w./-]+)", text))


def test_files_the_recipes_run_exist_in_the_repository():
    action_files = _files_referenced(ACTION_FILE.read_text(), "GITHUB_ACTION_PATH")
    gitlab_files = _files_referenced(GITLAB_FILE.read_text(), "HUB_CHAOS_HOME")
    assert "scripts/ensure-system-packages" in action_files & gitlab_files
    for name in action_files | gitlab_files:
        assert (ROOT / name).is_file(), f"{name}: referenced by a CI recipe, missing from the repository"


def test_reports_asked_for_are_real_report_formats():
    for recipe in (ACTION_FILE, GITLAB_FILE):
        asked = re.findall(r'--report\s+"?([a-z]+)=', recipe.read_text())
        assert {"junit", "html"} <= set(asked), f"{recipe.name}: asks for {asked}"
        assert set(asked) <= set(FORMATS), f"{recipe.name}: not report formats: {set(asked) - set(FORMATS)}"


def test_exit_codes_are_documented_and_each_recipe_names_them():
    doc = CI_DOC.read_text()
    final = next(s for s in _steps() if "exit" in s.get("run", "") and "CODE" in s.get("env", {}))
    gitlab_script = "\n".join(_gitlab_job()["script"])
    for code in sorted(_exit_codes()):
        assert re.search(rf"^\| {code} \|", doc, re.MULTILINE), f"docs/ci.md: no row for exit code {code}"
        assert re.search(rf"^\s*{code}\) ", final["run"], re.MULTILINE), f"action.yml: exit code {code} not explained"
        assert re.search(rf"^\s*{code}\) ", gitlab_script, re.MULTILINE), f"GitLab template: exit code {code} not explained"
    assert 'exit "$CODE"' in final["run"] and 'exit "$code"' in gitlab_script


# -- the GitLab template's structure ---------------------------------------

def test_gitlab_job_keeps_the_run_folder_and_reports_junit_whatever_happened():
    job = _gitlab_job()
    assert int(re.search(r"python:3\.(\d+)", job["image"])[1]) >= 11
    assert all(isinstance(line, str) for line in job["before_script"] + job["script"])
    script = "\n".join(job["script"])
    run_dir = re.search(r"--run-dir (\S+)", script)[1]
    junit = re.search(r"--report junit=(\S+)", script)[1]
    html = re.search(r"--report html=(\S+)", script)[1]
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["paths"] == [run_dir.rstrip("/") + "/"]
    assert artifacts["reports"]["junit"] == junit
    assert junit.startswith(run_dir + "/") and html.startswith(run_dir + "/")


def test_gitlab_variables_are_all_used():
    job = _gitlab_job()
    scripts = "\n".join(job["before_script"] + job["script"])
    for name in job["variables"]:
        assert f"${name}" in scripts or f"${{{name}}}" in scripts, f"variable {name} is never used"


# -- docs/ci.md against the recipes ----------------------------------------

def _doc_yaml_blocks() -> list:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", CI_DOC.read_text(), re.DOTALL)]


def test_ci_doc_lists_every_input_output_and_variable():
    doc = CI_DOC.read_text()
    action = _action()
    for name in [*action["inputs"], *action["outputs"], *_gitlab_job()["variables"]]:
        assert re.search(rf"^\| `{re.escape(name)}` \|", doc, re.MULTILINE), f"docs/ci.md: no table row for `{name}`"


def test_ci_doc_examples_use_only_what_the_recipes_take():
    inputs, variables = set(_action()["inputs"]), set(_gitlab_job()["variables"])
    action_uses = gitlab_uses = 0
    for doc in _doc_yaml_blocks():
        if not isinstance(doc, dict):
            continue
        for job in (doc.get("jobs") or {}).values():
            for step in job.get("steps", []):
                if "hub-chaos" in step.get("uses", ""):
                    action_uses += 1
                    assert set(step.get("with", {})) <= inputs, f"unknown inputs: {set(step['with']) - inputs}"
        for job in doc.values():
            if isinstance(job, dict) and job.get("extends") == GITLAB_JOB:
                gitlab_uses += 1
                used = {k for k in job.get("variables", {}) if k.startswith("HUB_CHAOS_")}
                assert used <= variables, f"unknown variables: {used - variables}"
    assert action_uses and gitlab_uses


# -- running the recipes ----------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<func>(?:always|success|failure|cancelled)\(\))
  | (?P<op>&&|\|\||==|!=|!|\(|\))
  | (?P<literal>true|false|null|-?\d+(?:\.\d+)?)
  | (?P<path>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)
)""", re.VERBOSE)
_CONTEXTS = ("inputs", "steps", "github", "runner")


class Runner:
    """Runs a composite action's steps as a GitHub runner does, as far as
    these steps need: expressions over inputs, steps, github.action_path and
    runner.temp; `if:` with status functions; bash -eo pipefail; the
    GITHUB_OUTPUT, GITHUB_PATH and GITHUB_STEP_SUMMARY files. `uses:` steps
    are stood in for: setup-python gives this machine's Python; uploads and
    the JUnit publisher are recorded with their evaluated inputs."""

    def __init__(self, action: dict, action_path: Path, workspace: Path, inputs: dict[str, str]):
        self.action = action
        self.workspace = workspace
        self.temp = workspace.parent / f"{workspace.name}-runner-temp"
        self.temp.mkdir(exist_ok=True)
        self.summary = self.temp / "step-summary.md"
        self.path_file = self.temp / "github-path"
        self.summary.touch()
        self.path_file.touch()
        declared = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
        unknown = set(inputs) - set(declared)
        assert not unknown, f"no such inputs: {unknown}"
        self.context = {
            "inputs": {**declared, **inputs},
            "steps": {},
            "github": {"action_path": str(action_path), "workspace": str(workspace)},
            "runner": {"temp": str(self.temp), "os": "Linux"},
        }
        self.status = "success"
        self.uploads: list[dict] = []
        self.junit: list[dict] = []
        self.logs: list[str] = []
        home = workspace.parent / "home"
        home.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "CHAOS_"))}
        self.env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"), PIP_DISABLE_PIP_VERSION_CHECK="1",
                        GITHUB_ACTION_PATH=str(action_path), GITHUB_WORKSPACE=str(workspace),
                        GITHUB_STEP_SUMMARY=str(self.summary), GITHUB_PATH=str(self.path_file),
                        RUNNER_TEMP=str(self.temp), RUNNER_OS="Linux", CI="true")

    # expressions
    def _lookup(self, path: str):
        parts = path.split(".")
        assert parts[0] in _CONTEXTS, f"expression uses context {parts[0]!r}, which this runner does not give"
        if parts[0] == "steps":
            assert parts[1] in {s.get("id") for s in self.action["runs"]["steps"]}, f"no step with id {parts[1]!r}"
        value = self.context
        for part in parts:
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value

    def evaluate(self, expr: str):
        python, pos = [], 0
        while expr[pos:].strip():
            match = _TOKEN.match(expr, pos)
            assert match and match.lastgroup, f"cannot evaluate {expr!r} from {expr[pos:]!r}"
            pos, kind, text = match.end(), match.lastgroup, match[match.lastgroup]
            if kind == "string":
                python.append(repr(text[1:-1].replace("''", "'")))
            elif kind == "func":
                python.append(repr({"always()": True, "success()": self.status == "success",
                                    "failure()": self.status == "failure", "cancelled()": False}[text]))
            elif kind == "op":
                python.append({"&&": " and ", "||": " or ", "!": " not "}.get(text, f" {text} "))
            elif kind == "literal":
                python.append(repr({"true": True, "false": False, "null": None}.get(text, text)))
            else:
                python.append(repr(self._lookup(text)))
        # Only the tokens above reach eval: literals, operators and repr()s of looked-up values.
        return eval("".join(python), {"__builtins__": {}}, {})

    def substitute(self, value):
        if not isinstance(value, str):
            return value

        def one(match):
            result = self.evaluate(match[1])
            return str(result).lower() if isinstance(result, bool) else "" if result is None else str(result)

        return EXPRESSION.sub(one, value)

    def _should_run(self, step: dict) -> bool:
        condition = str(step.get("if", "success()")).strip()
        whole = EXPRESSION.fullmatch(condition)
        condition = whole[1] if whole else condition
        if not re.search(r"\b(always|success|failure|cancelled)\(\)", condition):
            condition = f"success() && ({condition})"
        return bool(self.evaluate(condition))

    # steps
    def run(self, only: set[str] | None = None, preset: dict[str, dict] | None = None) -> None:
        """Every step in order; `only`: just these step ids; `preset`: these
        step ids are not run, their outputs are given (an install done before)."""
        for index, step in enumerate(self.action["runs"]["steps"]):
            step_id = step.get("id", f"step-{index}")
            if preset and step_id in preset:
                self.context["steps"][step_id] = {"outputs": preset[step_id], "outcome": "success"}
                continue
            if only is not None and step_id not in only:
                continue
            if not self._should_run(step):
                self.logs.append(f"skipped: {step.get('name', step_id)}")
                continue
            outputs, ok = self._uses(step) if "uses" in step else self._run(step, index)
            self.context["steps"][step_id] = {"outputs": outputs, "outcome": "success" if ok else "failure"}
            if not ok:
                self.status = "failure"

    def _uses(self, step: dict) -> tuple[dict, bool]:
        name, given = _action_name(step["uses"]), {k: self.substitute(v) for k, v in step.get("with", {}).items()}
        if name == "actions/setup-python":
            wanted = tuple(int(p) for p in given["python-version"].split(".")[:2])
            assert wanted >= (3, 11) and sys.version_info[:2] >= wanted, f"python-version {wanted}"
            python = getattr(sys, "_base_executable", sys.executable)
            return {"python-path": python, "python-version": ".".join(map(str, sys.version_info[:3]))}, True
        if name == "actions/upload-artifact":
            self.uploads.append(given)
            return {}, True
        if name in JUNIT_PUBLISHERS:
            self.junit.append(given)
            return {}, True
        raise AssertionError(f"this runner cannot stand in for {step['uses']}")

    def _run(self, step: dict, index: int) -> tuple[dict, bool]:
        script = self.temp / f"step-{index}.sh"
        script.write_text(step["run"])
        output_file = self.temp / f"step-{index}.output"
        output_file.write_text("")
        extra_path = [line for line in reversed(self.path_file.read_text().splitlines()) if line]
        env = {**self.env, "GITHUB_OUTPUT": str(output_file),
               "PATH": os.pathsep.join([*extra_path, self.env.get("PATH", "")])}
        env.update({k: self.substitute(str(v)) for k, v in step.get("env", {}).items()})
        cwd = self.workspace / self.substitute(step.get("working-directory", "."))
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], check=False, cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        self.logs.append(f"--- {step.get('name')}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return _read_outputs(output_file), done.returncode == 0

    def outputs(self) -> dict[str, str]:
        return {name: self.substitute(spec["value"]) for name, spec in self.action["outputs"].items()}

    @property
    def log(self) -> str:
        return "\n".join(self.logs)


def _read_outputs(path: Path) -> dict[str, str]:
    """name=value lines, and name<<DELIMITER blocks, as GITHUB_OUTPUT holds them."""
    outputs, lines = {}, path.read_text().splitlines()
    while lines:
        line = lines.pop(0)
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            while lines and lines[0] != delimiter:
                value.append(lines.pop(0))
            lines.pop(0)
            outputs[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """This checkout as the action's own checkout ($GITHUB_ACTION_PATH) or a
    GitLab job's HUB_CHAOS_HOME: a copy, so pip's in-tree build writes there."""
    target = tmp_path_factory.mktemp("checkout") / "hub-chaos"
    shutil.copytree(ROOT, target, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "runs", "ci-artifacts", "__pycache__", ".hypothesis",
        ".pytest_cache", ".ruff_cache", ".import_linter_cache", ".chaos"))
    return target


def _workspace(tmp_path: Path, name: str) -> Path:
    workspace = tmp_path / name
    workspace.mkdir()
    return workspace


def _assert_run_folder(run_dir: Path, junit: Path, html: Path, *, failures: bool) -> None:
    journal = json.loads((run_dir / "journal.json").read_text())
    assert (run_dir / "lab" / "logs").is_dir()
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == len(journal["steps"]) > 0, "a JUnit test case per step"
    assert bool(ET.parse(junit).getroot().findall(".//failure")) == failures
    assert html.read_text().lstrip().lower().startswith("<!doctype html")


@pytest.mark.lab
@pytest.mark.timeout(300)
def test_the_action_runs_hub_down_and_its_files_land_where_the_uploads_look(checkout, tmp_path):
    workspace = _workspace(tmp_path, "workspace")
    runner = Runner(_action(), checkout, workspace, {"scenarios": "hub-down"})
    runner.run()
    outputs = runner.outputs()
    assert outputs["exit-code"] == "0", runner.log
    assert runner.status == "success", runner.log

    run_dir, junit, html = Path(outputs["run-dir"]), Path(outputs["junit"]), Path(outputs["html"])
    assert run_dir == workspace / "hub-chaos-run"
    _assert_run_folder(run_dir, junit, html, failures=False)
    assert {u["path"] for u in runner.uploads} == {str(run_dir), str(html)}
    assert {u["name"] for u in runner.uploads} == {"hub-chaos-run", "hub-chaos-report"}
    assert [j["report_paths"] for j in runner.junit] == [str(junit)]
    assert runner.junit[0]["annotate_only"] == "false"
    assert "hub-down" in runner.summary.read_text(), "chaos appends its Markdown summary to $GITHUB_STEP_SUMMARY"
    assert (Path(runner.path_file.read_text().split()[0]) / "chaos").exists(), "chaos on the PATH of later steps"

    # The same installation, two more runs: chaos's exit code is the action's.
    install = {"install": runner.context["steps"]["install"]["outputs"], "packages": {}, "python": {}}
    failing = _workspace(tmp_path, "failing")
    (failing / "expect-denied.yaml").write_text(
        "name: expect-denied\n"
        "lab: {images: [{ref: 'alpine:3.19', size: 1MB}]}\n"
        "steps:\n"
        "  - {name: public-pull-denied, pull: 'alpine:3.19', expect: {error: DENIED}}\n")
    again = Runner(_action(), checkout, failing, {"scenarios": "expect-denied.yaml", "publish-junit": "annotate"})
    again.run(preset=install)
    assert again.outputs()["exit-code"] == "1", again.log
    assert again.status == "failure", "the last step exits with chaos's code"
    _assert_run_folder(failing / "hub-chaos-run", failing / "hub-chaos-run/hub-chaos.junit.xml",
                       failing / "hub-chaos-run/hub-chaos.html", failures=True)
    assert len(again.uploads) == 2 and again.junit[0]["annotate_only"] == "true"

    bad = _workspace(tmp_path, "bad")
    third = Runner(_action(), checkout, bad, {"scenarios": "no-such-scenario", "publish-junit": "false"})
    third.run(preset=install)
    assert third.outputs()["exit-code"] == "2", third.log
    assert third.status == "failure" and not third.junit
    assert not (bad / "hub-chaos-run" / "journal.json").exists()


@pytest.mark.lab
@pytest.mark.timeout(300)
def test_the_gitlab_job_runs_hub_down_and_keeps_its_artifacts(checkout, tmp_path):
    job = _gitlab_job()
    project = _workspace(tmp_path, "project")
    home = _workspace(tmp_path, "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "CHAOS_", "HUB_CHAOS_"))}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"), PIP_DISABLE_PIP_VERSION_CHECK="1",
               CI="true", GITLAB_CI="true", CI_PROJECT_DIR=str(project))
    env.update({k: os.path.expandvars(str(v)) for k, v in job["variables"].items()})
    env["HUB_CHAOS_HOME"] = str(checkout)  # as a pipeline with hub-chaos checked out (a submodule) sets it
    script = "\n".join(job["before_script"] + job["script"])
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], check=False, cwd=project, env=env,
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    log = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, log
    for path in job["artifacts"]["paths"]:
        assert (project / path).exists(), f"artifact path {path} missing"
    run_dir = project / job["artifacts"]["paths"][0]
    _assert_run_folder(run_dir, project / job["artifacts"]["reports"]["junit"], run_dir / "hub-chaos.html", failures=False)


@pytest.mark.timeout(120)
def test_the_gitlab_job_without_a_source_stops_with_exit_3(tmp_path):
    job = _gitlab_job()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HUB_CHAOS_"))}
    env.update(CI_PROJECT_DIR=str(tmp_path), **{k: str(v) for k, v in job["variables"].items()})
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(job["before_script"])], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 3 and "HUB_CHAOS_REPOSITORY" in done.stderr


def _fake_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A checkout whose ensure-system-packages only writes down what it was asked."""
    fake, record = tmp_path / "fake-checkout", tmp_path / "asked"
    (fake / "scripts").mkdir(parents=True)
    (fake / "scripts" / "ensure-system-packages").write_text('#!/bin/sh\necho "$@" > "$ASKED"\n')
    return fake, record


@pytest.mark.parametrize("engine", sorted(set(ENGINES) | set(ENGINE_PACKAGES)))
def test_each_engine_gets_its_debian_packages(engine, tmp_path):
    assert engine in ENGINE_PACKAGES, f"engine {engine}: which Debian packages does it need? Teach both recipes"
    fake, asked = _fake_checkout(tmp_path)

    workspace = _workspace(tmp_path, "workspace")
    runner = Runner(_action(), fake, workspace, {"engine": engine})
    runner.env["ASKED"] = str(asked)
    runner.run(only={"packages"}, preset={"python": {"python-path": sys.executable}})
    assert runner.status == "success", runner.log
    assert set(asked.read_text().split()) == ENGINE_PACKAGES[engine], "action.yml"

    job = _gitlab_job()
    packages_block = next(block for block in job["before_script"] if "ensure-system-packages" in block)
    env = {**os.environ, **{k: str(v) for k, v in job["variables"].items()},
           "HUB_CHAOS_ENGINE": engine, "HUB_CHAOS_HOME": str(fake), "ASKED": str(asked)}
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", packages_block], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(asked.read_text().split()) == ENGINE_PACKAGES[engine], "GitLab template"


def test_system_packages_replace_the_engines_own(tmp_path):
    fake, asked = _fake_checkout(tmp_path)
    inputs = {"engine": "docker", "system-packages": "docker-registry"}
    runner = Runner(_action(), fake, _workspace(tmp_path, "workspace"), inputs)
    runner.env["ASKED"] = str(asked)
    runner.run(only={"packages"}, preset={"python": {"python-path": sys.executable}})
    assert asked.read_text().split() == ["docker-registry"], runner.log
