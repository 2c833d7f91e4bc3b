"""`resnet-recipe compare`: two runs or two results folders side by side (metrics, the
settings that differ, provenance that differs), as text and JSON (without MXNet:
stages/test_light_imports.py)."""

import json
import re

import pytest
from helpers.result_files import results_folder

from resnet_recipe.cli import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = results_folder(root / "a", 32)
    b = results_folder(root / "b", 64, commit="feedface" * 5, extra_run=True)
    return a, b


def compare_output(capsys, *args):
    assert main(["compare", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_two_runs_side_by_side(folders, capsys):
    a, b = folders
    text = compare_output(capsys, a / "train" / "r", b / "train" / "r")
    lines = text.splitlines()
    assert lines[:2] == [f"A: {a / 'train' / 'r'}", f"B: {b / 'train' / 'r'}"]
    sections = text.split("\n\n")
    metrics, settings, made = sections[1], sections[2], sections[3]
    assert metrics.startswith("metrics:")
    assert re.search(r"^  top-1 \(%\) +53\.2 +56\.4$", metrics, re.MULTILINE)
    assert "training time (h)" in metrics and "scoring images/s" in metrics
    settings_rows = settings.splitlines()[2:]
    assert settings.startswith("settings that differ:")
    assert [row.split() for row in settings_rows] == [["batch_per_device", "32", "64"]]
    assert made.startswith("provenance that differs:")
    rows = [row.split() for row in made.splitlines()[2:]]
    commit = json.loads((a / "train" / "r" / "report.json").read_text())["provenance"]["code"]
    assert rows == [["code.git_commit", commit["git_commit"], "feedface" * 5]]


def test_two_runs_as_json(folders, capsys):
    a, b = folders
    comparison = json.loads(compare_output(capsys, "--json", a / "train" / "r", b / "train" / "r"))
    assert comparison["sections"]["settings that differ"] == [
        {"field": "batch_per_device", "a": "32", "b": "64"}
    ]
    metrics = {row["field"]: row for row in comparison["sections"]["metrics"]}
    assert metrics["loss"] == {"field": "loss", "a": "1", "b": "1"}


def test_results_folders_compare_what_both_have(folders, capsys):
    a, b = folders
    comparison = json.loads(compare_output(capsys, "--json", a, b))
    sections = comparison["sections"]
    metrics = {row["field"]: (row["a"], row["b"]) for row in sections["metrics"]}
    assert metrics["r: top-1 (%)"] == ("53.2", "56.4")
    assert metrics["bench_infer/float32/b8.json: images/s"] == ("3200", "6400")
    assert "bench_infer/float32/b8.json: latency mean (ms)" in metrics
    assert sections["settings that differ"] == [
        {"field": "r: batch_per_device", "a": "32", "b": "64"}
    ]
    # The run's report and score have another commit; the benchmark point does not.
    [commit] = sections["provenance that differs"]
    assert commit["field"] == "code.git_commit"
    assert commit["b"] == ", ".join(sorted([commit["a"], "feedface" * 5]))
    assert sections["only in one"] == [
        {"field": "train/only_here/report.json", "a": "-", "b": "yes"}
    ]


def test_unlike_folders_are_an_error_naming_them(folders, capsys):
    """One line on stderr and exit status 2, no traceback (files.user_errors)."""
    a, b = folders
    for args, message in [
        ([a / "train" / "r", b], f"{a / 'train' / 'r'} is a training run folder"),
        ([a, a / "nowhere"], "nowhere: not a folder"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(["compare", *map(str, args)])
        assert stop.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("resnet-recipe: error: ") and message in error
        assert error.count("\n") == 1
