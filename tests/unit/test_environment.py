"""The conda environment of the rules pins what pyproject.toml pins."""

import re
import tomllib

import yaml
from helpers import REPO


def pins(requirements):
    found = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", requirement.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_conda_environment_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pyproject = pins(project["dependencies"] + project["optional-dependencies"]["cpu"])
    environment = yaml.safe_load((REPO / "workflow/envs/resnet-recipe.yaml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda = pins(pip_section)
    # The workflow engine and its SLURM plugin run outside the rules' environment.
    engine = {"snakemake", "snakemake-executor-plugin-slurm"}
    assert conda == {name: version for name, version in pyproject.items() if name not in engine}
