"""Every file the report reads, read once and checked here: the result files of training,
scoring and the benchmarks (through their contracts in workflow_support.results) and the
reference CSVs of the published numbers.

The other modules of the report take what this one returns and never open a file."""

import os

import pandas as pd

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.report.experiment import REFERENCE_SETUP, REFERENCE_TASK
from resnet_recipe.workflow_support import machine_load, results

# The latency statistics (keys of an inference point's latency_ms) that the inference table
# shows: every one but the slowest batch.
LATENCY_STATISTICS = tuple(key for key in results.LATENCY_KEYS if key != "max")
# A benchmark point's fields that its table row takes as they are, by kind.
BENCH_COLUMNS = {
    "train": ("dtype", "gpus", "batch_per_device", "global_batch"),
    "infer": ("dtype", "gpus", "batch_size", "engine"),
}
# The engine of an inference point that names none: MXNet's own points.
MXNET_ENGINE = "mxnet"
# What tells two benchmark points of a kind apart (beside their setup): a training point
# also has its node count, an inference point its engine.
POINT_KEYS = {
    "train": ("dtype", "gpus", "batch_per_device", "nodes"),
    "infer": ("dtype", "gpus", "batch_size", "engine"),
}

# Reference table: (file name, columns it must have, the experiment it measured, added to
# it as constant columns: inference ran on one V100).
REFERENCES = {
    "reference_accuracy": (
        "accuracy.csv",
        ("gpus", "dtype", "top1", "training_time_h"),
        {**REFERENCE_SETUP, **REFERENCE_TASK},
    ),
    "reference_training": (
        "training_throughput.csv",
        ("gpus", "dtype", "batch_size", "img_per_s"),
        REFERENCE_SETUP,
    ),
    "reference_inference": (
        "inference_throughput.csv",
        ("dtype", "batch_size", "img_per_s"),
        {"gpus": 1, **REFERENCE_SETUP},
    ),
}


def reference_files(folder):
    """The three reference CSV paths in a folder, as keyword arguments of build_report."""
    return {key: os.path.join(folder, name) for key, (name, _, _) in REFERENCES.items()}


def read_runs(run_dirs):
    """Training run folders (see read_run), one per run name."""
    runs = [read_run(path) for path in run_dirs]
    _check_unique("training run", [(run["report"]["run"],) for run in runs], run_dirs)
    return runs


def read_scores(paths):
    """Score results, one per run name."""
    scores = [results.read(path, results.SCORE) for path in paths]
    _check_unique("score", [(score["run"],) for score in scores], paths)
    return scores


def read_references(accuracy, training, inference):
    """The three reference tables by section name, from their CSV paths; the training
    table's batch_size is the batch per GPU, named as in the training table."""
    return {
        "accuracy": read_reference(accuracy, "reference_accuracy"),
        "training": read_reference(training, "reference_training").rename(
            columns={"batch_size": "batch_per_device"}
        ),
        "inference": read_reference(inference, "reference_inference"),
    }


def network_name(network):
    """'ResNet-50 v1.5' from a result's network settings {depth, version}."""
    return f"ResNet-{network['depth']} v{network['version']}"


def read_run(run_dir):
    """A training run folder: its report.json, the per-epoch lines of metrics.jsonl and its
    setup (network name, image size)."""
    report = results.read(os.path.join(run_dir, "report.json"), results.RUN_REPORT)
    epochs = results.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    setup = {"network": network_name(report["network"])}
    setup["image_size"] = report["pipeline"]["image_size"]
    return {"report": report, "epochs": epochs, "setup": setup}


def read_bench(paths, kind, engine_paths=()):
    """Benchmark points of `kind` ("train" or "infer") as a table, one row per file: the
    fields of BENCH_COLUMNS, the network name, the image size, the input pipeline
    ("input": dali-gpu, dali-cpu or synthetic) and the layout; training adds the epoch
    wall-time images/s, the validation images/s and the node count (gpus is per node),
    inference the images/s and one latency column per statistic of its waited pass, and
    its engine (mxnet for MXNet's points, which name none); last, why the point was
    disturbed by other work on the machine (machine_load.disturbance; empty if it was
    not). engine_paths: inference points of other engines (onnxruntime), listed beside
    MXNet's. The result column holds each whole JSON."""
    points = [results.read(path, results.BENCH_POINTS[kind]) for path in paths]
    points += [results.read(path, results.BENCH_INFER_ENGINE) for path in engine_paths]
    paths = [*paths, *engine_paths]
    rows = []
    for point in points:
        point = {"engine": MXNET_ENGINE, **point} if kind == "infer" else point
        row = {name: point[name] for name in BENCH_COLUMNS[kind]}
        row["input"] = point["input_backend"]
        row["network"] = network_name(point["network"])
        row["image_size"] = point["image_size"]
        row["layout"] = point["layout"]
        row["images_per_s"] = point["images_per_s"]
        row["disturbed"] = machine_load.disturbance(point["machine_load"]) or ""
        if kind == "train":
            row["wall_images_per_s"] = point["wall_images_per_s"]
            row["val_images_per_s"] = point["val_images_per_s"]
            # Points written before training could span nodes ran on one.
            row["nodes"] = point.get("nodes", 1)
        if kind == "infer":
            row["latency_images_per_s"] = point["latency_images_per_s"]
            row.update({f"latency_{s}_ms": point["latency_ms"][s] for s in LATENCY_STATISTICS})
        rows.append(row)
    columns = [*BENCH_COLUMNS[kind], "input", "layout", *REFERENCE_SETUP, "images_per_s"]
    if kind == "train":
        columns += ["wall_images_per_s", "val_images_per_s", "nodes"]
    if kind == "infer":
        columns += ["latency_images_per_s", *(f"latency_{s}_ms" for s in LATENCY_STATISTICS)]
    columns.append("disturbed")
    key = [*POINT_KEYS[kind], *REFERENCE_SETUP]
    what = "training" if kind == "train" else "inference"
    _check_unique(f"{what} benchmark point", [tuple(row[k] for k in key) for row in rows], paths)
    table = pd.DataFrame(rows, columns=columns)
    table["result"] = points
    return table


def read_parities(paths):
    """ONNX parity results (onnxruntime beside MXNet on a run's validation set), one per
    run name."""
    parities = [results.read(path, results.ONNX_PARITY) for path in paths]
    _check_unique("ONNX parity result", [(parity["run"],) for parity in parities], paths)
    return parities


def read_reference(path, key):
    """One published-numbers CSV, checked for its columns, with the settings of the
    experiment it measured as constant columns (network, image_size, ...)."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"reference table not found: {path}") from None
    _, columns, experiment = REFERENCES[key]
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return table.assign(**experiment)


def _check_unique(what, keys, paths):
    seen = {}
    for key, path in zip(keys, paths, strict=True):
        if key in seen:
            raise UserError(f"two files for the same {what} {key}: {seen[key]} and {path}")
        seen[key] = path
