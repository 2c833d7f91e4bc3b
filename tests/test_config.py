"""Both shipped configs are valid, and every schema key is documented."""

import re

import jsonschema
import pytest
import yaml
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def schema_keys(schema, root=SCHEMA):
    """Every property name in the schema, following local $refs."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        yield from schema_keys(target, root)
    for name, sub in schema.get("properties", {}).items():
        yield name
        yield from schema_keys(sub, root)
    for sub in schema.get("patternProperties", {}).values():
        yield from schema_keys(sub, root)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_keys(schema["additionalProperties"], root)


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml"])
def test_shipped_config_is_valid(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(config)


def test_every_schema_key_has_a_description_and_is_documented():
    readme = (REPO / "config/README.md").read_text()
    missing = sorted({key for key in schema_keys(SCHEMA) if not re.search(rf"[`.]{key}`", readme)})
    assert not missing, f"config/README.md does not describe: {missing}"
    undescribed = []

    def walk(schema, path):
        for name, sub in schema.get("properties", {}).items():
            if "description" not in sub and "$ref" not in sub and set(sub) != {"default"}:
                undescribed.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")

    walk(SCHEMA, "config")
    walk(SCHEMA["$defs"]["run_settings"], "run")
    assert not undescribed, f"schema keys without a description: {undescribed}"
