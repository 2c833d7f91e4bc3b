"""Families of replicas: their spread, whether two differ beyond it (in the report and in
`resnet-recipe compare`), time to a target accuracy, and where the reference lies."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.result_files import REFERENCE_DIR, write_replicas, write_run, write_score

from resnet_recipe.cli import main
from resnet_recipe.report import cost_plot, plots
from resnet_recipe.report.build import ReportOutputs, build_report
from resnet_recipe.report.inputs import reference_files
from resnet_recipe.report.replicas import (
    difference_test,
    families,
    reference_in_spread,
    spread,
    time_to_target,
    welch,
)
from resnet_recipe.workflow_support import results

# Two families far apart (10 points of top-1, spread under half a point) and two draws of
# one setting with other seeds.
HIGH = [0.80, 0.81, 0.805]
LOW = [0.70, 0.71, 0.705]
SAME_A = [0.800, 0.806, 0.797]
SAME_B = [0.803, 0.799, 0.808]


def test_spread_is_mean_sample_sd_min_and_max():
    stats = spread([1.0, 2.0, 4.0])
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(7 / 3)
    assert stats["sd"] == pytest.approx(
        math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    )
    assert (stats["min"], stats["max"]) == (1.0, 4.0)
    assert spread([5.0])["sd"] is None


def test_welch_matches_a_worked_example():
    # t = (5 - 2) / sqrt(1/3 + 1/3) = 3.674 on 4 degrees of freedom (equal variances):
    # two-sided p = 0.0213 from Student's t table.
    t, df, p = welch([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert t == pytest.approx(3.6742, abs=1e-4)
    assert df == pytest.approx(4.0)
    assert p == pytest.approx(0.0213, abs=1e-4)


def test_far_apart_families_differ_and_draws_of_one_setting_do_not():
    far = difference_test([100 * v for v in HIGH], [100 * v for v in LOW])
    assert far["verdict"] == "differ" and far["p"] < 0.001
    assert "more than the seed spread explains" in far["sentence"]
    same = difference_test([100 * v for v in SAME_A], [100 * v for v in SAME_B])
    assert same["verdict"] == "no difference shown" and same["p"] > 0.5
    assert "within what the seed spread explains" in same["sentence"]


def test_one_seed_gives_no_judgement():
    verdict = difference_test([80.0], [70.0, 71.0, 70.5])
    assert verdict["verdict"] == "no judgement" and verdict["p"] is None
    assert "1 seed on one side" in verdict["sentence"]


def test_the_reference_within_or_outside_the_measured_range():
    assert reference_in_spread([76.0, 76.4, 76.2], 76.3).startswith(
        "reference 76.30 lies within the measured range 76.00 to 76.40, +0.5 sd"
    )
    assert "outside" in reference_in_spread([76.0, 76.4, 76.2], 77.0)
    assert "one seed" in reference_in_spread([76.0], 76.0)


def lines(val_top1s, seconds=60.0):
    return [
        {"epoch": epoch, "val_top1": value, "epoch_seconds": seconds}
        for epoch, value in enumerate(val_top1s, start=1)
    ]


def test_time_to_target_of_a_run_and_of_a_family_mean():
    assert time_to_target([lines([0.5, 0.7, 0.9])], 70.0) == (2, pytest.approx(120 / 3600))
    assert time_to_target([lines([0.5, 0.7, 0.9])], 95.0) == (None, None)
    # Seed 1 reaches 70% at epoch 2, seed 2 at 3; their mean (0.65, then 0.8) at 3.
    family = [lines([0.5, 0.7, 0.8]), lines([0.5, 0.6, 0.8], seconds=120.0)]
    assert time_to_target(family, 70.0) == (3, pytest.approx((180 + 360) / 2 / 3600))
    assert time_to_target([[{"epoch": 1, "val_top1": 0.8}]], 70.0) == (1, None)


def reports(root):
    return [results.read(f"{path}/report.json", results.RUN_REPORT) for path in root]


def test_families_are_runs_that_differ_only_in_seed(tmp_path):
    runs = write_replicas(tmp_path, "a", HIGH) + write_replicas(tmp_path, "b", LOW, 0.2)
    runs.append(
        write_run(tmp_path, "single", 0, "float32", 100.0, 30, 10, 32, 32, {"lr_per_256": 0.3})
    )
    named = families(reports(runs))
    assert [(name, [r["run"] for r in members]) for name, members in named] == [
        ("a", ["a.seed1", "a.seed2", "a.seed3"]),
        ("b", ["b.seed1", "b.seed2", "b.seed3"]),
        ("single", ["single"]),
    ]


def compare_json(capsys, a, b, *options):
    assert main(["compare", "--json", *options, str(a), str(b)]) == 0
    return json.loads(capsys.readouterr().out)


def test_compare_says_far_apart_families_differ(tmp_path, capsys):
    write_replicas(tmp_path, "high", HIGH)
    write_replicas(tmp_path, "low", LOW, lr_per_256=0.4)
    comparison = compare_json(capsys, tmp_path / "train" / "high", tmp_path / "train" / "low")
    assert "more than the seed spread explains" in comparison["verdict"]
    rows = {row["field"]: row for row in comparison["sections"][FAMILIES]}
    assert rows["runs"]["a"] == "high.seed1 high.seed2 high.seed3"
    assert rows["top-1 (%) over seeds"]["a"] == "80.50 ± 0.50 (80.00 to 81.00)"


def test_compare_of_one_setting_drawn_with_other_seeds_sees_no_difference(tmp_path, capsys):
    write_replicas(tmp_path / "a", "r", SAME_A)
    write_replicas(tmp_path / "b", "r", SAME_B, first_seed=4)
    comparison = compare_json(capsys, tmp_path / "a/train/r.seed1", tmp_path / "b/train/r.seed4")
    assert "within what the seed spread explains" in comparison["verdict"]
    assert comparison["sections"]["settings that differ"] == [{"field": "seed", "a": "1", "b": "4"}]


def test_compare_of_single_runs_gives_no_judgement_and_the_time_to_target(tmp_path, capsys):
    for run, top1 in (("x", 0.8), ("y", 0.7)):
        write_run(tmp_path, run, 0, "float32", 300.0, 30, 10, 32, 32, {"lr_per_256": top1})
        write_score(tmp_path, run, "float32", top1, 0.9, classes=10)
    train = tmp_path / "train"
    comparison = compare_json(capsys, train / "x", train / "y", "--target-top1", "50")
    assert comparison["verdict"].startswith("top-1 of A against B: no judgement")
    rows = {row["field"]: row for row in comparison["sections"][FAMILIES]}
    # val top-1 is 0.6 x epoch / 30: 50% at epoch 25, 25 of 30 epochs of 300 s.
    assert (rows["epoch to 50% validation top-1"]["a"], rows["hours to it"]["a"]) == (
        "25",
        f"{25 * 10 / 3600:.4g}",
    )


FAMILIES = "families of replicas (runs that differ only in seed)"


def replica_report(root):
    """A report of two families of three seeds and one run of one seed (a sweep point)."""
    runs = write_replicas(root, "high", HIGH) + write_replicas(root, "low", LOW, 0.4)
    runs.append(write_run(root, "point", 0, "float32", 500.0, 30, 10, 32, 32, {"seed": 1}))
    write_score(root, "point", "float32", 0.6, 0.7, classes=10)
    scores = [str(root / "score" / f"{Path(run).name}.json") for run in runs]
    outputs = ReportOutputs.in_folder(str(root / "report"))
    build_report(
        runs, scores, [], [], **reference_files(REFERENCE_DIR), outputs=outputs, target_top1=70.0
    )
    return outputs


def test_the_report_gives_each_family_its_spread_tests_and_time_to_target(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda figure, path: drawn.update({path: figure}))
    monkeypatch.setattr(cost_plot, "_save", lambda figure, path: drawn.update({path: figure}))
    outputs = replica_report(tmp_path)
    families_csv = pd.read_csv(outputs.families_csv).set_index("family")
    high = families_csv.loc["high"]
    assert (high["seeds"], high["top1_percent_mean"]) == ("1 2 3", pytest.approx(80.5))
    assert high["top1_percent_sd"] == pytest.approx(0.5)
    assert (high["top1_percent_min"], high["top1_percent_max"]) == (80.0, 81.0)
    assert high["training_time_h_mean"] == pytest.approx(320 / 3600)
    assert pd.isna(families_csv.loc["point", "top1_percent_sd"])
    # Mean validation top-1 of high's seeds: 0.6 x epoch / 30 + 0.205, 70% at epoch 25.
    assert high["target_epoch"] == 25
    text = open(outputs.markdown).read()
    assert "| high | 1 2 3 | 80.50 ± 0.50 (80.00 to 81.00) |" in text
    assert "| high | low | differ | top-1 differs by +10.00 points, more than the seed" in text
    assert "No judgement is possible for the families of one seed" in text and "point." in text
    summary = json.loads(Path(outputs.summary_json).read_text())
    assert summary["target_top1_percent"] == 70.0
    assert [c["verdict"] for c in summary["comparisons"]] == ["differ"]
    assert {run["run"]: run["target_epoch"] for run in summary["runs"]}["high.seed2"] == 25
    # The validation curves: a band around the mean of each family of three seeds.
    axes = drawn[outputs.validation_top1_png].axes[0]
    bands = [c for c in axes.collections if len(c.get_paths()) and len(c.get_paths()[0])]
    assert len(bands) == 2
    labels = [line.get_label() for line in axes.lines]
    assert "high (float32, CPU, 32 px, 3 seeds)" in labels
    assert "point (float32, CPU, 32 px)" in labels
    assert plots.REPLICA_BAND in [text.get_text() for text in axes.get_legend().get_texts()]


def test_the_pareto_front_is_what_nothing_beats_on_both_cost_and_accuracy():
    costs, top1 = [1.0, 2.0, 2.0, 4.0, 3.0], [70.0, 75.0, 74.0, 80.0, 75.0]
    assert cost_plot.pareto_front(costs, top1) == [True, True, False, True, False]
