"""YAML scenario -> chaos.scenario.model, with errors that name file and line.

Validation is separate from running (Chaos Toolkit's validate_* habit), and
stricter: unknown keys are errors with a did-you-mean, not silently ignored,
and every cross-reference (step names, users, lab-only steps) is checked
before anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaos.scenario.fields import (
    Ctx,
    a_list,
    duration,
    known_keys,
    optional_bool,
    optional_str,
    required_str,
)
from chaos.scenario.marked_yaml import MarkedDict, MarkedList, load_marked, load_marked_text
from chaos.scenario.model import CheckAction, LabSpec, PushAction, Scenario, Target, User
from chaos.scenario.steps import DEFAULT_STEP_TIMEOUT_S, parse_seed_image, parse_step
from chaos.scenario.variables import Variables

TOP_KEYS = ("name", "description", "tags", "variables", "defaults", "lab", "target", "steady_state", "steps", "rollback")
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_scenario(path: str | Path, *, overrides: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> Scenario:
    path = Path(path)
    return _parse(load_marked(path), str(path), overrides or {}, environ)


def load_scenario_text(text: str, filename: str, *, overrides: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> Scenario:
    return _parse(load_marked_text(text, filename), filename, overrides or {}, environ)


def parse_scenario(doc: Any, filename: str) -> Scenario:
    """Parse an already-loaded marked document (no variables from outside)."""
    return _parse(doc, filename, {}, {})


def _parse(doc: Any, filename: str, overrides: Mapping[str, str], environ: Mapping[str, str] | None) -> Scenario:
    ctx = Ctx(filename)
    if doc is None:
        raise ctx.fail(1, "empty scenario file")
    if not isinstance(doc, MarkedDict):
        raise ctx.fail(getattr(doc, "line", 1), "a scenario is a mapping with name, lab and steps")
    known_keys(ctx, doc, TOP_KEYS, "scenario")
    declared = _parse_variables(ctx, doc)
    variables = Variables(filename, declared, overrides, environ)
    doc = variables.substitute(doc)

    name = required_str(ctx, doc, "name", "scenario")
    description = optional_str(ctx, doc, "description") or ""
    tags = _parse_tags(ctx, doc)
    default_timeout = DEFAULT_STEP_TIMEOUT_S
    if "defaults" in doc:
        defaults = doc["defaults"]
        if not isinstance(defaults, MarkedDict):
            raise ctx.fail(doc.line_of("defaults"), "defaults: expected a mapping with timeout")
        known_keys(ctx, defaults, ("timeout",), "defaults")
        default_timeout = duration(ctx, defaults.get("timeout", default_timeout), defaults.line_of("timeout"), "defaults.timeout")
    if "lab" in doc and "target" in doc:
        raise ctx.fail(doc.line_of("target"), "give either lab (start the embedded lab) or target (test an existing mirror), not both")
    lab = _parse_lab(ctx, doc["lab"], doc.line_of("lab")) if "lab" in doc else LabSpec()
    target = _parse_target(ctx, doc["target"], doc.line_of("target")) if "target" in doc else None

    sections = {}
    for section in ("steady_state", "steps", "rollback"):
        node = doc.get(section)
        if section == "steps" and (not isinstance(node, MarkedList) or not node):
            raise ctx.fail(doc.line_of("steps"), "steps: expected a non-empty list of steps")
        if node is None:
            sections[section] = ()
            continue
        if not isinstance(node, MarkedList):
            raise ctx.fail(doc.line_of(section), f"{section}: expected a list of steps")
        prefix = {"steps": "", "steady_state": "steady-", "rollback": "rollback-"}[section]
        sections[section] = tuple(
            parse_step(ctx, item, node.line_of(i), f"{prefix}{i + 1:02d}-{_kind_hint(item)}", default_timeout)
            for i, item in enumerate(node)
        )

    scenario = Scenario(
        name=name, description=description, path=filename, lab=lab, steps=sections["steps"], tags=tags,
        target=target, steady_state=sections["steady_state"], rollback=sections["rollback"],
        variables=dict(variables.used),
    )
    _check_names(ctx, scenario)
    _check_references(ctx, scenario)
    _check_logins(ctx, scenario)
    _check_cleared_faults(ctx, scenario)
    if target is not None:
        _check_target_steps(ctx, scenario)
    return scenario


def _kind_hint(item: Any) -> str:
    from chaos.scenario.steps import STEP_KINDS

    if isinstance(item, dict):
        for kind in STEP_KINDS:
            if kind in item:
                return kind
    return "step"


def _parse_variables(ctx: Ctx, doc: MarkedDict) -> dict[str, Any]:
    node = doc.get("variables")
    if node is None:
        return {}
    if not isinstance(node, MarkedDict):
        raise ctx.fail(doc.line_of("variables"), "variables: expected a mapping of NAME to default value (null: must be given)")
    out = {}
    for key, value in node.items():
        if not isinstance(key, str) or not _VARIABLE.match(key):
            raise ctx.fail(node.line_of(key), f"variables: {key!r} is not a variable name (letters, digits and _)")
        if isinstance(value, (dict, list)):
            raise ctx.fail(node.line_of(key), f"variables.{key}: expected a plain value")
        out[key] = value
    return out


def _parse_tags(ctx: Ctx, doc: MarkedDict) -> tuple[str, ...]:
    tags = doc.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
        raise ctx.fail(doc.line_of("tags"), f"tags: expected lowercase words, got {tags!r}")
    return tuple(str(t) for t in tags)


def _parse_users(ctx: Ctx, node: MarkedDict) -> tuple[User, ...]:
    users = []
    for index, item in enumerate(a_list(ctx, node, "users")):
        item_line = node["users"].line_of(index)
        if not isinstance(item, MarkedDict):
            raise ctx.fail(item_line, "users: each user is a mapping with name and password")
        known_keys(ctx, item, ("name", "password"), "user")
        users.append(User(required_str(ctx, item, "name", "user"), required_str(ctx, item, "password", "user")))
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ctx.fail(node.line_of("users"), "users: duplicate user name")
    return tuple(users)


def _parse_lab(ctx: Ctx, node: Any, line: int) -> LabSpec:
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "lab: expected a mapping with users and images")
    known_keys(ctx, node, ("users", "images", "push_registry", "seed"), "lab")
    users = _parse_users(ctx, node)
    images = []
    seen: set[str] = set()
    for index, item in enumerate(a_list(ctx, node, "images")):
        item_line = node["images"].line_of(index)
        image = parse_seed_image(ctx, item, item_line)
        if str(image.ref) in seen:
            raise ctx.fail(item_line, f"lab.images: {image.ref.familiar} is listed twice")
        seen.add(str(image.ref))
        images.append(image)
    return LabSpec(
        users=users, images=tuple(images),
        push_registry=optional_bool(ctx, node, "push_registry") or False,
        seed=optional_str(ctx, node, "seed") or "hub-chaos",
    )


_URL = re.compile(r"^https?://[^\s/]+(/.*)?$")


def _parse_target(ctx: Ctx, node: Any, line: int) -> Target:
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "target: expected a mapping with mirror and control URLs")
    known_keys(ctx, node, ("mirror", "control", "proxy", "ca", "storage", "users"), "target")

    def url(key: str, required: bool) -> str | None:
        value = required_str(ctx, node, key, "target") if required else optional_str(ctx, node, key)
        if value is not None and not _URL.match(value):
            raise ctx.fail(node.line_of(key), f"target.{key}: expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if value else None

    return Target(
        mirror_url=url("mirror", True), control_url=url("control", True), proxy_url=url("proxy", False),
        ca_file=optional_str(ctx, node, "ca"), storage=optional_str(ctx, node, "storage"), users=_parse_users(ctx, node),
    )


def _check_names(ctx: Ctx, scenario: Scenario) -> None:
    seen: dict[str, str] = {}
    for step in scenario.all_steps():
        if step.name in seen:
            raise ctx.fail(step.line, f"duplicate step name {step.name!r} (first at {seen[step.name]})")
        seen[step.name] = step.loc


def _check_references(ctx: Ctx, scenario: Scenario) -> None:
    """Names a step refers to must be earlier steps (their results must exist)."""
    from chaos.scenario.fields import did_you_mean

    all_names = [s.name for s in scenario.all_steps()]
    earlier: set[str] = set()
    for step in scenario.all_steps():
        refs = [("same_digest_as", step.expect.same_digest_as)]
        check = step.action if isinstance(step.action, CheckAction) else getattr(step.action, "until", None)
        if check is not None:
            refs += [
                ("storage_unchanged_since", check.storage_unchanged_since),
                ("catalog_unchanged_since", check.catalog_unchanged_since),
                ("storage_grew_since", check.storage_grew_since),
                ("tap.since", None if check.tap_since == "start" else check.tap_since),
            ]
        for key, ref in refs:
            if ref is not None and ref not in earlier:
                where = "a later step" if ref in all_names else "no step"
                raise ctx.fail(step.line, f"{key}: {ref!r} names {where}; it must name an earlier step{did_you_mean(ref, sorted(earlier))}")
        earlier.add(step.name)


def _check_logins(ctx: Ctx, scenario: Scenario) -> None:
    users = {u.name for u in scenario.users}
    for step in scenario.all_steps():
        login = getattr(step.action, "login", None)
        if login is not None and login not in users:
            where = "target.users" if scenario.target else "lab.users"
            raise ctx.fail(step.line, f"login: unknown user {login!r}; {where} defines: {', '.join(sorted(users)) or 'nobody'}")


def _check_cleared_faults(ctx: Ctx, scenario: Scenario) -> None:
    """`clear: NAME` must name a fault some earlier step switches on: a typo
    would otherwise leave the real fault on until it expires."""
    from chaos.scenario.fields import did_you_mean
    from chaos.scenario.model import ClearAction, FaultAction

    defined: set[str] = set()
    for step in scenario.all_steps():
        if isinstance(step.action, FaultAction):
            defined.add(step.action.name)
        elif isinstance(step.action, ClearAction):
            for name in step.action.names:
                if name not in defined:
                    raise ctx.fail(step.line, f"clear: no earlier step switches on a fault named {name!r}{did_you_mean(name, sorted(defined))}")


def _check_target_steps(ctx: Ctx, scenario: Scenario) -> None:
    """Against an existing mirror there is no lab to restart or publish to."""
    for step in scenario.all_steps():
        if step.kind in ("restart", "publish"):
            raise ctx.fail(step.line, f"{step.kind}: needs the embedded lab; this scenario has a target")
        if isinstance(step.action, PushAction) and step.action.to != "mirror":
            raise ctx.fail(step.line, f"push to {step.action.to}: needs the embedded lab; this scenario has a target")
        check = step.action if isinstance(step.action, CheckAction) else getattr(step.action, "until", None)
        if check is not None and scenario.target.storage is None and (
            check.storage_unchanged_since or check.storage_grew_since
        ):
            raise ctx.fail(step.line, "storage checks need target.storage (the mirror's storage folder)")
