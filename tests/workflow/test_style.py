"""The code and the workflow pass their linters and formatters, as the test command checks."""

import subprocess
import sys
from pathlib import Path

from helpers import REPO
from helpers.workflow_runs import SNAKEMAKE, run_snakemake

BIN = Path(sys.executable).parent
PYTHON_PATHS = ["src", "tests", "benchmarks", "workflow/scripts"]
WORKFLOW_PATHS = ["Snakefile", "workflow/rules"]


def check(*command):
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert process.returncode == 0, f"{' '.join(command)}:\n{process.stdout}\n{process.stderr}"


def test_ruff_finds_nothing():
    check(str(BIN / "ruff"), "check", *PYTHON_PATHS)


def test_python_is_formatted():
    check(str(BIN / "ruff"), "format", "--check", *PYTHON_PATHS)


def test_rule_files_are_formatted():
    check(str(BIN / "snakefmt"), "--check", *WORKFLOW_PATHS)


def test_snakemake_lint_is_clean(workflow_dir):
    assert Path(SNAKEMAKE).exists()
    process = run_snakemake(workflow_dir, "--lint")
    assert (
        "Congratulations, your workflow is in a good condition!" in process.stdout + process.stderr
    )
