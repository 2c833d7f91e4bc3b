"""A setting added by one declaration in a scratch copy of the package and workflow: the
schema, config/README.md's key table and the train rule's rerun triggers take it up."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from helpers import REPO
from helpers.workflow_runs import copy_workflow, demo_config, run_snakemake, write_config

# One new setting of the input pipelines, declared by one declaration and used by nothing:
# the schema, the config key table and the train rule's rerun triggers must take it up.
NEW_SETTING = """
    {name}: bool = setting(
        False,
        "A setting added by one declaration.",
        original="not in the original",
        affects={affects},
    )
"""


def add_declaration(workdir, name, affects):
    """Declare `name` in the copy's InputPipeline, after its last setting, and regenerate
    the schema and the key tables there."""
    path = workdir / "src/resnet_recipe/workflow_support/settings.py"
    text = path.read_text()
    anchor = re.search(r"    nvjpeg_padding_mb: int = setting\(.*?\n    \)\n", text, re.S)
    new = NEW_SETTING.format(name=name, affects=affects)
    path.write_text(text[: anchor.end()] + new.lstrip("\n") + text[anchor.end() :])
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    module = [sys.executable, "-m", "resnet_recipe.workflow_support.config_schema"]
    schema = subprocess.run(
        [*module, "schema"], cwd=workdir, env=env, check=True, capture_output=True, text=True
    ).stdout
    (workdir / "workflow/schemas/config.schema.yaml").write_text(schema)
    subprocess.run([*module, "readme", "config/README.md"], cwd=workdir, env=env, check=True)


def touch_train_outputs(workdir):
    """Mark the demo's training run and what it needs as made (Snakemake records the params
    of each job as it would after running it), without running anything."""
    for folder in ("resources/demo/train", "resources/demo/val", "results/train/cpu_fp32"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    (workdir / "results/lists").mkdir(parents=True)
    (workdir / "results/records").mkdir(parents=True)
    for name in ("classes.tsv", "train.lst", "val.lst"):
        (workdir / "results/lists" / name).touch()
    for split in ("train", "val"):
        for suffix in ("rec", "idx", "rejected.tsv"):
            (workdir / "results/records" / f"{split}.{suffix}").touch()
    run_snakemake(workdir, "results/train/cpu_fp32", "--touch", "--forceall", "--cores", "1")


@pytest.mark.parametrize(
    "affects, train_reruns", [("RESULT", True), ("SPEED", False)], ids=["result", "speed"]
)
def test_a_setting_added_by_one_declaration_reaches_schema_table_and_triggers(
    tmp_path, affects, train_reruns
):
    workdir = copy_workflow(tmp_path / "workflow")
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    name = "added_setting"
    add_declaration(workdir, name, affects)

    schema = yaml.safe_load((workdir / "workflow/schemas/config.schema.yaml").read_text())
    declared = schema["properties"]["input"]["properties"][name]
    assert declared == {
        "type": "boolean",
        "default": False,
        "description": "A setting added by one declaration.",
    }
    readme = (workdir / "config/README.md").read_text()
    row = f"| `{name}` | `false` | {'result' if train_reruns else 'speed only'} |"
    assert row in readme

    touch_train_outputs(workdir)
    config = demo_config()
    config["input"][name] = True  # the schema accepts it
    write_config(workdir / "changed.yaml", config)
    process = run_snakemake(
        workdir, "results/train/cpu_fp32", "-n", "--cores", "1", "--configfile", "changed.yaml"
    )
    plan = process.stdout + process.stderr
    reasons = [line for line in plan.splitlines() if "reason: Params have changed" in line]
    if train_reruns:
        assert len(reasons) == 1 and f"'{name}': True" in reasons[0], plan[-3000:]
    else:
        assert not reasons and "Nothing to be done" in plan, plan[-3000:]
