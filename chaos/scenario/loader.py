"""A scenario file -> chaos.language.model.Scenario, with errors that name file and line.

Validation is separate from running (Chaos Toolkit's validate_* habit), and
stricter: unknown keys are errors with a did-you-mean, not silently ignored,
and every cross-reference (step names, users, faults, lab-only steps) is
checked before anything starts (cross_checks.py). Each step's own part is
parsed by its kind (chaos.steps).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chaos.errors import UsageError, quoted
from chaos.lab.registry_config import load_user_config
from chaos.language.fields import (
    Ctx,
    a_list,
    duration,
    known_keys,
    optional_bool,
    optional_str,
    reference_value,
    required_str,
)
from chaos.language.marked_yaml import (
    MarkedDict,
    MarkedList,
    load_marked,
    load_marked_text,
)
from chaos.language.model import LabSpec, MirrorSettings, Scenario, Target, User
from chaos.language.seed_image import parse_seed_image
from chaos.language.variables import Variables
from chaos.scenario.cross_checks import check_scenario
from chaos.steps.parse import DEFAULT_STEP_TIMEOUT_S, parse_step
from chaos.steps.registry import kinds

TOP_KEYS = ("name", "description", "tags", "variables", "defaults", "lab", "target", "steady_state", "steps", "rollback")
LAB_KEYS = ("users", "images", "push_registry", "seed", "mirror")
MIRROR_KEYS = ("login", "ttl", "config")
TARGET_KEYS = ("mirror", "control", "proxy", "ca", "storage", "users", "live", "private")
SECTIONS = ("steady_state", "steps", "rollback")
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^https?://[^\s/]+(/.*)?$")


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
    declared, marked_secret = _parse_variables(ctx, doc)
    variables = Variables(filename, declared, overrides, environ, marked_secret=marked_secret)
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
    for section in SECTIONS:
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
        variables=variables.for_the_journal,
        variable_names=frozenset(declared) | frozenset(variables.used),
        secrets=variables.secret_values | frozenset(u.password for u in (target.users if target else lab.users)),
    )
    check_scenario(ctx, scenario)
    return scenario


def _kind_hint(item: Any) -> str:
    if isinstance(item, dict):
        for kind in kinds():
            if kind in item:
                return kind
    return "step"


def _parse_variables(ctx: Ctx, doc: MarkedDict) -> tuple[dict[str, Any], frozenset[str]]:
    """NAME: default (null: must be given), or NAME: {default: ..., secret: true}."""
    node = doc.get("variables")
    if node is None:
        return {}, frozenset()
    if not isinstance(node, MarkedDict):
        raise ctx.fail(doc.line_of("variables"), "variables: expected a mapping of NAME to default value (null: must be given)")
    out, secret = {}, set()
    for key, value in node.items():
        if not isinstance(key, str) or not _VARIABLE.match(key):
            raise ctx.fail(node.line_of(key), f"variables: {quoted(key)} is not a variable name (letters, digits and _)")
        if isinstance(value, MarkedDict):
            known_keys(ctx, value, ("default", "secret"), f"variables.{key}")
            if optional_bool(ctx, value, "secret"):
                secret.add(key)
            value = value.get("default")
        if isinstance(value, (dict, list)):
            raise ctx.fail(node.line_of(key), f"variables.{key}: expected a plain value, or a mapping with default and secret")
        out[key] = value
    return out, frozenset(secret)


def _parse_tags(ctx: Ctx, doc: MarkedDict) -> tuple[str, ...]:
    tags = doc.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
        raise ctx.fail(doc.line_of("tags"), f"tags: expected lowercase words, got {quoted(tags)}")
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
    known_keys(ctx, node, LAB_KEYS, "lab")
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
    mirror = _parse_mirror_settings(ctx, node["mirror"], node.line_of("mirror"), users) if "mirror" in node else MirrorSettings()
    return LabSpec(
        users=users, images=tuple(images),
        push_registry=optional_bool(ctx, node, "push_registry") or False,
        seed=optional_str(ctx, node, "seed") or "hub-chaos",
        mirror=mirror,
    )


def _parse_mirror_settings(ctx: Ctx, node: Any, line: int, users: tuple[User, ...]) -> MirrorSettings:
    """`lab.mirror`: login (a lab user: the mirror's own Hub credentials), ttl, config (your distribution config)."""
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, f"mirror: expected a mapping with any of: {', '.join(MIRROR_KEYS)}")
    known_keys(ctx, node, MIRROR_KEYS, "lab.mirror")
    login = optional_str(ctx, node, "login")
    if login is not None and login not in {u.name for u in users}:
        raise ctx.fail(node.line_of("login"), f"mirror.login: unknown user {quoted(login)}; lab.users defines: "
                                              f"{', '.join(sorted(u.name for u in users)) or 'nobody'}")
    ttl = duration(ctx, node["ttl"], node.line_of("ttl"), "mirror.ttl", maximum_s=365 * 24 * 3600) if "ttl" in node else None
    config = optional_str(ctx, node, "config")
    if config is not None:
        path = Path(config) if Path(config).is_absolute() else Path(ctx.filename).parent / config
        try:
            load_user_config(path)  # checked now: nothing may start on a config the lab cannot use
        except UsageError as exc:
            raise ctx.fail(node.line_of("config"), f"mirror.config: {exc}") from None
        config = str(path)
    return MirrorSettings(upstream_login=login, ttl_s=ttl, config_file=config)


def _parse_target(ctx: Ctx, node: Any, line: int) -> Target:
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "target: expected a mapping with mirror and control URLs")
    known_keys(ctx, node, TARGET_KEYS, "target")

    def url(key: str, required: bool) -> str | None:
        value = required_str(ctx, node, key, "target") if required else optional_str(ctx, node, key)
        if value is not None and not _URL.match(value):
            raise ctx.fail(node.line_of(key), f"target.{key}: expected an http:// or https:// URL, got {quoted(value)}")
        if value is not None and "@" in urlsplit(value).netloc:
            # Not quoted: the URL holds a secret, and the run would write it to its journal and reports.
            raise ctx.fail(node.line_of(key), f"target.{key}: no user or password in the URL (user:password@...); "
                                              "logins go in target.users, whose passwords are kept out of every file")
        return value.rstrip("/") if value else None

    mirror, control, proxy = url("mirror", True), url("control", True), url("proxy", False)
    live = optional_bool(ctx, node, "live") or False
    if proxy is None and not live:
        # Without a fault proxy the client's own fallback goes to the real Docker
        # Hub: a step expecting a failure could pass for the wrong reason.
        raise ctx.fail(line, "target: no proxy, so clients would fall back to the real Docker Hub; "
                             "give target.proxy (the fault proxy), or live: true to allow the real Hub")
    private = []
    for item in a_list(ctx, node, "private"):
        if not isinstance(item, str):
            raise ctx.fail(node.line_of("private"), f"private: expected repository names, got {quoted(item)}")
        private.append(reference_value(ctx, item, node.line_of("private")).repository)
    return Target(
        mirror_url=mirror, control_url=control, proxy_url=proxy,
        ca_file=optional_str(ctx, node, "ca"), storage=optional_str(ctx, node, "storage"), users=_parse_users(ctx, node),
        live=live, private=tuple(private),
    )