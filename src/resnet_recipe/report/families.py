"""The report's view of experiments: each family of replicas (runs that differ only in
their seed, replicas.families) with the mean, sd, min and max of its top-1, top-5 and
training time, its time to the target accuracy and its training cost; whether two families
differ by more than their seed spread explains; and the summary as report.json."""

import math

import pandas as pd

from resnet_recipe.files.atomic_files import write_json
from resnet_recipe.report.replicas import (
    difference_test,
    families,
    reference_in_spread,
    spread,
    spread_text,
    time_to_target,
)
from resnet_recipe.report.tables import _hours, _number, _text

# The quantities summarised per family: (accuracy table column, Markdown name).
SPREAD_OF = (
    ("top1_percent", "top-1 (%)"),
    ("top5_percent", "top-5 (%)"),
    ("training_time_h", "wall time (h)"),
)
STATISTICS = ("mean", "sd", "min", "max")
# The families table's columns: its CSV holds every statistic apart, report.md one cell
# per quantity ("76.12 ± 0.08 (76.03 to 76.21)").
FAMILY_COLUMNS = [
    ("family", "family", _text),
    ("seeds", "seeds", _text),
    *[(f"{column}_spread", f"{name}: mean ± sd (min to max)", _text) for column, name in SPREAD_OF],
    ("target_epoch", "epoch to target", _text),
    ("target_time_h", "hours to target", _hours),
    ("cost", "cost (device-hours)", _hours),
    ("cost_unit", "cost unit", _text),
    ("reference_top1_percent", "reference top-1 (%)", _number(2)),
    ("reference_in_spread", "reference against the seeds", _text),
]
CSV_COLUMNS = [
    "family",
    "seeds",
    *[f"{column}_{statistic}" for column, _ in SPREAD_OF for statistic in STATISTICS],
    *[name for name, _, _ in FAMILY_COLUMNS[5:]],
]
COMPARISON_COLUMNS = [
    ("a", "family A", _text),
    ("b", "family B", _text),
    ("verdict", "verdict", _text),
    ("sentence", "why", _text),
]


def run_cost(report):
    """(training cost, unit) of a training report: GPU-hours (hours x GPUs x nodes), or
    CPU node-hours (hours x nodes, the whole CPU of each) for a run on the CPU."""
    hours = report["train_seconds"] / 3600.0
    nodes = report.get("nodes", 1)
    if report["gpus"]:
        return hours * report["gpus"] * nodes, "GPU-hours"
    return hours * nodes, "CPU node-hours"


def family_table(runs, accuracy, target_top1):
    """One row per family of the training runs: its runs' seeds, the spread of their top-1,
    top-5 (percent, from the accuracy table) and wall time, the family's time to
    target_top1, its mean training cost, and the reference top-1 of its experiment with
    where it lies against the seeds."""
    by_run = accuracy.set_index("run")
    epochs = {run["report"]["run"]: run["epochs"] for run in runs}
    rows = []
    for name, reports in families([run["report"] for run in runs]):
        members = [report["run"] for report in reports]
        row = {"family": name, "runs": members}
        seeds = [report.get("settings", {}).get("seed") for report in reports]
        row["seeds"] = " ".join(str(seed) for seed in seeds if seed is not None)
        for column, _ in SPREAD_OF:
            values = [by_run[column].get(run) for run in members]
            stats = spread([None if pd.isna(value) else value for value in values])
            row.update({f"{column}_{key}": stats[key] for key in STATISTICS})
            row[f"{column}_spread"] = spread_text(stats, 4 if "time" in column else 2)
        row["target_epoch"], row["target_time_h"] = time_to_target(
            [epochs[run] for run in members], target_top1
        )
        costs = [run_cost(report) for report in reports]
        row["cost"] = sum(cost for cost, _ in costs) / len(costs)
        row["cost_unit"] = costs[0][1]
        reference = by_run["reference_top1_percent"].get(members[0])
        row["reference_top1_percent"] = reference
        top1 = [by_run["top1_percent"].get(run) for run in members]
        row["reference_in_spread"] = reference_in_spread(
            [None if pd.isna(value) else value for value in top1], reference
        )
        rows.append(row)
    names = ["runs", *CSV_COLUMNS, *[f"{column}_spread" for column, _ in SPREAD_OF]]
    table = pd.DataFrame(rows, columns=names)
    return table.astype({"target_epoch": "Int64"})


def family_comparisons(table, accuracy):
    """Every pair of families with two seeds or more each, told whether their top-1
    differs by more than the seed spread explains (replicas.difference_test); and the
    names of the families with one seed, which no test can judge."""
    top1 = accuracy.set_index("run")["top1_percent"]
    values = {
        row.family: [float(top1[run]) for run in row.runs if not pd.isna(top1.get(run))]
        for row in table.itertuples()
    }
    judged = [name for name, seeds in values.items() if len(seeds) >= 2]
    rows = []
    for i, a in enumerate(judged):
        for b in judged[i + 1 :]:
            rows.append({"a": a, "b": b, **difference_test(values[a], values[b])})
    single = [name for name, seeds in values.items() if len(seeds) < 2]
    columns = ["a", "b", "verdict", "sentence", "difference", "t", "df", "p"]
    return pd.DataFrame(rows, columns=columns), single


def _plain(value):
    """A table cell as JSON holds it: None for a missing number."""
    if isinstance(value, list):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def write_summary(path, accuracy, family_rows, comparisons, target_top1):
    """report.json: the target, every run's row of the accuracy table, every family and
    every comparison of two families, as JSON."""
    summary = {
        "target_top1_percent": target_top1,
        "runs": [
            {key: _plain(value) for key, value in row.items()}
            for row in accuracy.to_dict("records")
        ],
        "families": [
            {key: _plain(value) for key, value in row.items()}
            for row in family_rows.to_dict("records")
        ],
        "comparisons": [
            {key: _plain(value) for key, value in row.items()}
            for row in comparisons.to_dict("records")
        ],
    }
    write_json(path, summary)
