"""Both shipped configs are valid, and every schema key is documented."""

import re

import jsonschema
import pytest
import yaml
from helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def schema_keys(schema, path=(), root=SCHEMA):
    """(dotted path, key) of every property in the schema, following local $refs; the
    path of a property under patternProperties or additionalProperties has "*"."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        yield from schema_keys(target, path, root)
    for name, sub in schema.get("properties", {}).items():
        yield ".".join((*path, name)), name
        yield from schema_keys(sub, (*path, name), root)
    for sub in schema.get("patternProperties", {}).values():
        yield from schema_keys(sub, (*path, "*"), root)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_keys(schema["additionalProperties"], (*path, "*"), root)


def readme_entries(text):
    """{section: {key: its table row}} of config/README.md. A `## `name`` heading starts a
    section, and so does a paragraph line that starts with a `dotted.name` (every dotted
    name in that line: `training.defaults` ...; `training.runs` ...). The first column of
    the section's table names its keys, each in backticks."""
    entries, sections, previous = {}, [], ""
    for line in text.splitlines():
        heading = re.match(r"#+ `([\w.]+)`", line)
        paragraph_start = not previous.strip()
        previous = line
        if heading:
            sections = [heading.group(1)]
        elif line.startswith("`") and paragraph_start:
            sections = re.findall(r"`(\w+(?:\.\w+)+)`", line) or sections
        elif line.startswith("| `"):
            first_cell = line.split("|")[1]
            for section in sections:
                for key in re.findall(r"`(\w+)`", first_cell):
                    entries.setdefault(section, {})[key] = line
        for section in sections:
            entries.setdefault(section, {})
    return entries


def documented(path, entries):
    """Whether a schema key has its own row in the README table of the section that holds
    it (the nearest enclosing section with a table: training.runs.*.gpus is in `training`),
    or is a section the README introduces itself, or, nested in a documented key's value,
    is named in that key's row (num_examples.float16)."""
    parts = path.split(".")
    if path in entries:
        return True
    for end in range(len(parts) - 1, 0, -1):
        section = ".".join(parts[:end])
        if section in entries:
            rows = entries[section]
            if parts[-1] in rows:
                return end == len(parts) - 1 or parts[end] not in rows
            return parts[end] in rows and re.search(rf"\b{parts[-1]}\b", rows[parts[end]])
    return False


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml"])
def test_shipped_config_is_valid(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(config)


def test_every_schema_key_has_a_description_and_is_documented():
    entries = readme_entries((REPO / "config/README.md").read_text())
    missing = sorted({path for path, _ in schema_keys(SCHEMA) if not documented(path, entries)})
    assert not missing, f"config/README.md has no entry for: {missing}"
    undescribed = []

    def walk(schema, path):
        for name, sub in schema.get("properties", {}).items():
            if "description" not in sub and "$ref" not in sub and set(sub) != {"default"}:
                undescribed.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")

    walk(SCHEMA, "config")
    walk(SCHEMA["$defs"]["run_settings"], "run")
    assert not undescribed, f"schema keys without a description: {undescribed}"


def test_the_documentation_check_looks_in_the_keys_own_section():
    """A key named anywhere in the README is not thereby documented: `gpus` and `epochs`
    have rows in the benchmark tables, which say nothing of training runs."""
    text = (REPO / "config/README.md").read_text()
    entries = readme_entries(text)
    assert documented("training.defaults.gpus", entries)
    assert documented("benchmark.train.num_examples.float16", entries)
    without = text.replace("| `gpus` | `8` |", "| GPUs | `8` |")
    assert without != text
    entries = readme_entries(without)
    assert not documented("training.defaults.gpus", entries)
    assert not documented("training.runs.*.gpus", entries)
    assert documented("benchmark.infer.gpus", entries)
    assert not documented("network.batch_size", entries)
