"""The config's layout, and what is generated from the setting declarations: the JSON
schema Snakemake validates the config against (defaults filled by validate come from the
declarations' defaults) and the key tables of config/README.md. Both are checked in, and a
test fails when one is stale; regenerate them with

    python -m resnet_recipe.workflow_support.config_schema schema \
        > workflow/schemas/config.schema.yaml
    python -m resnet_recipe.workflow_support.config_schema readme config/README.md

In config/README.md, the lines between a `<!-- keys of SECTION ... -->` marker and the next
`<!-- end of generated keys -->` are the table of SECTION's settings; the prose around them
is written by hand.
"""

import re
import sys
import types
import typing

import yaml

from resnet_recipe.workflow_support.declaration import REQUIRED, Section, declarations, plain
from resnet_recipe.workflow_support.run_matrix import NOT_IN_GRID, RUN_NAME
from resnet_recipe.workflow_support.settings import (
    BenchInfer,
    BenchInferJobs,
    BenchTrain,
    BenchTrainJobs,
    Data,
    Devices,
    Distributed,
    InputPipeline,
    Network,
    Onnx,
    Report,
    Score,
    TrainingRun,
)

ROOT_DESCRIPTION = (
    "Configuration of the ResNet-50 v1.5 workflow. Defaults are the original NVIDIA recipe"
    " (ResNet50 v1.5 for MXNet, first release, DGX-1 with 8 V100) where it had the setting;"
    " the descriptions name the exceptions (seed, loss-scale floor, crop area)."
)
# Every section of the config whose settings are declared in one or more classes, with its
# description. training (defaults and runs, both TrainingRun) and benchmark (train, infer)
# are laid out by schema() itself.
SECTIONS = {
    "data": ("Raw images, list files and RecordIO packing.", (Data,)),
    "input": ("DALI input pipelines.", (InputPipeline,)),
    "network": ("The ResNet model.", (Network,)),
    "training.defaults": (
        "Settings every run starts from (the original recipe unless changed).",
        (TrainingRun,),
    ),
    "score": ("Scoring of every trained run on the validation split.", (Score,)),
    "benchmark.train": (
        "Training throughput (data plus compute), as the original benchmark.py reports it.",
        (BenchTrain, BenchTrainJobs),
    ),
    "benchmark.infer": (
        "Inference throughput and latency on one device per batch size.",
        (BenchInfer, BenchInferJobs),
    ),
    "onnx": (
        "ONNX export of every trained run, its parity with MXNet in onnxruntime, and"
        " onnxruntime's inference benchmark.",
        (Onnx,),
    ),
    "report": (
        "The aggregated report: tables, graphs and report.md from every result.",
        (Report,),
    ),
    "distributed": (
        "How the scheduler, parameter servers and workers of a run with nodes above 1 find"
        " each other (ps-lite over TCP, without authentication).",
        (Distributed,),
    ),
    "devices": ("Local GPU assignment.", (Devices,)),
}
GENERATED_START = re.compile(r"^<!-- keys of ([\w.]+)\b.*-->$")
GENERATED_END = "<!-- end of generated keys -->"


# The config's sections in the order of the schema (and of config/README.md).
TOP = ("data", "input", "network", "training", "score", "benchmark")
TOP += ("onnx", "report", "distributed", "devices")


def schema():
    """The JSON schema of the config, as a mapping."""
    sections = {}
    for name in TOP:
        if name == "training":
            sections[name] = training_schema()
        elif name == "benchmark":
            sections[name] = benchmark_schema()
        else:
            sections[name] = section_schema(*SECTIONS[name])
    run_settings = section_schema(
        "Settings of one training run; training.runs entries override training.defaults.",
        (TrainingRun,),
        defaults=False,
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": ROOT_DESCRIPTION,
        "type": "object",
        "additionalProperties": False,
        "required": [name for name in TOP if "default" not in sections[name]],
        "$defs": {"run_settings": run_settings},
        "properties": sections,
    }


def training_schema():
    """training: defaults (every setting with its default) and runs (overrides only)."""
    description, classes = SECTIONS["training.defaults"]
    defaults = {
        item.name: {"default": default_of(item)} for cls in classes for item in declarations(cls)
    }
    runs = {
        "type": "object",
        "default": {},
        "description": "Training runs by name; each value overrides some of training.defaults.",
        "propertyNames": {"pattern": RUN_NAME},
        "additionalProperties": {"$ref": "#/$defs/run_settings"},
    }
    return {
        "type": "object",
        "default": {},
        "description": "The training matrix.",
        "additionalProperties": False,
        "properties": {
            "defaults": {
                "$ref": "#/$defs/run_settings",
                "default": {},
                "description": description,
                "properties": defaults,
            },
            "runs": runs,
            "sweeps": sweeps_schema(),
        },
    }


def sweeps_schema():
    """training.sweeps: by name, a base run, overrides and a grid of values per setting,
    each value checked as the setting's own (workflow_support.run_matrix expands them)."""
    hints = typing.get_type_hints(TrainingRun)
    grid = {
        item.name: {
            "type": "array",
            "minItems": 1,
            "items": value_schema(hints[item.name], item.metadata),
        }
        for item in declarations(TrainingRun)
        if item.name not in NOT_IN_GRID
    }
    sweep = {
        "type": "object",
        "additionalProperties": False,
        "required": ["grid"],
        "properties": {
            "base": {
                "type": "string",
                "pattern": RUN_NAME,
                "description": "The run of training.runs the sweep starts from (default:"
                " training.defaults).",
            },
            "settings": {
                "$ref": "#/$defs/run_settings",
                "description": "Settings every point of the sweep changes from its base.",
            },
            "grid": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "description": "Values per setting; every combination is one run, named"
                " SWEEP.SETTING-VALUE... in the order of the setting names.",
                "properties": grid,
            },
        },
    }
    return {
        "type": "object",
        "default": {},
        "description": "Sweeps by name, each a grid of runs over settings.",
        "propertyNames": {"pattern": RUN_NAME},
        "additionalProperties": sweep,
    }


def benchmark_schema():
    kinds = {kind: section_schema(*SECTIONS[f"benchmark.{kind}"]) for kind in ("train", "infer")}
    return {
        "type": "object",
        "default": {},
        "description": "Throughput benchmarks, one cached job per point.",
        "additionalProperties": False,
        "properties": kinds,
    }


def section_schema(description, classes, defaults=True):
    """The object schema of a config section holding the settings of `classes`; with
    `defaults`, each setting carries its default (and the section defaults to {} unless a
    setting is required)."""
    properties, required = {}, []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for item in declarations(cls):
            properties[item.name] = setting_schema(item, hints[item.name], defaults)
            if is_required(item):
                required.append(item.name)
    schema = {"type": "object"}
    if defaults and not required:
        schema["default"] = {}
    if description:
        schema["description"] = description
    schema["additionalProperties"] = False
    if required:
        schema["required"] = required
    schema["properties"] = properties
    return schema


def setting_schema(item, annotation, with_default):
    """The schema of one declared setting."""
    meta = item.metadata
    schema = value_schema(annotation, meta)
    if with_default and not is_required(item):
        schema["default"] = default_of(item)
        if meta.get("key_defaults"):
            for key, sub in schema["properties"].items():
                sub["default"] = schema["default"][key]
    schema["description"] = meta["description"]
    return schema


def is_required(item):
    return item.default is REQUIRED and item.default_factory is REQUIRED


def default_of(item):
    """A setting's default as the config writes it."""
    if item.default_factory is not REQUIRED:
        return plain(item.default_factory())
    return plain(item.default)


def value_schema(annotation, meta):
    """The schema of a value of type `annotation` within the bounds of `meta` (which bound
    the items of a list or mapping)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return union_schema(args, meta)
    if origin is tuple:
        schema = {"type": "array", "items": value_schema(args[0], meta)}
        if meta.get("length"):
            schema.update(minItems=meta["length"], maxItems=meta["length"])
        return schema
    if origin is dict:
        return mapping_schema(args[1], meta)
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return section_schema(None, (annotation,), defaults=False)
    return scalar_schema(annotation, meta)


def union_schema(args, meta):
    others = [arg for arg in args if arg is not type(None)]
    if len(others) == 1 and len(args) == 2:
        schema = scalar_schema(others[0], meta)
        schema["type"] = [schema["type"], "null"]
        return schema
    return {"oneOf": [scalar_schema(arg, meta) for arg in args]}


def mapping_schema(value_type, meta):
    """A mapping by fixed keys (meta keys) or by keys matching meta key_pattern."""
    inner = {name: bound for name, bound in meta.items() if name not in ("length",)}
    schema = {"type": "object", "additionalProperties": False}
    if meta.get("key_pattern"):
        schema["patternProperties"] = {meta["key_pattern"]: value_schema(value_type, inner)}
        return schema
    if meta.get("keys_required"):
        schema["required"] = list(meta["keys"])
    schema["properties"] = {
        key: {
            **value_schema(value_type, inner),
            "description": meta["key_description"].format(key=key),
        }
        for key in meta["keys"]
    }
    return schema


SCALAR_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}
BOUNDS = {"minimum": "minimum", "maximum": "maximum", "exclusive_minimum": "exclusiveMinimum"}


def scalar_schema(annotation, meta):
    """One value: its type, the choices of its type, and a number's bounds."""
    if annotation not in SCALAR_TYPES:
        raise TypeError(f"no schema for a setting of type {annotation}")
    schema = {"type": SCALAR_TYPES[annotation]}
    choices = [c for c in meta.get("choices", ()) if type(c) is annotation]
    if choices:
        schema["enum"] = choices
    if annotation in (int, float):
        for bound, keyword in BOUNDS.items():
            if bound in meta:
                schema[keyword] = meta[bound]
    return schema


def schema_text():
    """The schema as the YAML file workflow/schemas/config.schema.yaml holds it."""
    header = (
        "# Generated from the setting declarations (resnet_recipe/workflow_support/settings.py,\n"
        "# stage_settings.py); do not edit. Regenerate with\n"
        "#   python -m resnet_recipe.workflow_support.config_schema schema"
        " > workflow/schemas/config.schema.yaml\n"
    )
    return header + yaml.safe_dump(schema(), sort_keys=False, width=92, allow_unicode=True)


AFFECTS_WORDS = {
    "result": "result",
    "exports": "files written",
    "speed": "speed only",
    "logging": "logging only",
    "jobs": "which jobs",
    "placement": "placement only",
}


def key_table(section):
    """The Markdown table of a config section's settings (`input`, `benchmark.train`,
    `training.defaults`): key, default, what a change affects, meaning and origin."""
    rows = ["| key | default | affects | meaning |", "| --- | --- | --- | --- |"]
    for cls in SECTIONS[section][1]:
        for item in declarations(cls):
            default = "(required)" if is_required(item) else f"`{flow(default_of(item))}`"
            meaning = f"{item.metadata['description']} Original: {item.metadata['original']}."
            affects = AFFECTS_WORDS[item.metadata["affects"]]
            rows.append(f"| `{item.name}` | {default} | {affects} | {meaning} |")
    return rows


def flow(value):
    """A value as YAML's flow style writes it: [1, 2], {float16: 128}, null, "1.5"."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(item) for item in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str) and yaml.safe_load(value) != value:
        return f'"{value}"'
    return str(value)


def with_tables(text):
    """config/README.md's text with every generated table made anew from the declarations."""
    lines, out, section = text.splitlines(), [], None
    for line in lines:
        start = GENERATED_START.match(line)
        if section is None:
            out.append(line)
            if start:
                section = start.group(1)
                if section not in SECTIONS:
                    raise ValueError(f"no settings section {section!r} ({line})")
        elif line == GENERATED_END:
            out.extend([*key_table(section), line])
            section = None
    if section is not None:
        raise ValueError(f"the generated keys of {section} have no {GENERATED_END!r}")
    return "\n".join(out) + "\n"


def update_readme(path):
    """Rewrite the generated tables of config/README.md at `path`."""
    with open(path) as file:
        text = file.read()
    new = with_tables(text)
    if new != text:
        with open(path, "w") as file:
            file.write(new)


def main(argv):
    if argv == ["schema"]:
        sys.stdout.write(schema_text())
    elif argv[:1] == ["readme"] and len(argv) == 2:
        update_readme(argv[1])
    else:
        sys.exit(
            "usage: python -m resnet_recipe.workflow_support.config_schema"
            " schema | readme CONFIG_README"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
