"""Sentences for report.md on what each table lacks: missing runs, scores, precisions or
1-GPU points, and why measured rows have no reference (another experiment, or a point the
reference lacks)."""

from resnet_recipe.report.experiment import (
    REFERENCE_SETUP,
    REFERENCE_SETUP_TEXT,
    REFERENCE_TASK,
    REFERENCE_TASK_TEXT,
    same_experiment,
)
from resnet_recipe.workflow_support.settings import DTYPES

# How report.md names measured rows whose setting differs from the reference's.
DIFFERENCE_WORDS = {
    "network": "{value} {what}",
    "image_size": "{what} at {value} px",
    "classes": "{what} on {value} classes",
    "epochs": "{what} of {value} epochs",
}


def table_notes(runs, scores, tables):
    """{table name: its sentences on what it lacks} for the accuracy, training,
    inference and ONNX tables."""
    return {
        "accuracy": accuracy_gaps(runs, scores, tables["accuracy"]),
        "training": training_gaps(tables["training"]),
        "inference": inference_gaps(tables["inference"]),
        "onnx": onnx_gaps(runs, tables["onnx"]),
    }


def onnx_gaps(runs, table):
    """Sentences naming the runs without an ONNX parity result, and scores it lacks."""
    if table.empty:
        return ["No ONNX parity results were given, so there is no ONNX table."]
    compared = set(table["run"])
    notes = [
        f"Run {run} has no ONNX parity result."
        for run in sorted({run["report"]["run"] for run in runs} - compared)
    ]
    for run in table.loc[table["mxnet_top1_percent"].isna(), "run"]:
        notes.append(f"Run {run} has no score file: its MXNet top-1 is missing.")
    return notes


def accuracy_gaps(runs, scores, table):
    """Sentences naming what the accuracy table lacks."""
    if table.empty:
        return ["No training runs and no scores were given, so there is no accuracy table."]
    notes = []
    trained = {run["report"]["run"] for run in runs}
    scored = {score["run"] for score in scores}
    for run in sorted(trained - scored):
        notes.append(f"Run {run} has no score file: top-1 and top-5 are missing.")
    for run in sorted(scored - trained):
        notes.append(f"Run {run} has a score but no training report: GPUs and wall time missing.")
    notes += _absent_dtypes(table, "runs")
    notes += _reference_gaps(
        table[table["gpus"].notna()],
        "reference_top1_percent",
        {**REFERENCE_SETUP, **REFERENCE_TASK},
        "runs",
        "GPU count and dtype",
    )
    return notes


def training_gaps(table):
    if table.empty:
        return ["No training benchmark results were given, so there is no throughput table."]
    notes = _absent_dtypes(table, "training benchmark points")
    fp16 = table[table["dtype"] == "float16"]
    if len(fp16) and not (table["dtype"] == "float32").any():
        notes.append("FP16 speedup needs float32 points at the same GPU count: none measured.")
    elif len(fp16):
        for device in fp16.loc[fp16["fp16_speedup"].isna(), "device"].unique():
            notes.append(f"No float32 point on {device}: no FP16 speedup there.")
    for (dtype, batch), group in table[table["gpus"] >= 1].groupby(["dtype", "batch_per_device"]):
        if group["weak_scaling"].isna().all():
            notes.append(f"No 1-GPU point for {dtype} batch {batch}: no weak scaling for it.")
    if (table["gpus"] == 0).any():
        notes.append("CPU points have no weak scaling: it is defined against one GPU.")
    notes += _reference_gaps(
        table, "reference_images_per_s", REFERENCE_SETUP, "points", "GPU count, dtype and batch"
    )
    return notes + _disturbed(table)


def inference_gaps(table):
    if table.empty:
        return ["No inference benchmark results were given, so there is no inference table."]
    notes = _absent_dtypes(table, "inference benchmark points")
    notes += _reference_gaps(
        table, "reference_images_per_s", REFERENCE_SETUP, "points", "dtype and batch size"
    )
    return notes + _disturbed(table)


def _disturbed(table):
    """A sentence counting the points measured while other work used the machine."""
    disturbed = int((table["disturbed"] != "").sum())
    if not disturbed:
        return []
    verb = "was" if disturbed == 1 else "were"
    return [
        f"{disturbed} of {len(table)} points {verb} measured while other processes kept the "
        "machine's CPUs busy (column 'disturbed while measured': the cores they took, the "
        "load average and the CPU time the point's own process got); their images/s and "
        "latencies may be worse than the machine's."
    ]


def _absent_dtypes(table, what):
    present = set(table["dtype"].dropna())
    return [f"No {dtype} {what}." for dtype in DTYPES if dtype not in present]


def _reference_gaps(table, reference_column, experiment, what, key):
    """Why measured rows have no reference: one sentence naming the rows of another
    experiment by what differs (CPU, image size, network, classes, epochs), one counting
    the rows of the reference's experiment at a point the reference lacks."""
    unmatched = table[table[reference_column].isna()]
    differing = [f"CPU {what}"] if (unmatched["gpus"] == 0).any() else []
    for column, wanted in experiment.items():
        for value in sorted(set(unmatched[column].dropna()) - {wanted}):
            differing.append(DIFFERENCE_WORDS[column].format(what=what, value=value))
    notes = []
    if differing:
        listed = ", ".join(differing[:-1]) + " and " * (len(differing) > 1) + differing[-1]
        setup = f"{REFERENCE_SETUP_TEXT} on V100 GPUs"
        setup += f", {REFERENCE_TASK_TEXT}" if "epochs" in experiment else ""
        notes.append(
            f"{listed[0].upper()}{listed[1:]} are not compared with the reference, which is "
            f"{setup}: they are not the same experiment."
        )
    alike = int(same_experiment(table, experiment).sum())
    alike_unmatched = int(same_experiment(unmatched, experiment).sum())
    if alike_unmatched:
        verb = "has" if alike_unmatched == 1 else "have"
        notes.append(
            f"{alike_unmatched} of {alike} measured {what} of the reference's experiment "
            f"{verb} no reference point at the same {key}."
        )
    return notes
