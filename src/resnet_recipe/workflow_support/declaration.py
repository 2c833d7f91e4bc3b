"""How a setting is declared, once: its name and type (a field of a settings dataclass),
default, allowed values, a one-line description, where the original recipe has it (or why
this project departs), and what a change of it affects. Everything else follows from the
declaration: the config schema and the key tables of config/README.md
(workflow_support.config_schema), the rules' rerun triggers (workflow/rules/common.smk)
and the resumable-state digest of a training run (training.loop).

    @dataclass(frozen=True)
    class InputPipeline(Section):
        prefetch_queue_depth: int = setting(
            2, "Batches each DALI pipeline prepares ahead.",
            original="runner L79 (--dali-prefetch-queue 2)", affects=SPEED, minimum=1,
        )

What a setting affects, and what a change of it therefore reruns:

    RESULT     what a stage computes: reruns every stage that reads it
    EXPORTS    which of its results a stage writes out (training's export_every): reruns that
               stage, which resumes from its saved state
    SPEED      only how fast a job runs or how much memory it reserves: reruns only the
               benchmarks, whose result is speed
    LOGGING    only what a job logs and when it gives up on a diverged run: reruns nothing
    JOBS       which jobs the workflow runs (a benchmark point, the onnxruntime points): a
               job's own value reaches it through its wildcards, so other jobs do not rerun
    PLACEMENT  where a job runs and how it reaches its devices and peers (GPU lock files,
               the network interface of a multi-node run): never changes a result

Section is the base of every settings dataclass: built from a config mapping with every
value converted and checked once (a number written as text in exponent form, `1e-3`, which
YAML 1.1 and the command line hand over as text, is the number it says), and back.

This module imports neither MXNet nor DALI: the command line, the Snakefile and the report
read it.
"""

import dataclasses
import re
import types
import typing

from resnet_recipe.files.user_errors import UserError

RESULT = "result"
EXPORTS = "exports"
SPEED = "speed"
LOGGING = "logging"
JOBS = "jobs"
PLACEMENT = "placement"
AFFECTS = (RESULT, EXPORTS, SPEED, LOGGING, JOBS, PLACEMENT)
# What reruns a stage that computes results (train, score, parity) and one whose result is
# speed (the benchmark points, which export nothing).
COMPUTES = (RESULT, EXPORTS)
MEASURES_SPEED = (RESULT, SPEED)
# The default of a setting the config must give (data.raw_dir).
REQUIRED = dataclasses.MISSING

# A decimal number written as text; EXPONENT_NUMBER the forms YAML 1.1 leaves as text
# (1e-3, 2E5, 1.5e+3: YAML 1.1 wants a dot and a signed exponent to see a float).
NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


def setting(default, description, *, original, affects, **allowed):
    """A dataclass field that declares a setting. `original` is the original recipe's file
    and line, or why the setting departs from it or has no counterpart there; `affects` one
    of AFFECTS. `allowed` bounds the value, or the items of a list or mapping:
    choices, minimum, maximum, exclusive_minimum, length (of a list); for a mapping keys
    (its fixed keys, as properties), key_pattern (instead of fixed keys), keys_required,
    key_defaults (each key takes its default by itself) and key_description (with {key})."""
    if affects not in AFFECTS:
        raise ValueError(f"affects must be one of {AFFECTS}, not {affects!r}")
    unknown = set(allowed) - set(ALLOWED)
    if unknown:
        raise ValueError(f"unknown bound(s) {sorted(unknown)}; known: {ALLOWED}")
    metadata = {"description": description, "original": original, "affects": affects, **allowed}
    if isinstance(default, dict | list):
        frozen = default
        return dataclasses.field(default_factory=lambda: _copy(frozen), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


ALLOWED = (
    "choices",
    "minimum",
    "maximum",
    "exclusive_minimum",
    "length",
    "keys",
    "key_pattern",
    "keys_required",
    "key_defaults",
    "key_description",
)


def _copy(value):
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def declarations(section):
    """The declared fields of a settings dataclass (or instance), in declaration order."""
    return [item for item in dataclasses.fields(section) if "affects" in item.metadata]


def names_affecting(section, *affects):
    """The names of `section`'s settings that affect one of `affects`."""
    return tuple(item.name for item in declarations(section) if item.metadata["affects"] in affects)


def rerun_triggers(section, affects=COMPUTES):
    """The values of a settings section (an instance) that a stage's rerun depends on: its
    settings that affect one of `affects` (COMPUTES for a stage that computes results,
    MEASURES_SPEED for a benchmark), as plain data with sorted keys."""
    config = section.to_config()
    return sorted_keys({name: config[name] for name in names_affecting(section, *affects)})


def sorted_keys(value):
    """value with the keys of every dict in it sorted (Snakemake compares params as
    written, key order included)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [sorted_keys(item) for item in value]
    return value


def number_from_text(text):
    """The int or float a text says (`1e-3` -> 0.001, `128` -> 128), or None."""
    if not NUMBER.match(text.strip()):
        return None
    value = float(text)
    return int(value) if re.fullmatch(r"[-+]?\d+", text.strip()) else value


def read_config_numbers(config):
    """Replace, in place, every string value of a config mapping that is a number in
    exponent form by that number, so that the schema checks `lr_per_256: 1e-3` as the
    number it is. Keys and other strings (`version: "1.5"`) stay as they are."""

    def as_number(value):
        if isinstance(value, str) and EXPONENT_NUMBER.match(value.strip()):
            return float(value)
        if isinstance(value, dict):
            for key, item in value.items():
                value[key] = as_number(item)
        elif isinstance(value, list):
            value[:] = [as_number(item) for item in value]
        return value

    as_number(config)
    return config


class Section:
    """What every settings section shares: built from a config mapping, back to one."""

    @classmethod
    def from_config(cls, mapping, option):
        """The section of `mapping` (missing keys take their default). `option` names the
        section in errors: "training.runs.x" gives "training.runs.x.lr_per_256: ..."."""
        if not isinstance(mapping, dict):
            raise UserError(f"{option}: expected a mapping, not {mapping!r}")
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise UserError(f"{option}: unknown setting(s) {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        values = {
            name: convert(value, hints[name], f"{option}.{name}") for name, value in mapping.items()
        }
        missing = [item.name for item in dataclasses.fields(cls) if _required(item)]
        missing = sorted(set(missing) - set(values))
        if missing:
            raise UserError(f"{option}: missing setting(s) {missing}")
        return cls(**values)

    def to_config(self):
        """The section as plain data (lists for tuples, mappings for sections), as JSON and
        the config hold it."""
        return {item.name: plain(getattr(self, item.name)) for item in dataclasses.fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _required(item):
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def plain(value):
    """A value as the config and JSON write it: lists for tuples, mappings for sections."""
    if isinstance(value, Section):
        return value.to_config()
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def convert(value, annotation, option):
    """`value` as the type `annotation` (of a settings field) says, or a ValueError naming
    `option`. Text that is a number is read as one where a number is expected."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for choice in args:
            try:
                return convert(value, choice, option)
            except ValueError:
                continue
        expected = " or ".join(type_name(choice) for choice in args)
        raise UserError(f"{option}: expected {expected}, not {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{option}: expected a list, not {value!r}")
        return tuple(convert(item, args[0], f"{option}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{option}: expected a mapping, not {value!r}")
        return {key: convert(item, args[1], f"{option}.{key}") for key, item in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation.from_config(value, option)
    return _convert_scalar(value, annotation, option)


def _convert_scalar(value, annotation, option):
    if annotation is type(None) and value is None:
        return None
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation in (int, float) and isinstance(value, str):
        number = number_from_text(value)
        value = value if number is None else number
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return value  # an int stays an int: 5 epochs of warmup are written as 5
    if annotation is str and isinstance(value, str):
        return value
    raise UserError(f"{option}: expected {type_name(annotation)}, not {value!r}")


def type_name(annotation):
    names = {int: "an integer", float: "a number", str: "a text", bool: "true or false"}
    return names.get(annotation, "null" if annotation is type(None) else str(annotation))
