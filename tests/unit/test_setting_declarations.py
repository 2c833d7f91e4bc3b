"""A setting is declared once: the schema, config/README.md's key tables, the rules' rerun
triggers and the resumable-state digest follow from its declaration (a setting added in a
scratch copy: workflow/test_added_setting.py)."""

import dataclasses
import re
import typing

import pytest
from helpers import REPO
from helpers.workflow_runs import demo_config
from snakemake.utils import validate

from resnet_recipe.workflow_support import config_schema
from resnet_recipe.workflow_support.declaration import (
    AFFECTS,
    COMPUTES,
    MEASURES_SPEED,
    rerun_triggers,
    setting,
)
from resnet_recipe.workflow_support.settings import (
    InputPipeline,
    TrainingRun,
    run_settings,
    section_of,
)

SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
CONFIG_README = REPO / "config/README.md"
REGENERATE = "python -m resnet_recipe.workflow_support.config_schema"


def all_classes():
    return [cls for _, classes in config_schema.SECTIONS.values() for cls in classes]


def test_the_checked_in_schema_is_generated_from_the_declarations():
    assert SCHEMA_PATH.read_text() == config_schema.schema_text(), (
        f"stale schema: run `{REGENERATE} schema > workflow/schemas/config.schema.yaml`"
    )


def test_the_config_readme_tables_are_generated_from_the_declarations():
    text = CONFIG_README.read_text()
    assert text == config_schema.with_tables(text), (
        f"stale key tables: run `{REGENERATE} readme config/README.md`"
    )
    generated = re.findall(r"^<!-- keys of ([\w.]+)", text, flags=re.M)
    assert sorted(generated) == sorted(config_schema.SECTIONS)


def test_the_readme_prose_around_the_tables_stays():
    text = CONFIG_README.read_text()
    edited = text.replace("| `prefetch_queue_depth` | `2` |", "| `prefetch_queue_depth` | `7` |")
    edited = edited.replace("Labels are the positions", "Hand-written: labels are the positions")
    assert edited != text
    regenerated = config_schema.with_tables(edited)
    assert "| `prefetch_queue_depth` | `2` |" in regenerated
    assert "Hand-written: labels are the positions" in regenerated


@pytest.mark.parametrize("cls", all_classes(), ids=lambda cls: cls.__name__)
def test_every_field_is_a_complete_declaration(cls):
    for item in dataclasses.fields(cls):
        meta = item.metadata
        assert meta.get("description", "").endswith("."), f"{cls.__name__}.{item.name}"
        assert meta.get("original"), f"{cls.__name__}.{item.name} names no origin"
        assert meta.get("affects") in AFFECTS, f"{cls.__name__}.{item.name}"


def test_a_declaration_with_an_unknown_bound_or_effect_is_refused():
    with pytest.raises(ValueError, match="affects must be one of"):
        setting(1, "x.", original="x", affects="results")
    with pytest.raises(ValueError, match=r"unknown bound\(s\) \['minimun'\]"):
        setting(1, "x.", original="x", affects="result", minimun=0)


def test_validate_fills_the_declared_defaults():
    """What Snakemake's validate fills in for a config that gives only data.raw_dir is what
    the settings classes take for a missing key."""
    config = {"data": {"raw_dir": "raw"}}
    validate(config, str(SCHEMA_PATH))
    for path, (_, classes) in config_schema.SECTIONS.items():
        for cls in classes:
            section = section_of(config, path, cls)
            defaults = {"raw_dir": "raw"} if path == "data" else {}
            assert section == cls.from_config(defaults, path), path
            filled = config
            for key in path.split("."):
                filled = filled[key]
            assert set(filled) >= {item.name for item in dataclasses.fields(cls)}, path
    assert config["training"]["runs"] == {}
    assert config["benchmark"]["train"]["points"]["float16"] == {
        "gpus": [1, 4, 8],
        "batch_sizes": [208],
    }


def test_a_run_is_merged_and_converted_in_one_place():
    config = demo_config()
    config["training"]["runs"]["cpu_fp32"] = {"lr_per_256": "1e-3", "epochs": 3}
    run = run_settings(config, "cpu_fp32")
    assert (run.lr_per_256, run.epochs, run.batch_per_device) == (0.001, 3, 32)
    with pytest.raises(ValueError, match=r"training.runs.cpu_fp32.epochs: expected an integer"):
        run_settings({"training": {"runs": {"cpu_fp32": {"epochs": "many"}}}}, "cpu_fp32")
    with pytest.raises(ValueError, match="training.runs has no run 'x'"):
        run_settings(config, "x")


def test_what_a_setting_affects_decides_the_triggers():
    run = TrainingRun()
    assert "log_interval" not in rerun_triggers(run)  # logging: reruns nothing
    assert "export_every" in rerun_triggers(run)  # which epochs a run writes out
    assert "export_every" not in rerun_triggers(run, MEASURES_SPEED)  # a benchmark exports none
    pipeline = InputPipeline()
    assert "prefetch_queue_depth" not in rerun_triggers(pipeline, COMPUTES)
    assert "prefetch_queue_depth" in rerun_triggers(pipeline, MEASURES_SPEED)
    assert list(rerun_triggers(pipeline)) == sorted(rerun_triggers(pipeline))


def test_the_schema_types_follow_the_annotations():
    """Each setting's schema type is its annotation's (a spot check of the generator)."""
    properties = config_schema.schema()["$defs"]["run_settings"]["properties"]
    hints = typing.get_type_hints(TrainingRun)
    expected = {int: "integer", float: "number", str: "string", tuple[int, ...]: "array"}
    for name, annotation in hints.items():
        if annotation in expected:
            assert properties[name]["type"] == expected[annotation], name
    assert {arm["type"] for arm in properties["loss_scale"]["oneOf"]} == {"number", "string"}
