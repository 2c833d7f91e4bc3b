"""The graph of accuracy against training cost: every family of runs (a run, or the mean of
its replicas with a bar from the lowest to the highest seed) at its mean training cost,
the Pareto front marked, and the reference's runs where the report has runs of the
reference's experiment."""

import textwrap

from resnet_recipe.report.experiment import (
    REFERENCE_LABEL,
    REFERENCE_SETUP_TEXT,
    REFERENCE_TASK_TEXT,
)
from resnet_recipe.report.plots import _figure, _finish, _log_axis, _save, nothing_to_draw

TITLE = "Top-1 against training cost"
UNIT_MARKERS = {"GPU-hours": "o", "CPU node-hours": "s"}
FRONT_LABEL = "Pareto front (ringed): no other run\nas cheap and as accurate, per unit"


def pareto_front(costs, accuracies):
    """For each point, whether it is on the Pareto front: no other point costs as little
    or less and is as accurate or more, and better in one of the two."""
    points = list(zip(costs, accuracies, strict=True))
    return [
        not any((c <= cost and a >= accuracy) and (c < cost or a > accuracy) for c, a in points)
        for cost, accuracy in points
    ]


def plot_accuracy_cost(family_rows, reference, path):
    """Top-1 (mean over seeds) against training cost (device-hours, log scale) per family
    of `family_rows` (families.family_table), the Pareto front of each cost unit as a step
    line through its families, and the reference's runs (GPUs x hours) when some family
    has a reference top-1. Returns a note for report.md, or ''."""
    rows = family_rows.dropna(subset=["top1_percent_mean", "cost"])
    rows = rows[rows["cost"] > 0]
    if rows.empty:
        return nothing_to_draw(path, TITLE, "No run has both a score and a training time.")
    figure, axes = _figure()
    for unit, marker in UNIT_MARKERS.items():
        points = rows[rows["cost_unit"] == unit]
        if points.empty:
            continue
        low = (points["top1_percent_mean"] - points["top1_percent_min"]).to_numpy(float)
        high = (points["top1_percent_max"] - points["top1_percent_mean"]).to_numpy(float)
        axes.errorbar(
            points["cost"],
            points["top1_percent_mean"],
            yerr=[low, high],
            fmt=marker,
            capsize=3,
            label=f"{unit}: mean of the seeds,\nbar from lowest to highest",
        )
        for row in points.itertuples():
            axes.annotate(
                row.family,
                (row.cost, row.top1_percent_mean),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    for number, (_, points) in enumerate(rows.groupby("cost_unit")):
        # GPU-hours and CPU node-hours are not one currency: a front per unit.
        front = points[pareto_front(list(points["cost"]), list(points["top1_percent_mean"]))]
        front = front.sort_values("cost")
        axes.step(
            front["cost"],
            front["top1_percent_mean"],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            marker="o",
            markersize=14,
            markerfacecolor="none",
            label=FRONT_LABEL if number == 0 else None,
        )
    notes = _plot_reference(axes, rows, reference)
    costs = list(rows["cost"])
    if not notes:
        costs += list(reference["gpus"] * reference["training_time_h"])
    axes.set_xscale("log")
    _log_axis(axes.xaxis, costs)
    # Room for the rings and the names of the points at the ends of either axis.
    axes.margins(x=0.12, y=0.08)
    units = " or ".join(sorted(set(rows["cost_unit"])))
    xlabel = f"training cost ({units}, log scale)"
    _finish(axes, TITLE, xlabel, "top-1 (%)", [textwrap.fill(note, 60) for note in notes])
    _save(figure, path)
    return " ".join(notes)


def _plot_reference(axes, rows, reference):
    """The reference's runs (GPU-hours: GPUs x training hours) as hollow markers when a
    family is the reference's experiment; else the note saying why they are not drawn."""
    if rows["reference_top1_percent"].isna().all() or reference.empty:
        return [
            f"Reference not drawn: no GPU run is {REFERENCE_SETUP_TEXT}, {REFERENCE_TASK_TEXT}."
        ]
    axes.plot(
        reference["gpus"] * reference["training_time_h"],
        reference["top1"],
        linestyle="none",
        marker="D",
        markerfacecolor="white",
        color="grey",
        label=f"{REFERENCE_LABEL} (GPU-hours)",
    )
    return []
