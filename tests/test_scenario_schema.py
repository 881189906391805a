"""The committed JSON Schema is the one `chaos schema` prints, and every
shipped scenario satisfies it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from chaos.cli import main
from chaos.scenario.schema import scenario_schema, schema_json

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "schemas" / "scenario.schema.json"


def test_committed_schema_matches_the_code():
    assert COMMITTED.read_text() == schema_json(), "run: chaos schema > schemas/scenario.schema.json"


def test_chaos_schema_prints_it():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == scenario_schema()


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(scenario_schema())


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_satisfy_the_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), scenario_schema())


@pytest.mark.parametrize("document", [
    {"name": "t", "steps": [{"pul": "alpine"}]},
    {"name": "t", "steps": [{"pull": "alpine", "push": {"image": "a/b:1"}}]},
    {"name": "t", "steps": [{"fault": {"name": "x", "kind": "refuze"}}]},
    {"name": "t", "steps": [{"pull": "alpine", "expect": {"served_by": "cdn"}}]},
    {"name": "t", "steps": [{"restart": "mirorr"}]},
    {"name": "t", "steps": []},
])
def test_schema_rejects_what_the_loader_rejects(document):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, scenario_schema())
