"""The test suite's own rules, read from its source with ast: no test file imports another
test file or conftest.py (shared code lives in helpers/), and the unit tier starts no
process and no Snakemake run."""

import ast

import pytest
from helpers import REPO

TESTS = REPO / "tests"
TEST_FILES = sorted(TESTS.rglob("test_*.py"))
# What a unit test must not use: processes, and Snakemake runs in a workflow copy.
NOT_IN_UNIT = {"subprocess", "multiprocessing", "run_snakemake", "planned_jobs", "SNAKEMAKE"}
NOT_IN_UNIT_FIXTURES = {"workflow_dir"}


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_there_are_test_files_in_every_tier():
    tiers = {path.relative_to(TESTS).parts[0] for path in TEST_FILES}
    assert tiers == {"unit", "stages", "workflow"}


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda path: path.relative_to(TESTS).as_posix())
def test_no_test_file_imports_another_or_conftest(path):
    modules = set(imported_modules(ast.parse(path.read_text())))
    test_modules = {name for name in modules if name.split(".")[0].startswith("test_")}
    assert not test_modules and "conftest" not in modules, path


@pytest.mark.parametrize(
    "path",
    sorted((TESTS / "unit").glob("test_*.py")),
    ids=lambda path: path.name,
)
def test_a_unit_test_starts_no_process_and_no_snakemake(path):
    tree = ast.parse(path.read_text())
    names = set(imported_modules(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            names.update(f"fixture {arg.arg}" for arg in node.args.args)
    fixtures = {f"fixture {name}" for name in NOT_IN_UNIT_FIXTURES}
    assert not names & (NOT_IN_UNIT | fixtures), path
