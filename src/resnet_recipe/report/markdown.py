"""report.md: a page of the report's tables, each with what it lacks and the reference
points not measured here, then the graphs, each with its note when it has one."""

import os
from dataclasses import dataclass

import pandas as pd

from resnet_recipe.report.experiment import (
    ACCURACY_KEYS,
    INFERENCE_KEYS,
    REFERENCE_HARDWARE,
    REFERENCE_INFERENCE_HARDWARE,
    REFERENCE_SETUP,
    REFERENCE_SETUP_TEXT,
    REFERENCE_TASK_TEXT,
    TRAINING_KEYS,
)
from resnet_recipe.report.families import COMPARISON_COLUMNS, FAMILY_COLUMNS
from resnet_recipe.report.inputs import MXNET_ENGINE
from resnet_recipe.report.origins import (
    ORIGIN_NOTE,
    PROVENANCE_COLUMNS,
    origin_columns,
)
from resnet_recipe.report.setting_columns import with_setting_columns
from resnet_recipe.report.tables import (
    ACCURACY_COLUMNS,
    ACCURACY_REFERENCE_COLUMNS,
    ENGINE_COLUMN,
    INFERENCE_COLUMNS,
    INFERENCE_REFERENCE_COLUMNS,
    NETWORK_COLUMN,
    ONNX_COLUMNS,
    TRAINING_COLUMNS,
    TRAINING_REFERENCE_COLUMNS,
)


def markdown_table(table, columns):
    """A pipe table; missing values are empty cells."""
    header = [title for _, title, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [
            "" if pd.isna(row[name]) or row[name] == "" else fmt(row[name]).replace("|", "\\|")
            for name, _, fmt in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown_columns(table, columns):
    """The Markdown columns of a table, without the network when every row has the
    reference's (the report's title names it), nor the engine when every row is MXNet's."""
    hidden = []
    if set(table["network"].dropna()) <= {REFERENCE_SETUP["network"]}:
        hidden.append(NETWORK_COLUMN)
    if "engine" in table and set(table["engine"].dropna()) <= {MXNET_ENGINE}:
        hidden.append(ENGINE_COLUMN)
    return [column for column in columns if column not in hidden]


def _unmatched_reference(reference, table, keys):
    """Reference rows that no measured row shares `keys` (the experiment included) with;
    the reference ran on one node, so rows on several never match it."""
    if "nodes" in table:
        table = table[table["nodes"] == 1]
    merged = reference.merge(table[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    return reference[(merged["_merge"] == "left_only").to_numpy()]


def _machine_line(machine):
    if not isinstance(machine, dict):
        return str(machine)
    parts = [
        f"{key}: {', '.join(map(str, value)) or 'none' if isinstance(value, list) else value}"
        for key, value in sorted(machine.items())
        if not isinstance(value, dict)
    ]
    return "; ".join(parts)


@dataclass(frozen=True)
class Section:
    """One table of report.md: its title, what it shows, its columns, the columns a
    reference row must share with a measured row to match it, and the columns shown for
    the reference rows that no measured row matched."""

    title: str
    explanation: str
    columns: list
    keys: list
    reference_columns: list

    def markdown(self, table, notes, reference, columns=None):
        """The section for the measured rows `table`, the sentences `notes` on what is
        missing or not compared, and the reference table of this section; `columns`
        replace the section's own (the accuracy table's setting columns added)."""
        parts = [f"## {self.title}\n", self.explanation + "\n"]
        if not table.empty:
            shown = _shown_columns(table, columns or self.columns)
            parts.append(markdown_table(table, shown) + "\n")
        if notes:
            parts.append("**Notes:**\n\n" + "\n".join(f"- {note}" for note in notes) + "\n")
        unmatched = _unmatched_reference(reference, table, self.keys)
        if not unmatched.empty:
            parts.append(
                "Reference points not measured here:\n\n"
                + markdown_table(unmatched, self.reference_columns)
                + "\n"
            )
        return "\n".join(parts)


# The table sections of report.md, by the name of their table.
SECTIONS = {
    "accuracy": Section(
        title="Accuracy and training time",
        explanation=(
            "Top-1 and top-5 (percent) of each run's scored checkpoint on the validation "
            "set, and the wall time of its whole training. Reference columns: "
            f"{REFERENCE_HARDWARE}, {REFERENCE_TASK_TEXT}, same GPU count and dtype; "
            "only for GPU runs of that experiment."
        ),
        columns=ACCURACY_COLUMNS,
        keys=ACCURACY_KEYS,
        reference_columns=ACCURACY_REFERENCE_COLUMNS,
    ),
    "training": Section(
        title="Training throughput",
        explanation=(
            "Total images/s (data pipeline plus compute) after the warmup epochs, two "
            "measures of the same epochs. Images/s (unwaited batch ends) as the original "
            "benchmark.py measured train.total_ips: the global batch over the mean interval "
            "between batch ends, none waited for, each epoch's first batch left out, "
            "harmonic mean after the warmup epochs; the reference ratio, FP16 speedup and "
            "weak scaling use it. Images/s (epoch wall time): an epoch's images over its "
            "wall time, first batch included, ended by a wait for the device, what a wall "
            "clock sees. Validation images/s of the pass after each epoch (at most the "
            "benchmark's iterations), measured like inference images/s (unwaited), as the "
            "original reported val.total_ips. "
            "FP16 speedup = float16 images/s / float32 images/s at the same GPU count, "
            "with the same batch per GPU where both were measured, otherwise float32's "
            "largest batch at that GPU count (column 'vs FP32 batch'; the original "
            "compared batch 208 with 96). Weak scaling = images/s on nodes x N GPUs / "
            "images/s on 1 GPU, same dtype and batch per GPU; ideal scaling = nodes x N, "
            "every GPU adding a whole GPU's images/s. Reference columns: "
            f"{REFERENCE_HARDWARE}, same GPU count on one node, dtype and batch per GPU; "
            "only for GPU points of the reference's experiment."
        ),
        columns=TRAINING_COLUMNS,
        keys=TRAINING_KEYS,
        reference_columns=TRAINING_REFERENCE_COLUMNS,
    ),
    "inference": Section(
        title="Inference throughput and latency",
        explanation=(
            "Images/s (unwaited) as the original benchmark.py measured it: epochs of "
            "batches not waited for, the mean interval between batch ends with each "
            "epoch's first batch left out, harmonic mean after the warmup epochs; the "
            "reference ratio uses it. Latency per batch and images/s (each batch waited) "
            "from a separate pass that waits for every batch. Points of the engine "
            "onnxruntime (the network exported to ONNX, float32, CPU) are measured the same "
            "way; an onnxruntime run returns only when its output is ready, so both of its "
            "passes wait for every batch. "
            f"Reference columns: {REFERENCE_INFERENCE_HARDWARE}, same dtype and batch "
            "size; only for one-GPU points of the reference's experiment."
        ),
        columns=INFERENCE_COLUMNS,
        keys=INFERENCE_KEYS,
        reference_columns=INFERENCE_REFERENCE_COLUMNS,
    ),
}


ONNX_SECTION = (
    "## Deployment: ONNX export in onnxruntime\n\n"
    "Each run's checkpoint exported to model.onnx (float32, NCHW) and run by onnxruntime "
    "(CPU) beside MXNet (float32, CPU) on the same validation batches. MXNet top-1 is the "
    "run's score (in the dtype it trained in); same prediction is the fraction of images "
    "on which both engines predict the same class; the largest logit difference is over "
    "all images and classes.\n"
)


def onnx_markdown(table, notes):
    """The ONNX section of report.md: both engines' accuracy per run and their agreement."""
    parts = [ONNX_SECTION]
    marks = origin_columns(table)
    notes = notes + [ORIGIN_NOTE] if marks else notes
    if not table.empty:
        parts.append(markdown_table(table, ONNX_COLUMNS + marks) + "\n")
    if notes:
        parts.append("**Notes:**\n\n" + "\n".join(f"- {note}" for note in notes) + "\n")
    return "\n".join(parts)


GRAPH_TITLES = {
    "training_loss_png": "Training loss",
    "training_top1_png": "Training top-1",
    "validation_top1_png": "Validation top-1",
    "training_scaling_png": "Training throughput against GPU count",
    "inference_throughput_png": "Inference throughput against batch size",
    "inference_latency_png": "Inference latency against batch size",
    "accuracy_cost_png": "Top-1 against training cost",
}


def _marked_section(name, table, notes, reference, setting_names):
    """A table section with the accuracy table's setting columns and, when some row was
    made by other code or on another machine, its origin column and the note on it."""
    columns = SECTIONS[name].columns
    if name == "accuracy":
        columns = with_setting_columns(columns, setting_names)
    marks = origin_columns(table)
    notes = notes + [ORIGIN_NOTE] if marks else notes
    return SECTIONS[name].markdown(table, notes, reference, columns + marks)


def provenance_section(provenance):
    """The Provenance section: where each result file came from."""
    parts = [
        "## Provenance\n",
        "Where each result file came from: the git commit of the code (and whether the "
        "checkout had uncommitted changes), the MXNet and DALI versions, MXNet's build "
        "features that are on, the host and its GPUs. Origin names what differs from "
        "most results of this report.\n",
    ]
    if provenance.empty:
        parts.append("No result files were given.\n")
    else:
        columns = PROVENANCE_COLUMNS[:-1] + origin_columns(provenance)
        parts.append(markdown_table(provenance, columns) + "\n")
    return "\n".join(parts)


def differences_markdown(differences):
    """The section listing what differs from the reference (differences.differences)."""
    lines = ["| aspect | reference | measured here |", "|---|---|---|"]
    lines += [
        f"| {aspect} | {reference} | {measured} |" for aspect, reference, measured in differences
    ]
    return (
        "## What differs from the reference\n\n"
        "Measured/reference ratios compare these builds and setups, not like with like:\n\n"
        + "\n".join(lines)
        + "\n"
    )


EXPERIMENTS_INTRO = (
    "## Replicas, time to accuracy and cost\n\n"
    "A family is every run whose settings are the same but for the seed (the workflow's "
    "`seeds` make NAME.seed1, NAME.seed2, ...); a run of one seed is a family of one. "
    "Mean, sd (sample standard deviation, n - 1), min and max over its seeds of top-1, "
    "top-5 (percent) and the training wall time (hours). Epoch to target: the first epoch "
    "at which validation top-1 (the mean over the seeds, for a family) reached "
    "{target:g}% (report.target_top1), and the mean training wall time to its end; empty "
    "when no epoch reached it. Cost: wall hours x GPUs x nodes (GPU-hours), or x nodes "
    "for a run on the CPU (CPU node-hours), the mean over the seeds.\n"
)
COMPARISON_INTRO = (
    "### Is the difference real?\n\n"
    "For two families of two seeds or more: whether their top-1 differs by more than the "
    "seed spread explains, by Welch's t-test (two-sided, at p < 0.05). With 3 to 5 seeds it "
    "assumes the seeds' top-1 is roughly normal; a permutation test assumes nothing but "
    "with 3 seeds against 3 it has 20 arrangements and can never reach p < 0.05.\n"
)


def experiments_markdown(family_rows, comparisons, single_seed, target_top1):
    """The section of report.md on the families: their spread, time to target and cost,
    the test of every two families with two seeds or more, and where the reference's
    top-1 lies against the seeds."""
    parts = [EXPERIMENTS_INTRO.format(target=target_top1)]
    if family_rows.empty:
        return "\n".join([*parts, "No training runs were given.\n"])
    parts.append(markdown_table(family_rows, FAMILY_COLUMNS) + "\n")
    parts.append(COMPARISON_INTRO)
    if not comparisons.empty:
        parts.append(markdown_table(comparisons, COMPARISON_COLUMNS) + "\n")
    if single_seed:
        parts.append(
            "No judgement is possible for the families of one seed (no spread to compare a "
            f"difference with): {', '.join(single_seed)}.\n"
        )
    return "\n".join(parts)


def report_markdown(
    tables,
    notes,
    reference,
    machines,
    graph_notes,
    outputs,
    provenance,
    setting_names=(),
    differences=(),
    experiments="",
):
    """The whole report.md: the machines of the benchmarks, what differs from the
    reference (rows of differences.differences), the table sections (tables, notes and
    reference tables by section name; the accuracy table with the settings in which runs
    differ), the families of replicas (experiments_markdown), the provenance of every
    result, then the graphs (linked relative to
    report.md), each followed by its note in graph_notes when it has one."""
    folder = os.path.dirname(os.path.abspath(outputs.markdown))
    parts = [
        "# ResNet-50 v1.5 on MXNet: results\n",
        "Measured results of this workflow beside the published numbers of NVIDIA's "
        f"recipe: **reference = {REFERENCE_HARDWARE}, {REFERENCE_SETUP_TEXT}**. A measured "
        "point gets reference values and measured/reference ratios only when it is the "
        f"reference's experiment: on GPUs, {REFERENCE_SETUP_TEXT} (for accuracy also "
        f"{REFERENCE_TASK_TEXT}), same GPU count, dtype and batch. Accuracies are in "
        "percent; GPUs = CPU means the run or benchmark ran on the CPU; image (px) is the "
        "input size.\n",
    ]
    measured_on = sorted({_machine_line(machine) for machine in machines})
    if measured_on:
        lines = "\n".join(f"- {machine}" for machine in measured_on)
        parts.append(f"Benchmarks measured on:\n\n{lines}\n")
    if differences:
        parts.append(differences_markdown(differences))
    parts += [
        _marked_section(name, tables[name], notes[name], reference[name], setting_names)
        for name in SECTIONS
    ]
    if experiments:
        parts.append(experiments)
    parts.append(onnx_markdown(tables["onnx"], notes["onnx"]))
    parts.append(provenance_section(provenance))
    parts.append("## Graphs\n")
    for key, title in GRAPH_TITLES.items():
        path = os.path.relpath(os.path.abspath(getattr(outputs, key)), folder)
        parts.append(f"### {title}\n\n![{title}]({path})\n")
        if graph_notes[key]:
            parts.append(graph_notes[key] + "\n")
    return "\n".join(parts)
